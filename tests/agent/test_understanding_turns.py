"""Module H in turns: its answer becomes the reply, its boxes a later step's region (in the same plan, or from a
remembered boxes artifact), the newest picture is the one it looks at; the chat and VITRON planners plan it."""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage

from agent.api import VitronAgent
from agent.planners.base import PlanRequest
from agent.planners.chat import ChatModelPlanner
from agent.planners.grammar import format_plan, parse_plan
from memory import SessionMemory
from schemas import BoxRegion
from tests.scenes import grey_photo, iou, render_objects


@pytest.fixture
def explicit(agent_settings):
    with VitronAgent.from_settings(agent_settings, planner="explicit") as agent:
        yield agent


def test_the_answer_is_the_reply(explicit):
    scene = render_objects(1)
    session = explicit.session()
    reply = session.send("<module>H</module><instruction>what colours are in it?</instruction>", image=scene.image)
    (step,) = reply.steps
    assert step.module == "visual_understanding" and step.status == "succeeded"
    assert reply.text.startswith("By named colour, the pixels of the image are ") and reply.artifacts == ()
    reply = session.send("Let me look. <module>visual understanding</module><instruction>caption</instruction>")
    assert reply.text.startswith("Let me look. I can't describe what it shows from the pixels alone")
    history = explicit.memory.history(session.id)
    assert history.turns[-1].reply == reply.text  # remembered as the assistant's words


def test_a_found_box_is_the_next_steps_region(explicit):
    scene = render_objects(2)
    session = explicit.session()
    reply = session.send("<module>H</module><instruction>find the red object</instruction>"
                         "<module>B</module><instruction>segment it</instruction><input>@1</input>",
                         image=scene.image)
    assert [s.status for s in reply.steps] == ["succeeded", "succeeded"]
    boxes, mask = reply.artifacts
    assert (boxes.alias, boxes.ref.kind, mask.ref.kind) == ("boxes1", "boxes", "mask")
    assert reply.text.startswith("1 red region of connected pixels: ") and reply.text.endswith("Made @boxes1, @mask1.")
    assert iou(explicit.memory.store.get_mask(mask.ref), scene.masks["red"]) >= 0.95
    assert set(mask.parents) == {"img1", "boxes1"}
    assert reply.steps[1].invocation["inputs"]["region"] == "@1"

    # A later turn names the remembered boxes: their best box is the region.
    reply = session.send('<module>B</module><instruction>segment it</instruction><input name="region">@boxes1</input>')
    assert reply.steps[0].invocation["region"] == BoxRegion(box=scene.box("red")).model_dump(mode="json")
    assert iou(explicit.memory.store.get_mask(reply.artifacts[0].ref), scene.masks["red"]) >= 0.95


def test_nothing_found_fails_the_step_that_needed_it_and_keeps_the_answer(explicit):
    session = explicit.session()
    reply = session.send("<module>H</module><instruction>find the green object</instruction>"
                         "<module>C</module><instruction>blur it</instruction><input>@1</input>",
                         image=grey_photo("coffee", 120, 90))
    assert [s.status for s in reply.steps] == ["succeeded", "failed"]
    assert reply.text.startswith("No green region of at least 16 connected pixels in the image. step 2")


def test_a_region_is_read_once(explicit):
    session = explicit.session()
    reply = session.send("<module>H</module><instruction>find the red object</instruction>"
                         "<module>B</module><instruction>segment it</instruction><region>(1, 1, 20, 20)</region>"
                         "<input>@1</input>", image=render_objects(0).image)
    assert reply.steps == () and "has a region and reads another from @1" in reply.text


def test_it_looks_at_the_newest_picture_and_asks_when_two_are_as_new(explicit):
    scene = render_objects(3)
    session = explicit.session()
    session.send("<module>H</module><instruction>how big is it?</instruction>", image=scene.image)
    video = explicit.memory.store.put_video([grey_photo("rocket", 64, 48)] * 4, 4.0)
    reply = session.send("<module>H</module><instruction>how big is it?</instruction>", video=video)
    assert reply.text.startswith("The video is 64×48 pixels, 4 frames")
    other = explicit.memory.store.put_video([grey_photo("coffee", 64, 48)] * 4, 4.0)
    reply = session.send("<module>H</module><instruction>how big is it?</instruction>", image=render_objects(4).image,
                         video=other)
    assert reply.steps == () and reply.text.startswith("Which image or video do you mean: @")


class _Fake(GenericFakeChatModel):
    def bind_tools(self, tools: Any, **kwargs: Any) -> _Fake:  # type: ignore[override]
        return self


def test_the_chat_planner_passes_found_boxes_on_as_a_region(tmp_path, store):
    with SessionMemory(f"sqlite:///{tmp_path / 'chat.db'}", store) as memory:
        info = memory.create_session("chat")
        memory.append_turn(info.id, "user", "a photo", attachments=[store.put_image(render_objects(0).image)])
        answer = AIMessage(content="", tool_calls=[
            {"name": "visual_understanding", "args": {"image": "@img1", "command": "find: the red cup"},
             "id": "c1", "type": "tool_call"},
            {"name": "image_editing", "args": {"image": "@img1", "command": "make it blue",
                                               "region": {"kind": "boxes", "boxes": "@1"}},
             "id": "c2", "type": "tool_call"}])
        request = PlanRequest(text="make the red cup blue", history=memory.history(info.id),
                              artifacts=tuple(memory.artifact_table(info.id)), inputs={}, region=None, store=store)
        find, edit = (s.invocation for s in ChatModelPlanner(_Fake(messages=iter([answer]))).plan(request).steps)
    assert (find.module, find.inputs) == ("visual_understanding", {"image": "@img1"})
    assert (edit.region, edit.inputs) == (None, {"image": "@img1", "region": "@1"})


def test_the_grammar_plans_h_by_letter_name_or_title_and_prints_it_back():
    for spelling in ("H", "visual_understanding", "Visual Understanding"):
        plan = parse_plan(f"<module>{spelling}</module><instruction>find: the cat</instruction>"
                          '<module>B</module><instruction>segment it</instruction><input name="region">@1</input>')
        assert [s.invocation.module for s in plan.steps] == ["visual_understanding", "image_segmentation"]
        assert parse_plan(format_plan(plan)) == plan


def test_the_vitron_planner_gives_h_no_signal(tmp_path, store):
    from agent.planners.tiny_vitron import build_tiny_vitron
    from agent.planners.vitron import VitronPlanner, load_planner_model

    model = load_planner_model(build_tiny_vitron(tmp_path / "planner", seed=0, vision=False))
    plan = VitronPlanner(model, force_sequence="<module>H</module><instruction>caption</instruction>[SIG]"
                                                "<module>B</module><instruction>segment it</instruction>"
                                                "<input>@1</input>[SIG]").plan(
        PlanRequest(text="caption it", history=_no_history(), artifacts=(), inputs={}, region=None, store=store))
    understand, segment = plan.steps
    assert understand.invocation.module == "visual_understanding" and understand.invocation.signal is None
    assert segment.invocation.signal is not None and segment.invocation.signal.task_specific.shape == (1, 256)


def _no_history():
    from memory import History

    return History("none", (), 0, 0)

