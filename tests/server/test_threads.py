"""Threads and runs over HTTP: created, run (waited for, in the background, streamed), resumed after a dropped
connection with exactly the events missed, cancelled, queued behind another run, paused for approval."""

from __future__ import annotations

import io
import tempfile
import threading

import numpy as np
from PIL import Image

from schemas import VitronSettings
from tests.scenes import iou, render_scene, render_video

from .conftest import sse, upload


def box_text(box) -> str:
    return "(" + ", ".join(map(str, box)) + ")"


def segment_and_paint(box) -> str:
    return (f"<module>B</module><instruction>segment it</instruction><region>{box_text(box)}</region>"
            "<module>C</module><instruction>make it green</instruction><input>@1</input>")


def test_a_thread_runs_a_turn_and_shows_its_history(client):
    scene = render_scene(3)
    photo = upload(client, scene.image)
    assert photo["kind"] == "image" and photo["shape"] == list(scene.image.shape)
    thread = client.post("/threads", json={"metadata": {"title": "cup"}}).json()
    assert thread["status"] == "idle" and thread["metadata"]["title"] == "cup"
    done = client.post(f"/threads/{thread['thread_id']}/runs/wait",
                       json={"input": {"text": segment_and_paint(scene.box), "image": photo["sha256"]}}).json()
    assert done["status"] == "success", done
    made = {a["alias"]: a for a in done["reply"]["artifacts"]}
    assert set(made) == {"mask1", "img2"}
    mask = np.asarray(Image.open(io.BytesIO(client.get(made["mask1"]["url"]).content))) > 127
    assert iou(mask, scene.mask) > 0.95  # the file behind the signed link is the mask
    history = client.get(f"/threads/{thread['thread_id']}/history").json()
    assert [t["role"] for t in history["turns"]] == ["user", "assistant"]
    assert [a["alias"] for a in history["artifacts"]] == ["img1", "mask1", "img2"]
    assert history["artifacts"][2]["lineage"].startswith("@img2 image") and history["runs"][0]["status"] == "success"
    assert [t["thread_id"] for t in client.get("/threads").json()] == [thread["thread_id"]]
    assert client.delete(f"/threads/{thread['thread_id']}").status_code == 200
    assert client.get(f"/threads/{thread['thread_id']}").status_code == 404


def test_a_streamed_run_sends_every_event_numbered_in_order(client):
    scene = render_scene(4)
    photo = upload(client, scene.image)
    thread = client.post("/threads").json()["thread_id"]
    with client.stream("POST", f"/threads/{thread}/runs/stream",
                       json={"input": {"text": segment_and_paint(scene.box), "image": photo["sha256"]}}) as response:
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
        events = list(sse(response.iter_lines()))
    names = [e["event"] for e in events]
    assert names[0] == "metadata" and names[1] == "plan" and names[-2:] == ["message", "end"]
    assert names.count("step_started") == names.count("step_finished") == 2
    assert [int(e["id"]) for e in events] == list(range(1, len(events) + 1))
    assert events[-1]["data"]["status"] == "success"


def test_a_reconnect_with_last_event_id_gets_exactly_the_missed_events(client):
    video = render_video(2, frames=150)
    thread = client.post("/threads").json()["thread_id"]
    clip = client.post("/artifacts", content=_mp4(video), headers={"content-type": "video/mp4"}).json()
    run = client.post(f"/threads/{thread}/runs", json={"input": {
        "text": f"<module>E</module><instruction>track it</instruction><region>{box_text(video.box(0))}</region>",
        "video": clip["sha256"]}}).json()
    stream = f"/threads/{thread}/runs/{run['run_id']}/stream"
    first: list[dict] = []
    with client.stream("GET", stream) as response:  # a client that drops the connection after a few events
        for event in sse(response.iter_lines()):
            first.append(event)
            if len(first) == 4:
                break
    with client.stream("GET", stream, headers={"Last-Event-ID": first[-1]["id"]}) as response:
        rest = list(sse(response.iter_lines()))
    whole = list(sse(client.get(stream).iter_lines()))  # the run has ended: its whole record
    assert [e["id"] for e in first + rest] == [e["id"] for e in whole]  # no gap, no duplicate
    assert whole[-1]["event"] == "end" and whole[-1]["data"]["status"] == "success"
    assert client.get(f"/threads/{thread}/runs/{run['run_id']}").json()["status"] == "success"


def _mp4(video) -> bytes:
    from memory import ArtifactStore

    with tempfile.TemporaryDirectory() as folder:
        store = ArtifactStore(folder)
        return store.get_bytes(store.put_video(video.frames, video.fps))


