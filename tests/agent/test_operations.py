"""Session operations and clarification, end to end through `agent.api` on the embedded tools: an undo makes an
earlier artifact current again (the next edit acts on it, and the artifact table says so), a show answers with an
artifact, and neither runs a job; a plan the planner is not sure of becomes a question, and the next turn's "yes"
runs it, "no" drops it, anything else is planned afresh. Everything persists across a reopen of the session."""

from __future__ import annotations

import re

import cv2
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.api import VitronAgent
from agent.graph import yes_or_no
from agent.planners.base import PlanRequest
from agent.planners.explicit import ExplicitPlanner
from memory import undo_target
from schemas import BoxRegion, Invocation, Plan, PlanStep, SessionOperation
from tests.measure import shrink
from tests.scenes import render_scene


class Scripted:
    """Answers the texts it was given a plan for; anything else is the invocation grammar (the explicit planner).
    "undo" asks session memory what to go back to, as a real planner does."""

    name = "scripted"
    replans = False
    corrects = False

    def __init__(self, plans: dict[str, Plan] | None = None) -> None:
        self.plans = plans or {}
        self.asked: list[str] = []  # the texts it planned

    def plan(self, request: PlanRequest) -> Plan:
        self.asked.append(request.text)
        if request.text == "undo that":
            target = undo_target(request.artifacts)
            return Plan(operation=SessionOperation(kind="undo", target=f"@{target.alias}") if target else None,
                        reply="" if target else "There is nothing to undo.")
        if request.text in self.plans:
            return self.plans[request.text]
        return ExplicitPlanner().plan(request)


def box_text(box) -> str:
    return "(" + ", ".join(str(v) for v in box) + ")"


def paint_blue(box) -> str:
    return (f"<module>B</module><instruction>segment the object</instruction><region>{box_text(box)}</region>"
            "<module>C</module><instruction>make it blue</instruction><input>@1</input>")


GREY = "<module>C</module><instruction>make it black and white</instruction>"  # no input named: the resolver's pick


def test_undo_then_an_edit_acts_on_the_restored_image_across_a_reopen(agent_settings):
    scene = render_scene(2)
    with VitronAgent.from_settings(agent_settings, planner=Scripted()) as agent:
        session = agent.session()
        session.send(paint_blue(scene.box), image=scene.image)  # img1, mask1, img2 (the object blue)
        jobs = len(agent.memory.steps(session.id))
        events = list(session.stream("undo that"))
        undone = session.reply()
        assert [e["event"] for e in events] == ["message"]  # no plan, no step: nothing ran
        assert undone.text == "Back to @img1." and undone.steps == () and len(agent.memory.steps(session.id)) == jobs
        (row,) = undone.artifacts
        assert (row.alias, row.made_by, row.parents) == ("img3", "undo", ("img2",))
        assert np.array_equal(agent.memory.store.get_image(row.ref), scene.image)  # the original pixels
        session_id = session.id

    with VitronAgent.from_settings(agent_settings, planner=Scripted()) as agent:  # a new process
        session = agent.session(session_id)
        table = agent.memory.artifact_table(session_id)
        assert [(e.alias, e.made_by) for e in table] == [("img1", "upload"), ("mask1", "image_segmentation"),
                                                         ("img2", "image_editing"), ("img3", "undo")]
        assert table[-1].describe().endswith("undo of @img2 (turn 3)")
        reply = session.send(GREY)
        (step,) = reply.steps
        assert step.status == "succeeded" and step.invocation["inputs"]["image"]["sha256"] == table[0].ref.sha256
        (made,) = reply.artifacts
        assert made.parents == ("img1", "mask1")  # the restored image, inside the same mask
        grey = agent.memory.store.get_image(made.ref).astype(int)[shrink(scene.mask, 3)]
        from_original = cv2.cvtColor(scene.image, cv2.COLOR_RGB2GRAY).astype(int)[shrink(scene.mask, 3)]
        blue = cv2.cvtColor(agent.memory.store.get_image(table[2].ref), cv2.COLOR_RGB2GRAY).astype(int)
        assert np.abs(grey[:, 0] - from_original).mean() < 2  # the original object's grey …
        assert np.abs(from_original - blue[shrink(scene.mask, 3)]).mean() > 10  # … which the blue one's is not

        twice = session.send("undo that")  # the edit just made is undone: back to img1 again, as @img5
        assert twice.text == "Back to @img1." and twice.artifacts[0].parents == ("img4",)


