"""Keys and isolation, and bad input: each owner sees only its own threads, runs and artifacts (another owner's ids
answer 404, as if there were none); every bad request is a 4xx JSON error naming the field and the fix, stores
nothing, and the server goes on serving."""

from __future__ import annotations

import struct
import tempfile
import time
import zlib

import numpy as np
from fastapi.testclient import TestClient

from memory import ArtifactStore
from tests.scenes import render_scene, render_video

from .conftest import upload


def test_keys_are_required_and_each_owner_sees_only_its_own(keyed):
    client, keys = keyed
    assert client.get("/threads").status_code == 401
    assert client.get("/threads", headers=keys["revoked"]).status_code == 401
    assert client.get("/v1/models").json()["error"]["type"] == "authentication_error"
    scene = render_scene(2, 160, 120)
    photo = upload(client, scene.image, keys["alice"])
    thread = client.post("/threads", headers=keys["alice"]).json()["thread_id"]
    run = client.post(f"/threads/{thread}/runs/wait", headers=keys["alice"], json={"input": {
        "text": "<module>C</module><instruction>make it sepia</instruction>", "image": photo["sha256"]}}).json()
    made = run["reply"]["artifacts"][0]
    # Bob: every id of alice's answers as if it did not exist.
    for method, path, body in [("GET", f"/threads/{thread}", None), ("GET", f"/threads/{thread}/history", None),
                               ("DELETE", f"/threads/{thread}", None),
                               ("GET", f"/threads/{thread}/runs/{run['run_id']}", None),
                               ("POST", f"/threads/{thread}/runs", {"input": {"text": "x"}}),
                               ("GET", f"/artifacts/{photo['sha256']}", None),
                               ("GET", f"/artifacts/{made['sha256']}", None)]:
        response = client.request(method, path, json=body, headers=keys["bob"])
        assert response.status_code == 404, (path, response.text)
    own = client.post("/threads", headers=keys["bob"]).json()["thread_id"]
    stolen = client.post(f"/threads/{own}/runs/wait", headers=keys["bob"], json={"input": {
        "text": "<module>C</module><instruction>make it sepia</instruction>", "image": photo["sha256"]}})
    assert stolen.status_code == 404 and stolen.json()["error"]["field"] == "input.image"
    assert [t["thread_id"] for t in client.get("/threads", headers=keys["bob"]).json()] == [own]
    assert [t["thread_id"] for t in client.get("/threads", headers=keys["alice"]).json()] == [thread]
    assert client.get(made["url"]).status_code == 200  # a signed link is itself the permission


