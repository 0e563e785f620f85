"""Undo, show and a question before a guessed plan, over HTTP: each is an ordinary finished run (`success`, never
`interrupted`) whose reply says it; an undo's or a show's artifact comes with the run's reply like a step's output."""

from __future__ import annotations

from fastapi.testclient import TestClient

from agent.api import VitronAgent
from agent.server import create_app
from schemas import Plan, SessionOperation, VitronSettings
from tests.agent.test_operations import Scripted, guess
from tests.scenes import render_scene

from .conftest import sse, upload


def test_operations_and_a_question_are_finished_runs(tmp_path):
    scene = render_scene(3, 240, 160)
    plans = {"blur it": guess(scene), "show the mask": Plan(operation=SessionOperation(kind="show", target="@mask1"))}
    settings = VitronSettings(home=tmp_path / "home")
    with VitronAgent.from_settings(settings, planner=Scripted(plans)) as agent, \
            TestClient(create_app(settings, agent=agent)) as client:
        photo = upload(client, scene.image)
        thread = client.post("/threads").json()["thread_id"]

        def run(text: str, **more: str) -> dict:
            return client.post(f"/threads/{thread}/runs/wait", json={"input": {"text": text, **more}}).json()

        asked = run("blur it", image=photo["sha256"])
        assert asked["status"] == "success" and asked["reply"]["text"].endswith("blur everything around it?")
        assert asked["reply"]["steps"] == [] and client.get(f"/threads/{thread}").json()["status"] == "idle"
        done = run("yes")
        assert [s["status"] for s in done["reply"]["steps"]] == ["succeeded", "succeeded"]

        with client.stream("POST", f"/threads/{thread}/runs/stream", json={"input": {"text": "show the mask"}}) as r:
            events = list(sse(r.iter_lines()))
        assert [e["event"] for e in events] == ["metadata", "message", "end"]
        end = events[-1]["data"]
        assert end["status"] == "success" and end["reply"]["text"] == "Here is @mask1."
        (shown,) = end["reply"]["artifacts"]
        assert shown["alias"] == "mask1" and client.get(shown["url"]).status_code == 200

        run("<module>C</module><instruction>make it a pencil sketch</instruction>")  # img3, from img2
        undone = run("undo that")
        assert undone["status"] == "success" and undone["reply"]["text"] == "Back to @img2."
        (row,) = undone["reply"]["artifacts"]
        assert row["alias"] == "img4" and row["sha256"] == done["reply"]["artifacts"][1]["sha256"]
        history = client.get(f"/threads/{thread}/history").json()
        assert history["artifacts"][-1]["alias"] == "img4" and history["artifacts"][-1]["made_by"] == "undo"
