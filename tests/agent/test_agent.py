"""The agent end to end with the explicit planner: plans run on the real tools, on rendered scenes with exact
ground truth; turns, steps and artifacts land in session memory; references, validation, failures, approval."""

from __future__ import annotations

import time

import cv2
import numpy as np
import pytest

from agent.api import VitronAgent
from schemas import InvalidInput, VitronSettings
from tests.measure import hue, hue_gap, shrink
from tests.scenes import iou, render_scene, render_video
from tools.embedded.colours import COLOURS


def box_text(box) -> str:
    return "(" + ", ".join(str(v) for v in box) + ")"


def segment_and_recolour(colour: str, box) -> str:
    return (f"Sure. <module>B</module><instruction>segment the object</instruction><region>{box_text(box)}</region>"
            f"<module>C</module><instruction>make it {colour}</instruction><input>@1</input>")


@pytest.mark.parametrize("seed", [1, 3])
def test_segment_then_edit_changes_exactly_the_object(agent, seed):
    scene = render_scene(seed)
    colour = "blue" if scene.colour != "blue" else "green"
    session = agent.session()
    events = list(session.stream(segment_and_recolour(colour, scene.box), image=scene.image))
    reply = session.reply()

    assert [e["event"] for e in events if e["event"] != "progress"] == [
        "plan", "step_started", "step_finished", "step_started", "step_finished", "message"]
    assert reply.text == "Sure. Made @mask1, @img2."
    assert [(s.module, s.status) for s in reply.steps] == [("image_segmentation", "succeeded"),
                                                          ("image_editing", "succeeded")]
    mask_entry, image_entry = reply.artifacts
    store = agent.memory.store
    assert iou(store.get_mask(mask_entry.ref), scene.mask) >= 0.9
    edited = store.get_image(image_entry.ref)
    inside = shrink(scene.mask, 3)
    want = hue(np.array(COLOURS[colour]))[0]
    assert np.mean(hue_gap(hue(edited[inside]), want) < 15) > 0.9  # the object took the colour
    outside = ~cv2.dilate(scene.mask.astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool)
    assert np.abs(edited.astype(int) - scene.image)[outside].max() <= 2  # nothing else moved
    assert image_entry.parents == ("img1", "mask1")


def test_a_second_turn_without_inputs_edits_the_last_result(agent):
    scene = render_scene(4)
    session = agent.session()
    session.send(segment_and_recolour("blue", scene.box), image=scene.image)
    reply = session.send("<module>C</module><instruction>make it green</instruction>")
    (entry,) = reply.artifacts
    assert (entry.alias, entry.parents) == ("img3", ("img2", "mask1"))  # the last result, inside the same mask
    edited = agent.memory.store.get_image(entry.ref)
    want = hue(np.array(COLOURS["green"]))[0]
    assert np.mean(hue_gap(hue(edited[shrink(scene.mask, 3)]), want) < 15) > 0.9
    history = agent.memory.turns(session.id)
    assert [t.role for t in history] == ["user", "assistant", "user", "assistant"]


def test_independent_steps_run_at_the_same_time(agent):
    video = render_video(0, frames=60)
    session = agent.session()
    box = box_text(video.box(0))
    reply = session.send(f"<module>E</module><instruction>track it</instruction><region>{box}</region>"
                         f"<module>E</module><instruction>track it again</instruction><region>{box}</region>",
                         video=agent.memory.store.put_video(video.frames, video.fps))
    first, second = reply.steps
    assert first.status == second.status == "succeeded"
    assert first.started_at < second.finished_at and second.started_at < first.finished_at  # overlapping


def test_cancelling_a_running_step_stops_it_and_skips_what_needs_it(agent):
    video = render_video(2, frames=400)
    session = agent.session()
    text = (f"<module>E</module><instruction>track it</instruction><region>{box_text(video.box(0))}</region>"
            "<module>F</module><instruction>blur it</instruction><input>@1</input>")
    fractions, cancelled = [], None
    for event in session.stream(text, video=agent.memory.store.put_video(video.frames, video.fps)):
        if event["event"] == "step_started" and cancelled is None:
            cancelled = session.cancel(event["job_id"])  # straight from the event: before its first progress
        elif event["event"] == "progress" and event["position"] == 1:
            fractions.append(event["fraction"])
    reply = session.reply()
    assert cancelled.status == "cancelled" and cancelled.module == "video_segmentation"
    assert [(s.module, s.status) for s in reply.steps] == [("video_segmentation", "cancelled"),
                                                          ("video_editing", "skipped")]
    assert max(fractions, default=0.0) < 0.5 and reply.artifacts == ()  # it stopped early, and made nothing
    assert "cancelled" in reply.text

    with pytest.raises(InvalidInput, match="already ended"):
        session.cancel(cancelled.job_id)
    with pytest.raises(InvalidInput, match="belongs to session"):
        agent.session().cancel(cancelled.job_id)