def test_show_answers_with_the_artifact_and_runs_nothing(agent_settings):
    scene = render_scene(1)
    plans = {"show me the mask again": Plan(operation=SessionOperation(kind="show", target="@mask1")),
             "show the first photo": Plan(reply="Here it is: @img1.",
                                          operation=SessionOperation(kind="show", target="img1")),
             "show the video": Plan(operation=SessionOperation(kind="show", target="@video1"))}
    with VitronAgent.from_settings(agent_settings, planner=Scripted(plans)) as agent:
        session = agent.session()
        session.send(paint_blue(scene.box), image=scene.image)
        jobs, table = len(agent.memory.steps(session.id)), agent.memory.artifact_table(session.id)
        shown = session.send("show me the mask again")
        assert shown.text == "Here is @mask1." and shown.steps == ()
        assert [a.alias for a in shown.artifacts] == ["mask1"] and shown.artifacts[0] == table[1]
        first = session.send("show the first photo")
        assert first.text == "Here it is: @img1." and [a.alias for a in first.artifacts] == ["img1"]
        missing = session.send("show the video")  # no such artifact: the plan is refused, nothing shown
        assert "no artifact @video1" in missing.text and missing.artifacts == ()
        assert len(agent.memory.steps(session.id)) == jobs and agent.memory.artifact_table(session.id) == table
        assert [t.role for t in agent.memory.turns(session.id)] == ["user", "assistant"] * 4


def guess(scene) -> Plan:
    """"Segment the object, then blur everything around it?", and the steps that would do it."""
    return Plan(reply="Segment the object, then blur everything around it?", confirm=True, steps=[
        PlanStep(invocation=Invocation(module="B", command="segment the object", region=BoxRegion(box=scene.box))),
        PlanStep(invocation=Invocation(module="C", command="blur it", inputs={"mask": "@1"},
                                       params={"area": "background"}))])


def test_a_guess_is_asked_about_and_runs_when_the_user_says_yes_even_after_a_reopen(agent_settings):
    scene = render_scene(3)
    planner = Scripted({"blur it": guess(scene)})
    with VitronAgent.from_settings(agent_settings, planner=planner) as agent:
        session = agent.session()
        events = list(session.stream("blur it", image=scene.image))
        asked = session.reply()
        assert [e["event"] for e in events] == ["message"] and events[0]["text"] == asked.text
        assert asked.text == "Segment the object, then blur everything around it?"
        assert asked.steps == () and asked.artifacts == () and not asked.waiting and not session.unfinished
        assert agent.memory.steps(session.id) == []
        session_id = session.id

    planner = Scripted()
    with VitronAgent.from_settings(agent_settings, planner=planner) as agent:
        reply = agent.session(session_id).send("Yes, please!")
        assert planner.asked == []  # the guess ran as it was: no planner call
        assert [(s.module, s.status) for s in reply.steps] == [("image_segmentation", "succeeded"),
                                                              ("image_editing", "succeeded")]
        assert [a.alias for a in reply.artifacts] == ["mask1", "img2"] and reply.text == "Made @mask1, @img2."
        edited = agent.memory.store.get_image(reply.artifacts[1].ref).astype(int)
        assert np.abs(edited - scene.image.astype(int)).max(axis=-1)[shrink(scene.mask, 3)].max() <= 2
        again = agent.session(session_id).send("yes")  # the guess ran once: a later "yes" is a new request
        assert again.steps == () and planner.asked == ["yes"]