def png_header(width: int, height: int) -> bytes:
    """A PNG that claims a size: its header, and one tiny compressed row (never decoded whole)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + \
        chunk(b"IEND", b"")


def test_bad_input_is_a_clear_4xx_and_stores_nothing(keyed):
    client, keys = keyed
    alice = keys["alice"]
    store = client.app.state.context.store
    before = sorted(p.name for p in store.root.rglob("*") if p.is_file())
    cases = [
        (client.post("/artifacts", content=b"x" * 2_100_000, headers=alice), 413, "file"),
        (client.post("/artifacts", content=b"GIF89a not really", headers={**alice, "x-filename": "cat.png"}),
         400, "file"),
        (client.post("/artifacts", files={"file": ("cat.png", b"\x00\x01 plain bytes", "image/png")},
                     headers=alice), 400, "file"),
        (client.post("/artifacts", content=png_header(30000, 30000), headers=alice), 413, "file"),
        (client.post("/threads", content=b"{not json", headers={**alice, "content-type": "application/json"}),
         422, None),
        (client.get("/threads/0123456789abcdef0123456789abcdef", headers=alice), 404, "thread_id"),
        (client.post("/threads/nope/runs", json={"input": {"text": "x"}}, headers=alice), 404, "thread_id"),
    ]
    for response, status, field in cases:
        body = response.json()
        assert response.status_code == status, body
        assert body["error"]["problem"] and body["error"]["fix"], body
        if field:
            assert body["error"]["field"] == field, body
    after = sorted(p.name for p in store.root.rglob("*") if p.is_file())
    assert after == before  # nothing stored
    photo = upload(client, np.zeros((8, 8, 3), np.uint8), alice)
    good = client.get(photo["url"])
    assert good.status_code == 200
    forged = photo["url"].replace("sig=", "sig=0")
    expired = photo["url"].split("?")[0] + f"?exp={int(time.time()) - 10}&sig=" + photo["url"].split("sig=")[1]
    for url in (forged, expired):
        refused = client.get(url)
        assert refused.status_code == 404 and refused.json()["error"]["field"] == "sig"
    assert client.get("/healthz").json() == {"ok": True}  # still serving


def test_videos_answer_range_requests(keyed):
    client, keys = keyed


    video = render_video(1, frames=10)
    with tempfile.TemporaryDirectory() as folder:
        local = ArtifactStore(folder)
        data = local.get_bytes(local.put_video(video.frames, video.fps))
    clip = client.post("/artifacts", content=data, headers=keys["alice"]).json()
    assert clip["kind"] == "video" and clip["shape"][0] == 10
    part = client.get(clip["url"], headers={"Range": "bytes=0-99"})
    assert part.status_code == 206 and part.content == data[:100]


def test_no_side_door_reaches_another_owners_artifacts_or_the_servers_files(keyed):
    client, keys = keyed
    photo = upload(client, render_scene(2, 160, 120).image, keys["alice"])
    bob = keys["bob"]
    literal = {"version": 1, "name": "peek", "inputs": {}, "outputs": {"out": "$steps.look.image"},
               "steps": [{"name": "look", "type": "image_editing@v1", "command": "make it red",
                          "image": {"sha256": photo["sha256"], "kind": "image", "media_type": "image/png"}}]}
    refused = client.post("/workflows/validate", json={"workflow": literal}, headers=bob)
    assert refused.status_code == 404 and refused.json()["error"]["field"] == "workflow.steps[0].image"
    invoked = client.post("/tools/image_editing/invoke", headers=bob,
                          json={"input": {"image": photo["sha256"], "command": "make it red"}})
    assert invoked.status_code == 404 and invoked.json()["error"]["field"] == "input.image"
    linked = client.post("/v1/chat/completions", headers=bob, json={"model": "vitron-explicit", "messages": [
        {"role": "user", "content": [{"type": "text", "text": "<module>C</module><instruction>x</instruction>"},
                                     {"type": "image_url", "image_url": {"url": photo["url"]}}]}]})
    assert linked.status_code == 404 and linked.json()["error"]["param"].endswith("image_url")
    by_path = client.post("/workflows/describe", json={"name": "/etc/passwd"}, headers=bob)
    assert by_path.status_code == 400 and by_path.json()["error"]["field"] == "name"
    rows = client.get("/tools", headers=bob).json()
    assert rows and all("path" not in row for row in rows)


def test_limits_hold_and_a_fault_says_nothing_of_the_server(keyed, monkeypatch):
    client, keys = keyed
    alice = keys["alice"]
    limit = client.app.state.context.settings.max_upload_bytes * 4 // 3 + 2**20
    huge = client.post("/threads", content=b"{}", headers={**alice, "content-type": "application/json",
                                                           "content-length": str(limit + 1)})
    assert huge.status_code == 413 and huge.json()["error"]["field"] == "body"
    thread = client.post("/threads", headers=alice).json()["thread_id"]
    odd = client.post(f"/threads/{thread}/runs/wait", headers=alice,
                      json={"input": {"messages": [{"role": "user", "content": 42}]}})
    assert odd.status_code == 400 and odd.json()["error"]["field"] == "input.messages"
    run = client.post(f"/threads/{thread}/runs/wait", headers=alice, json={"input": {"text": "hello"}}).json()
    resumed = client.get(f"/threads/{thread}/runs/{run['run_id']}/stream", headers={**alice, "Last-Event-ID": "1e3"})
    assert resumed.status_code == 400 and resumed.json()["error"]["field"] == "Last-Event-ID"
    assert client.get("/threads?limit=0", headers=alice).status_code == 422
    memory = client.app.state.context.agent.memory

    def broken(*args, **kwargs):
        raise RuntimeError("cannot open /srv/secret/vitron.db")

    monkeypatch.setattr(memory, "list_sessions", broken)
    fault = TestClient(client.app, raise_server_exceptions=False).get("/threads", headers=alice)
    assert fault.status_code == 500 and "secret" not in fault.text
    assert fault.json()["error"]["type"] == "InternalError"