def test_a_failing_step_skips_its_dependants_and_the_session_goes_on(agent):
    scene = render_scene(1)
    session = agent.session()
    grey = np.full_like(scene.image, 128)
    reply = session.send("<module>B</module><instruction>segment the red object</instruction>"
                         "<module>C</module><instruction>make it blue</instruction><input>@1</input>", image=grey)
    assert [s.status for s in reply.steps] == ["failed", "skipped"]
    assert "no red object was found" in reply.text and "step 2 (image_editing) skipped" in reply.text
    assert reply.artifacts == ()
    after = session.send(f"<module>B</module><instruction>segment it</instruction><region>{box_text(scene.box)}"
                         "</region>", image=scene.image)
    assert [s.status for s in after.steps] == ["succeeded"] and after.artifacts[0].parents == ("img2",)


@pytest.mark.parametrize(("text", "needle"), [
    ("<module>Z</module><instruction>x</instruction>", "unknown module"),
    ("<module>B</module><instruction>segment</instruction><region>(10, 10, 5000, 20)</region>", "region"),
    ("<module>C</module><instruction>make it blue</instruction><input>@mask9</input>", "@mask9"),
    ("<module>E</module><instruction>track it</instruction>", "needs an input video"),
])
def test_a_plan_that_cannot_run_gets_a_clear_reply_and_runs_nothing(agent, text, needle):
    session = agent.session()
    reply = session.send(text, image=render_scene(0).image)
    assert reply.text.startswith("I could not make a plan that runs") and needle in reply.text
    assert reply.refused is not None and needle in reply.refused
    assert reply.steps == () and agent.memory.steps(session.id) == []
    assert [t.role for t in agent.memory.turns(session.id)] == ["user", "assistant"]
    assert session.send("<module>B</module><instruction>segment it</instruction><region>(10, 10, 60, 60)</region>",
                        image=render_scene(0).image).refused is None  # the next turn's own


def test_two_images_that_fit_equally_make_the_agent_ask(agent):
    session = agent.session()
    a = agent.memory.store.put_image(render_scene(0).image)
    b = agent.memory.store.put_image(render_scene(1).image)
    agent.memory.append_turn(session.id, "user", "two photos", attachments=[a, b])
    reply = session.send("<module>C</module><instruction>make it sepia</instruction>")
    assert reply.text.startswith("Which image do you mean: @img2") and "@img1" in reply.text
    assert reply.steps == ()
    named = session.send("<module>C</module><instruction>make it sepia</instruction><input>@img1</input>")
    assert named.artifacts[0].parents == ("img1",)  # an explicit alias always wins


def spied_agent(settings: VitronSettings) -> tuple[VitronAgent, dict[str, float]]:
    """An agent whose executor notes when each job was submitted (job id → time)."""
    agent = VitronAgent.from_settings(settings)
    submitted: dict[str, float] = {}
    submit = agent.executor.submit

    def noting_submit(spec, on_progress=None):
        submitted[spec.job_id] = time.perf_counter()
        return submit(spec, on_progress)

    agent.executor.submit = noting_submit  # the graph looks the method up at each call
    return agent, submitted