def test_no_drops_the_guess_and_anything_else_is_planned_afresh(agent_settings):
    scene = render_scene(0)
    planner = Scripted({"blur it": guess(scene)})
    with VitronAgent.from_settings(agent_settings, planner=planner) as agent:
        session = agent.session()
        session.send("blur it", image=scene.image)
        declined = session.send("Nope.")
        assert declined.text == "All right, I won't. What did you mean?" and declined.steps == ()
        assert planner.asked == ["blur it"] and session.send("yes").steps == ()  # nothing waits any more

        session.send("blur it")
        other = session.send("<module>C</module><instruction>make it a pencil sketch</instruction>")
        assert [s.module for s in other.steps] == ["image_editing"]  # planned as asked, not the guess
        assert planner.asked[-1].startswith("<module>C</module>")
        assert session.send("ok").steps == ()  # the guess went with that turn


def test_a_guessed_undo_waits_for_the_yes_too(agent_settings):
    scene = render_scene(4)
    plans = {"go back": Plan(reply="Go back to @img1?", confirm=True,
                             operation=SessionOperation(kind="undo", target="@img1"))}
    with VitronAgent.from_settings(agent_settings, planner=Scripted(plans)) as agent:
        session = agent.session()
        session.send(paint_blue(scene.box), image=scene.image)
        assert session.send("go back").artifacts == ()
        assert [e.alias for e in agent.memory.artifact_table(session.id)] == ["img1", "mask1", "img2"]
        done = session.send("sure")
        assert done.text == "Back to @img1." and [a.alias for a in done.artifacts] == ["img3"]


@pytest.mark.parametrize("text", ["yes", "Yes please", "y", "YEP!", "sure.", "OK", "okay?!", "Do it", "go ahead…",
                                  "sounds good", "Correct", "right", "  yes, please  "])
def test_affirmations(text):
    assert yes_or_no(text) is True


@pytest.mark.parametrize("text", ["no", "No.", "nope!", "Not that"])
def test_negations(text):
    assert yes_or_no(text) is False


@pytest.mark.parametrize("text", ["yes make it red", "not sure", "ok now blur it", "", "no way, make it blue",
                                  "right side only"])
def test_anything_else_is_a_new_request(text):
    assert yes_or_no(text) is None


@given(st.sampled_from(["yes", "sure", "go ahead", "no", "nope"]), st.text(".!?,;: …", max_size=4),
       st.booleans())
def test_case_and_trailing_punctuation_do_not_count(word, tail, upper):
    said = (word.upper() if upper else word.capitalize()) + tail
    assert yes_or_no(said) is (word not in ("no", "nope"))


PHRASES = ("yes", "yes please", "y", "yep", "sure", "ok", "okay", "do it", "go ahead", "sounds good", "correct",
           "right", "no", "nope", "not that")


@given(st.text(min_size=1, max_size=30))
def test_only_a_known_phrase_is_read_as_an_answer(text):
    if yes_or_no(text) is not None:  # then its letters are one of the phrases'
        assert re.sub(r"[^a-z]", "", text.lower()) in {p.replace(" ", "") for p in PHRASES}


def test_a_step_whose_output_is_content_the_session_holds_still_feeds_the_next(agent_settings):
    """Black and white of a grey photo is the photo itself, byte for byte: it keeps the upload's row (one alias per
    content), is still step 1's output, and step 2 reads it as @1 (it used to fail: 'step 1 has recorded no output')."""
    from agent.api import VitronAgent
    from tests.scenes import grey_photo

    photo = grey_photo("chelsea", 160, 120)
    with VitronAgent.from_settings(agent_settings, planner="explicit") as agent:
        session = agent.session()
        reply = session.send("<module>C</module><instruction>make it black and white</instruction>"
                             "<module>C</module><instruction>make it sepia</instruction><input>@1</input>",
                             image=photo)
        assert [s.status for s in reply.steps] == ["succeeded", "succeeded"], reply.text
        first, second = (a.ref for a in reply.artifacts)
        assert first.alias == "img1"  # the upload's own row
        sepia = agent.memory.store.get_image(second)
        assert (sepia[..., 0].astype(int) - sepia[..., 2]).mean() > 5  # warm, no longer grey
        table = {e.alias: e for e in agent.memory.artifact_table(session.id)}
        assert table[second.alias].parents == ("img1",)
