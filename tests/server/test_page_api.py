"""What the web page needs from the API beyond the threads and runs: the page itself, renaming a thread, cancelling
one step, a video's frame as a PNG (a masks video's overlay), and a scribble that must be the owner's own mask."""

from __future__ import annotations

import io
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from memory import ArtifactStore
from tests.scenes import render_scene, render_video

from .conftest import png_bytes, upload
from .test_threads import _mp4


def test_the_page_and_its_modules_are_served(client):
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<script type="module" src="/static/app.js">' in page.text
    for name in ("app.js", "api.js", "dom.js", "media.js", "run.js", "sketch.js"):
        module = client.get(f"/static/{name}")
        assert module.status_code == 200 and "javascript" in module.headers["content-type"], name
    assert client.get("/static/style.css").headers["content-type"].startswith("text/css")
    assert "//" not in page.text.replace("http://www.w3.org", "")  # nothing from elsewhere: it works offline


def test_a_thread_is_renamed(client):
    thread = client.post("/threads", json={"metadata": {"title": "first"}}).json()["thread_id"]
    renamed = client.patch(f"/threads/{thread}", json={"metadata": {"title": "Cat edits"}})
    assert renamed.status_code == 200 and renamed.json()["metadata"]["title"] == "Cat edits"
    assert client.get(f"/threads/{thread}").json()["metadata"]["title"] == "Cat edits"
    assert client.patch("/threads/nope", json={"metadata": {"title": "x"}}).status_code == 404


def test_cancelling_a_job_the_thread_does_not_have_is_a_clear_404(client):
    thread = client.post("/threads").json()["thread_id"]
    missing = client.post(f"/threads/{thread}/jobs/{'0' * 32}/cancel")
    assert missing.status_code == 404 and missing.json()["error"]["field"]


def test_a_videos_link_gives_any_frame_as_a_png(client):
    video = render_video(1, frames=12, width=96, height=64)
    clip = client.post("/artifacts", content=_mp4(video), headers={"content-type": "video/mp4"}).json()
    stored = client.get(clip["url"]).content
    frame = client.get(clip["url"] + "&frame=7")
    assert frame.status_code == 200 and frame.headers["content-type"] == "image/png"
    pixels = np.asarray(Image.open(io.BytesIO(frame.content)).convert("RGB"))
    with tempfile.TemporaryDirectory() as folder:
        store = ArtifactStore(folder)
        path = Path(folder) / "clip.mp4"
        path.write_bytes(stored)
        want = list(store.iter_frames(store.import_video(path)))[7]
    assert np.array_equal(pixels, want)  # exactly the stored frame
    assert client.get(clip["url"] + "&frame=12").status_code == 404
    photo = upload(client, render_scene(1, 96, 64).image)
    assert client.get(photo["url"] + "&frame=0").json()["error"]["field"] == "frame"


def test_a_scribble_must_be_the_owners_own_mask(keyed):
    client, keys = keyed
    scene = render_scene(2, 96, 64)
    theirs = client.post("/artifacts?kind=mask", content=png_bytes(np.where(scene.mask, 255, 0).astype(np.uint8)),
                         headers={"content-type": "image/png", **keys["alice"]}).json()
    photo = upload(client, scene.image, keys["bob"])
    thread = client.post("/threads", headers=keys["bob"]).json()["thread_id"]
    scribble = {"kind": "scribble", "mask": {k: theirs[k] for k in ("sha256", "kind", "media_type", "shape")}}
    refused = client.post(f"/threads/{thread}/runs/wait", headers=keys["bob"], json={"input": {
        "text": "segment the object", "image": photo["sha256"], "region": scribble}})
    assert refused.status_code == 404 and refused.json()["error"]["field"] == "input.region.mask"
    own = client.post("/artifacts?kind=mask", content=png_bytes(np.where(scene.mask, 255, 0).astype(np.uint8)),
                      headers={"content-type": "image/png", **keys["bob"]}).json()
    assert own["sha256"] == theirs["sha256"]  # the same bytes, now uploaded by bob too: his to use
    done = client.post(f"/threads/{thread}/runs/wait", headers=keys["bob"], json={"input": {
        "text": "<module>B</module><instruction>segment the object</instruction>", "image": photo["sha256"],
        "region": scribble}})
    assert done.status_code == 200 and done.json()["status"] == "success"