def test_a_chain_starts_each_job_as_the_step_before_it_ends(agent_settings, monkeypatch):
    """The next job of a chain does not wait for the bookkeeping of the step before it, and a UI still sees
    each step's events in order: started, its progress, finished."""
    video = render_video(1, frames=24)
    agent, submitted = spied_agent(agent_settings)
    finished: dict[int, float] = {}
    finish_step = agent.memory.finish_step

    def noting_finish(step_id, *args, **kwargs):
        try:
            return finish_step(step_id, *args, **kwargs)
        finally:
            finished[step_id] = time.perf_counter()

    monkeypatch.setattr(agent.memory, "finish_step", noting_finish)
    with agent:
        session = agent.session()
        box = box_text(video.box(0))
        events = list(session.stream(
            f"<module>E</module><instruction>track it</instruction><region>{box}</region>"
            "<module>F</module><instruction>make it blue</instruction><input>@1</input>"
            f"<module>F</module><instruction>make it green</instruction><input>@2</input><region>{box}</region>",
            video=agent.memory.store.put_video(video.frames, video.fps)))
        steps = agent.memory.steps(session.id)
    assert [s.status for s in steps] == ["succeeded"] * 3, [s.error for s in steps]
    first, second, third = steps
    assert submitted[second.job_id] < finished[first.id] and submitted[third.job_id] < finished[second.id]
    for position in (1, 2, 3):
        mine = [e["event"] for e in events if e.get("position") == position]
        assert mine[0] == "step_started" and mine[-1] == "step_finished" and "progress" in mine
        assert set(mine[1:-1]) == {"progress"}


def test_approval_pauses_before_heavy_steps(agent_settings):
    settings = agent_settings.model_copy(update={"approval": True})
    video = render_video(2, frames=12)
    agent, submitted = spied_agent(settings)
    with agent:
        session = agent.session()
        ref = agent.memory.store.put_video(video.frames, video.fps)
        text = f"<module>E</module><instruction>track it</instruction><region>{box_text(video.box(0))}</region>"
        paused = session.send(text, video=ref)
        assert paused.waiting and paused.approval["steps"][0]["module"] == "video_segmentation"
        assert [s.status for s in agent.memory.steps(session.id)] == ["pending"]
        assert submitted == {}  # nothing heavy launched, not even ahead of its node
        with pytest.raises(InvalidInput, match="unfinished turn"):
            session.send("another turn")
        done = session.approve()
        assert not done.waiting and [s.status for s in done.steps] == ["succeeded"]

        again = session.send(text)
        assert again.waiting
        denied = session.approve("deny")
        assert [s.status for s in denied.steps] == ["skipped"] and "not approved" in denied.text


def test_state_and_checkpoints_hold_refs_not_pixels(agent):
    scene = render_scene(2)
    session = agent.session()
    session.send(segment_and_recolour("green", scene.box), image=scene.image)
    state = agent.graph.get_state({"configurable": {"thread_id": session.id}})
    import json

    text = json.dumps(state.values)
    assert len(text) < 8000 and "sha256" in text


def test_astream_gives_the_events_to_async_code(agent):
    import asyncio

    scene = render_scene(4)
    session = agent.session()

    async def collect() -> list[dict]:
        return [event async for event in session.astream(segment_and_recolour("green", scene.box),
                                                           image=scene.image)]

    events = asyncio.run(collect())
    kinds = [e["event"] for e in events]
    assert kinds[0] == "plan" and kinds[-1] == "message" and kinds.count("step_finished") == 2
    assert [s.status for s in session.reply().steps] == ["succeeded", "succeeded"]

    async def refused() -> None:
        async for _ in session.astream(None):
            pass

    with pytest.raises(InvalidInput, match="no unfinished turn"):
        asyncio.run(refused())


def test_asend_runs_a_turn_from_async_code(agent):
    import asyncio

    scene = render_scene(3)
    session = agent.session()
    reply = asyncio.run(session.asend(f"<module>B</module><instruction>segment it</instruction>"
                                      f"<region>{box_text(scene.box)}</region>", image=scene.image))
    assert [s.status for s in reply.steps] == ["succeeded"] and reply.artifacts[0].alias == "mask1"


def test_a_plan_or_a_turn_past_its_limit_is_refused_at_once(agent):
    import time

    session = agent.session()
    block = "<module>C</module><instruction>make it blue</instruction>"
    started = time.perf_counter()
    reply = session.send(block * 100, image=render_scene(0).image)
    assert reply.refused is not None and "100 steps, more than the 64 allowed (VITRON_MAX_PLAN_STEPS)" in reply.refused
    assert reply.steps == () and agent.memory.steps(session.id) == []
    with pytest.raises(InvalidInput, match="VITRON_MAX_TURN_CHARS") as info:
        session.send(block * 10_000)  # 560,000 characters
    assert info.value.field == "text" and time.perf_counter() - started < 2
    assert [t.role for t in agent.memory.turns(session.id)] == ["user", "assistant"]  # the long one not recorded