def test_a_run_is_cancelled_and_a_busy_thread_refuses_or_queues(client):
    video = render_video(3, frames=400)
    thread = client.post("/threads").json()["thread_id"]
    clip = client.post("/artifacts", content=_mp4(video), headers={"content-type": "video/mp4"}).json()
    track = {"text": f"<module>E</module><instruction>track it</instruction><region>{box_text(video.box(0))}"
                     "</region><module>F</module><instruction>blur it</instruction><input>@1</input>",
             "video": clip["sha256"]}
    run = client.post(f"/threads/{thread}/runs", json={"input": track}).json()
    busy = client.post(f"/threads/{thread}/runs", json={"input": {"text": "<module>C</module><instruction>x"
                                                                          "</instruction>"}})
    assert busy.status_code == 409 and busy.json()["error"]["field"] == "multitask_strategy"
    queued = client.post(f"/threads/{thread}/runs", json={"input": track, "multitask_strategy": "enqueue"}).json()
    assert queued["status"] == "pending"
    held = client.delete(f"/threads/{thread}")
    assert held.status_code == 409 and held.json()["error"]["field"] == "thread_id"
    with client.stream("GET", f"/threads/{thread}/runs/{run['run_id']}/stream") as response:
        for event in sse(response.iter_lines()):
            if event["event"] == "step_started":
                assert client.post(f"/threads/{thread}/runs/{run['run_id']}/cancel").status_code == 202
                break
    ended = client.get(f"/threads/{thread}/runs/{run['run_id']}/join").json()
    assert ended["status"] == "cancelled"
    assert [s["status"] for s in ended["reply"]["steps"]] == ["cancelled", "skipped"]
    client.post(f"/threads/{thread}/runs/{queued['run_id']}/cancel")  # the queued one: stopped too
    assert client.get(f"/threads/{thread}/runs/{queued['run_id']}/join").json()["status"] == "cancelled"


def test_an_approval_pause_is_answered_by_a_resume(tmp_path):
    from fastapi.testclient import TestClient

    from agent.server import create_app

    settings = VitronSettings(home=tmp_path / "home", planner="explicit", approval=True)
    video = render_video(1, frames=12)
    with TestClient(create_app(settings)) as client:
        thread = client.post("/threads").json()["thread_id"]
        clip = client.post("/artifacts", content=_mp4(video), headers={"content-type": "video/mp4"}).json()
        paused = client.post(f"/threads/{thread}/runs/wait", json={"input": {
            "text": f"<module>E</module><instruction>track it</instruction><region>{box_text(video.box(0))}"
                    "</region>", "video": clip["sha256"]}}).json()
        assert paused["status"] == "interrupted"
        assert client.get(f"/threads/{thread}").json()["status"] == "interrupted"
        done = client.post(f"/threads/{thread}/runs/wait", json={"command": {"resume": {"action": "approve"}}})
        assert done.json()["status"] == "success" and done.json()["reply"]["steps"][0]["status"] == "succeeded"


def test_runs_of_many_threads_at_once_do_not_mix(client):
    scenes = [render_scene(seed, 160, 120) for seed in range(6)]
    results: dict[int, dict] = {}

    def one(index: int) -> None:
        photo = upload(client, scenes[index].image)
        thread = client.post("/threads").json()["thread_id"]
        results[index] = client.post(f"/threads/{thread}/runs/wait", json={"input": {
            "text": "<module>C</module><instruction>make it a pencil sketch</instruction>",
            "image": photo["sha256"]}}).json()

    workers = [threading.Thread(target=one, args=(i,)) for i in range(len(scenes))]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    shas = {r["reply"]["artifacts"][0]["sha256"] for r in results.values()}
    assert all(r["status"] == "success" for r in results.values()) and len(shas) == len(scenes)


def test_the_assistant_id_picks_the_planner(client):
    photo = upload(client, render_scene(1, 160, 120).image)
    thread = client.post("/threads").json()["thread_id"]
    words = {"text": "make it a pencil sketch", "image": photo["sha256"]}
    by_grammar = client.post(f"/threads/{thread}/runs/wait", json={"input": words}).json()  # the server's: explicit
    assert by_grammar["status"] == "success" and by_grammar["reply"]["steps"] == []
    by_mini = client.post(f"/threads/{thread}/runs/wait", json={"input": words, "assistant_id": "vitron-mini"}).json()
    assert [s["module"] for s in by_mini["reply"]["steps"]] == ["image_editing"]
    unknown = client.post(f"/threads/{thread}/runs", json={"input": words, "assistant_id": "gpt-4"})
    assert unknown.status_code == 400 and unknown.json()["error"]["field"] == "assistant_id"
