"""Tools and workflows over HTTP, and a run's record outliving the server process that ran it."""

from __future__ import annotations

import io

import numpy as np
from fastapi.testclient import TestClient
from PIL import Image

from agent.server import create_app
from tests.scenes import iou, render_scene

from .conftest import png_bytes, sse, upload


def test_tools_are_listed_and_one_runs_as_a_job(client):
    tools = client.get("/tools").json()
    assert [t["code"] for t in tools if t["kind"] == "tool"] == list("ABCDEFGH")
    assert "product_cutout" in {t["module"] for t in tools if t["kind"] == "workflow"}
    scene = render_scene(2)
    photo = upload(client, scene.image)
    done = client.post("/tools/B/invoke", json={"input": {"image": photo["sha256"], "region": {
        "kind": "box", "box": list(scene.box)}}}).json()
    assert done["module"] == "image_segmentation" and done["output"]["box"]["kind"] == "box"
    assert done["output"]["mask"]["kind"] == "mask" and client.get(done["output"]["mask"]["url"]).status_code == 200
    missing = client.post("/tools/B/invoke", json={"input": {"image": "0" * 64}})
    assert missing.status_code == 404 and missing.json()["error"]["field"] == "input.image"


def test_workflows_validate_describe_run_and_batch(client):
    bad = client.post("/workflows/validate", json={"workflow": {"version": 1, "inputs": {"photo": "image"},
        "steps": [{"name": "s", "type": "C", "image": "$inputs.nope", "command": "x"}]}})
    assert bad.status_code == 400 and bad.json()["error"]["field"] == "steps[0].image"
    assert client.post("/workflows/describe", json={"name": "product_cutout"}).json()["inputs"]["photo"] == {
        "kind": "image", "required": True, "description": "The product photo."}
    scene = render_scene(6)
    photo = upload(client, scene.image)
    inputs = {"photo": photo["sha256"], "box": ",".join(map(str, scene.box))}
    once = client.post("/workflows/run", json={"name": "product_cutout", "inputs": inputs, "stream": False}).json()
    assert once["ok"] and once["outputs"]["mask"]["url"]
    with client.stream("POST", "/workflows/run", json={"name": "product_cutout", "inputs": inputs}) as response:
        events = list(sse(response.iter_lines()))
    assert [e["event"] for e in events].count("cached") == 2 and events[-1]["event"] == "end"
    assert events[-1]["data"]["outputs"]["cutout"]["sha256"] == once["outputs"]["cutout"]["sha256"]
    batch = client.post("/workflows/batch", json={"name": "product_cutout", "items": [inputs, inputs]}).json()
    assert batch["succeeded"] == 2 and all("path" not in o for o in batch["items"][0]["outputs"].values())


def test_a_run_outlives_the_server_that_ran_it(server_settings):
    scene = render_scene(3)
    with TestClient(create_app(server_settings)) as first:
        photo = upload(first, scene.image)
        thread = first.post("/threads").json()["thread_id"]
        run = first.post(f"/threads/{thread}/runs/wait", json={"input": {
            "text": f"<module>B</module><instruction>segment it</instruction><region>({', '.join(map(str, scene.box))})"
                    "</region>", "image": photo["sha256"]}}).json()
    with TestClient(create_app(server_settings)) as second:  # a new process: the run is read back from SQL
        again = second.get(f"/threads/{thread}/runs/{run['run_id']}").json()
        assert again["status"] == "success" and again["reply"]["artifacts"][0]["alias"] == "mask1"
        events = list(sse(second.get(f"/threads/{thread}/runs/{run['run_id']}/stream").iter_lines()))
        assert events[0]["event"] == "metadata" and events[-1]["event"] == "end"
        mask_url = again["reply"]["artifacts"][0]["url"]
        mask = np.asarray(Image.open(io.BytesIO(second.get(mask_url).content))) > 127
        assert iou(mask, scene.mask) > 0.95


def test_the_smaller_endpoints(client):
    scene = render_scene(0, 96, 64)
    sent = client.post("/artifacts", files={"file": ("any-name.bin", png_bytes(scene.image), "text/plain")})
    assert sent.status_code == 201 and sent.json()["kind"] == "image"  # sniffed, not trusted by name or type
    mask = client.post("/artifacts?kind=mask", content=png_bytes(scene.image)).json()
    assert mask["kind"] == "mask" and mask["shape"] == [64, 96]
    assert client.get(f"/artifacts/{sent.json()['sha256']}").json()["url"].startswith("http://testserver/files/")
    thread = client.post("/threads", json={"metadata": {"title": "found"}}).json()["thread_id"]
    assert [t["thread_id"] for t in client.post("/threads/search", json={"limit": 5}).json()] == [thread]
    saved = {w["module"] for w in client.get("/workflows").json()}
    assert {"product_cutout", "video_privacy", "photo_to_clip"} <= saved
    assert client.get("/readyz").json() == {"ok": True, "checks": {"database": "ok", "store": "ok"}}


def test_an_image_url_is_fetched_only_from_an_allowed_host(tmp_path):
    import http.server
    import threading

    from openai import OpenAI

    from schemas import VitronSettings

    served = tmp_path / "www"
    served.mkdir()
    (served / "cat.png").write_bytes(png_bytes(render_scene(1, 64, 48).image))
    handler = lambda *args: http.server.SimpleHTTPRequestHandler(*args, directory=str(served))  # noqa: E731
    web = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=web.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{web.server_address[1]}/cat.png"
    settings = VitronSettings(home=tmp_path / "home", planner="explicit", fetch_urls="127.0.0.1")
    try:
        with TestClient(create_app(settings)) as client:
            openai = OpenAI(base_url="http://testserver/v1", api_key="x", http_client=client)
            answer = openai.chat.completions.create(model="vitron-explicit", messages=[{"role": "user", "content": [
                {"type": "text", "text": "<module>C</module><instruction>make it sepia</instruction>"},
                {"type": "image_url", "image_url": url}]}])  # a bare string, as some clients send
            assert "Made @img2" in answer.choices[0].message.content
    finally:
        web.shutdown()
