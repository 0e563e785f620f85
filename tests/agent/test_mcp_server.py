"""`vitron mcp` as an MCP client meets it: the official SDK's client starts the command over stdio, lists the tools,
uploads a photo, segments it, recolours it by alias and reads the result back as a resource; a bad argument is a tool
error the client can show. (Over HTTP, under `vitron serve`: tests/server/test_mcp.py.)"""

from __future__ import annotations

import base64
import io
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import anyio
import cv2
import numpy as np
from mcp import Client, StdioServerParameters
from PIL import Image

from agent.api import VitronAgent
from agent.mcp_server import build_server
from agent.toolkit import Toolkit
from tests.cli import VITRON
from tests.measure import hue, hue_gap, shrink
from tests.scenes import iou, render_scene
from tools.embedded.colours import COLOURS

BLUE = hue(np.array(COLOURS["blue"]))[0]


def run_async(main: Any) -> Any:
    """`anyio.run(main)` on a thread of its own: the page tests' Playwright keeps an event loop running on the main
    thread for the rest of the session, and a second one may not start there."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(anyio.run, main).result()


def data_url(rgb: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def pixels(blob: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(blob))).convert("RGB"))


async def segment_and_recolour(client: Client, scene: Any) -> dict[str, Any]:
    """The MCP conversation every transport is tested with; what it saw, for the test to judge."""
    seen: dict[str, Any] = {"tools": [t.name for t in (await client.list_tools()).tools]}
    uploaded = await client.call_tool("upload", {"data": data_url(scene.image)})
    assert not uploaded.is_error, uploaded.content
    thread = uploaded.structured_content["thread"]
    seen["upload"] = uploaded
    progress: list[tuple[float, str | None]] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append((value, message))

    seen["segment"] = await client.call_tool("image_segmentation", {
        "thread": thread, "image": "@img1", "region": {"kind": "box", "box": list(scene.box)}},
        progress_callback=on_progress)
    seen["progress"] = progress
    seen["recolour"] = await client.call_tool("image_editing", {
        "thread": thread, "image": "img1", "mask": "@mask1", "command": "make it blue"})
    link = next(c for c in seen["recolour"].content if c.type == "resource_link")
    seen["resource"] = await client.read_resource(link.uri)
    seen["bad"] = await client.call_tool("image_editing", {"thread": thread, "image": "@mask1", "command": "x"})
    seen["outside"] = await client.call_tool("image_segmentation", {
        "thread": thread, "image": "@img1", "region": {"box": [10, 10, 4000, 20]}})
    seen["thread"] = thread
    return seen


def judge(seen: dict[str, Any], scene: Any) -> None:
    assert seen["tools"][0] == "upload" and seen["tools"][-1] == "run_turn"
    assert {"image_segmentation", "image_editing", "product_cutout"} <= set(seen["tools"])
    assert seen["upload"].content[0].text.startswith("Uploaded @img1 (image, 480x360)")
    segment = seen["segment"]
    assert not segment.is_error
    assert segment.content[0].text.startswith("image_segmentation made @mask1 (mask, 480x360) from "
                                              "image_segmentation of @img1")
    assert [c.type for c in segment.content] == ["text", "image", "resource_link"]
    assert seen["progress"] and seen["progress"][-1][0] >= 1.0  # progress notifications while it ran
    recolour = seen["recolour"]
    assert not recolour.is_error and "@img2 (image, 480x360) from image_editing of @img1, @mask1" in \
        recolour.content[0].text
    preview = next(c for c in recolour.content if c.type == "image")
    assert preview.mime_type == "image/png" and pixels(preview.data).shape == (360, 480, 3)
    (artifact,) = recolour.structured_content["artifacts"]
    assert artifact["uri"] == f"vitron://threads/{seen['thread']}/artifacts/img2" and artifact["alias"] == "img2"

    (content,) = seen["resource"].contents
    assert content.mime_type == "image/png"
    edited = pixels(content.blob)  # the full artifact, judged by its pixels
    assert np.mean(hue_gap(hue(edited[shrink(scene.mask, 3)]), BLUE) < 15) > 0.9
    outside = ~cv2.dilate(scene.mask.astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool)
    assert np.abs(edited.astype(int) - scene.image)[outside].max() <= 2  # nothing else moved

    assert seen["bad"].is_error
    assert seen["bad"].content[0].text.startswith("image_editing: image: @mask1 is a mask, not an image (give an "
                                                  "image: @img1, @img2)")
    assert seen["outside"].is_error and "leaves the 480x360 image" in seen["outside"].content[0].text


def test_vitron_mcp_over_stdio(env):
    scene = render_scene(0)

    async def main() -> dict[str, Any]:
        async with Client(StdioServerParameters(command=VITRON, args=["mcp"], env=env)) as client:
            return await segment_and_recolour(client, scene)

    judge(run_async(main), scene)


def test_threads_resources_and_run_turn_in_process(agent):
    """The same server in this process (the SDK's in-memory client): threads, resources, a plain-English turn."""
    scene = render_scene(0)
    explicit = agent.with_planner("explicit")

    async def main() -> dict[str, Any]:
        server = build_server(lambda: Toolkit.of(explicit), lambda ctx: None)
        async with Client(server) as client:
            first = await client.call_tool("upload", {"data": data_url(scene.image)})
            other = await client.call_tool("upload", {"data": data_url(scene.image)})
            thread = first.structured_content["thread"]
            turn = await client.call_tool("run_turn", {"thread": thread, "text": (
                "<module>B</module><instruction>segment it</instruction><region>"
                f"({', '.join(map(str, scene.box))})</region>")})
            return {
                "threads": (thread, other.structured_content["thread"]), "turn": turn,
                "templates": await client.list_resource_templates(),
                "listed": await client.list_resources(),
                "mask": await client.read_resource(f"vitron://threads/{thread}/artifacts/mask1"),
                "unknown_thread": await client.call_tool("image_segmentation", {"thread": "f00d" * 8,
                                                                                "image": "@img1"}),
                "no_such": await _error_of(client.read_resource(f"vitron://threads/{thread}/artifacts/img7")),
                "not_base64": await client.call_tool("upload", {"data": "data:image/png;base64,???"}),
            }

    seen = run_async(main)
    first, second = seen["threads"]
    assert first != second  # a call without a thread starts a new one
    assert not seen["turn"].is_error and "Made @mask1." in seen["turn"].content[0].text
    assert seen["templates"].resource_templates[0].uri_template == "vitron://threads/{thread}/artifacts/{alias}"
    assert f"vitron://threads/{first}/artifacts/mask1" in {r.uri for r in seen["listed"].resources}
    (mask,) = seen["mask"].contents
    read = np.asarray(Image.open(io.BytesIO(base64.b64decode(mask.blob))))
    assert read.shape == (360, 480) and iou(read > 0, scene.mask) >= 0.9
    assert seen["unknown_thread"].is_error and "no thread" in seen["unknown_thread"].content[0].text
    assert "no image '@img7'" not in seen["no_such"] and "@img7" in seen["no_such"]
    assert seen["not_base64"].is_error and "data: data is not base64" in seen["not_base64"].content[0].text


async def _error_of(awaitable: Any) -> str:
    try:
        await awaitable
    except Exception as exc:  # the SDK raises the server's JSON-RPC error
        return str(exc)
    return ""


def test_one_toolkit_per_agent(agent):
    with VitronAgent.from_settings(agent.settings) as other:
        assert Toolkit.of(other) is Toolkit.of(other) and Toolkit.of(other) is not Toolkit.of(agent)


def test_a_call_cancelled_while_it_runs_stops_its_step(agent):
    """What a cancelled MCP request does to its call (`Toolkit.cancel`): the running step stops at its next progress
    report, and the call answers that it was cancelled."""
    session = agent.session()
    session.upload(render_scene(0).image)
    kit = Toolkit.of(agent)
    progress: list[dict[str, Any]] = []

    def on_event(event: dict[str, Any]) -> None:
        if event["event"] == "progress":
            progress.append(event)
            if len(progress) == 2:  # the job is under way
                assert kit.cancel(session.id)

    result = kit.call(session.id, "image_to_video", {"image": "@img1", "command": "zoom in", "num_frames": 120},
                      on_event=on_event)
    assert not result.ok and "was cancelled (call again to run it)" in result.text
    assert [s.status for s in agent.memory.steps(session.id)] == ["cancelled"]
    assert not kit.cancel(session.id)  # nothing runs on the thread now
