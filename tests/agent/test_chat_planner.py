"""The chat-model planner on langchain-core's fake chat model, with real session memory on SQLite."""

from __future__ import annotations

import base64
import io
import json
import sys
import types
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.outputs import ChatResult
from langchain_core.utils.function_calling import convert_to_openai_tool
from PIL import Image
from pydantic import Field

from agent.planners.base import Planner, PlanRequest, StepOutcome
from agent.planners.chat import ChatModelPlanner, planner_tools
from agent.planners.grammar import format_plan, parse_plan
from memory import SessionMemory
from schemas import MODULES, ArtifactRef, BackendUnavailable, BoxRegion, InvalidInput, ScribbleRegion, VitronSettings
from tests.scenes import render_scene, render_video


class ToolCallingFake(GenericFakeChatModel):
    """GenericFakeChatModel answers from a list; this one also takes tools and remembers every prompt."""

    tools: list[Any] = Field(default_factory=list)
    prompts: list[list[BaseMessage]] = Field(default_factory=list)

    def bind_tools(self, tools: Any, **kwargs: Any) -> ToolCallingFake:  # type: ignore[override]
        self.tools.extend(tools)
        return self

    def _generate(self, messages: list[BaseMessage], *args: Any, **kwargs: Any) -> ChatResult:
        self.prompts.append(list(messages))
        return super()._generate(messages, *args, **kwargs)


def fake(*answers: AIMessage) -> ToolCallingFake:
    messages: Iterator[AIMessage | str] = iter(answers)
    return ToolCallingFake(messages=messages)


def call(name: str, call_id: str, **args: Any) -> dict[str, Any]:
    return {"name": name, "args": args, "id": call_id, "type": "tool_call"}


def calls(*tool_calls: dict[str, Any], text: str = "") -> AIMessage:
    return AIMessage(content=text, tool_calls=list(tool_calls))


SEGMENT = call("image_segmentation", "c1", image="@img1", command="segmentation: the red object",
               region={"kind": "box", "box": [8, 6, 60, 40]})
EDIT = call("image_editing", "c2", image="@img1", mask="@1", command="make it blue")


@pytest.fixture
def memory(tmp_path, store):
    with SessionMemory(f"sqlite:///{tmp_path / 'vitron.db'}", store) as memory:
        yield memory


@pytest.fixture
def session(memory) -> str:
    """A session whose first turn uploaded a photo (@img1) and a scribble mask (@mask1)."""
    scene = render_scene(3, width=96, height=64)
    info = memory.create_session("chat planner")
    image, mask = memory.store.put_image(scene.image), memory.store.put_mask(scene.mask)
    memory.append_turn(info.id, "user", "here is a photo", attachments=[image, mask])
    memory.append_turn(info.id, "assistant", reply="A nice photo.")
    return info.id


def request(memory: SessionMemory, session_id: str, text: str, **kwargs: Any) -> PlanRequest:
    table = tuple(memory.artifact_table(session_id))
    kwargs.setdefault("inputs", {})
    kwargs.setdefault("region", None)
    return PlanRequest(text=text, history=memory.history(session_id), artifacts=table, store=memory.store, **kwargs)


def test_two_tool_calls_become_a_two_step_plan(memory, session):
    model = fake(calls(SEGMENT, EDIT, text="Segmenting the object, then recolouring it."))
    planner = ChatModelPlanner(model)
    assert isinstance(planner, Planner) and planner.replans

    plan = planner.plan(request(memory, session, "make the red object blue"))

    assert plan.reply == "Segmenting the object, then recolouring it."
    first, second = (step.invocation for step in plan.steps)
    assert (first.module, first.command) == ("image_segmentation", "segmentation: the red object")
    assert first.region == BoxRegion(box=(8, 6, 60, 40)) and first.inputs == {"image": "@img1"}
    assert (second.module, second.inputs, second.region) == ("image_editing", {"image": "@img1", "mask": "@1"}, None)
    assert parse_plan(format_plan(plan)) == plan  # the same plan the grammar would carry

    # The model saw the system prompt, then the history, the artifact table and the user's words.
    system, human = model.prompts[0]
    assert isinstance(system, SystemMessage) and "@N" in system.content
    assert isinstance(human, HumanMessage)
    assert "here is a photo" in human.content and "A nice photo." in human.content
    assert "@img1 image [64, 96, 3]: upload (turn 1)" in human.content
    assert human.content.endswith("User: make the red object blue")


def test_bound_tool_schemas_hold_aliases_not_tensors():
    model = fake()
    ChatModelPlanner(model)
    assert model.tools == list(planner_tools())

    specs = {spec["function"]["name"]: spec["function"] for spec in map(convert_to_openai_tool, model.tools)}
    assert set(specs) == {info.name for info in MODULES}
    text = json.dumps(specs)
    assert "signal" not in text and "sha256" not in text and "task_specific" not in text
    for name, spec in specs.items():
        properties = spec["parameters"]["properties"]
        assert "command" in properties, name
        for field in {"image", "mask", "video", "masks"} & set(properties):
            schema = properties[field]
            types_ = [schema.get("type")] + [option.get("type") for option in schema.get("anyOf", ())]
            assert "string" in types_ and "object" not in types_, (name, field)
            assert "@img1" in schema["description"] and "@N" in schema["description"]
    assert specs["image_segmentation"]["parameters"]["required"] == ["image"]
    assert set(specs["image_editing"]["parameters"]["required"]) == {"image", "command"}
    assert "mask" not in specs["image_editing"]["parameters"]["required"]  # optional stays optional


@pytest.mark.parametrize(("bad", "error"), [
    (call("segment_everything", "bad", image="@img1", command="segment"), "there is no tool 'segment_everything'"),
    (call("image_segmentation", "bad", image="@img1", region={"kind": "box", "box": [8, 6, 60]}),
     "region.box.box: List should have at least 4 items"),
    (call("image_segmentation", "bad", image="@img7"), "no artifact @img7 (the artifact table has @img1, @mask1"),
    (call("image_editing", "bad", image="@img1", mask="@img1", command="blur it"),
     "mask: @img1 is an image, not a mask"),
    (call("image_editing", "bad", image="@img1", mask="@2", command="blur it"), "@2 is not an earlier call"),
])
def test_a_bad_tool_call_is_fed_back_and_the_corrected_answer_is_the_plan(memory, session, bad, error):
    model = fake(calls(bad, call("image_to_video", "ok", image="@img1", command="zoom in")),
                 calls(SEGMENT, EDIT))
    plan = ChatModelPlanner(model).plan(request(memory, session, "make the red object blue"))

    assert [step.invocation.module for step in plan.steps] == ["image_segmentation", "image_editing"]
    assert len(model.prompts) == 2
    *_, answer, refused, not_run = model.prompts[1]
    assert isinstance(answer, AIMessage) and [c["id"] for c in answer.tool_calls] == ["bad", "ok"]
    assert isinstance(refused, ToolMessage) and refused.tool_call_id == "bad" and error in refused.content
    assert isinstance(not_run, ToolMessage) and not_run.tool_call_id == "ok" and "not run" in not_run.content


def test_arguments_that_are_not_json_are_fed_back(memory, session):
    broken = AIMessage(content="", invalid_tool_calls=[
        {"name": "image_segmentation", "args": "{image: @img1", "id": "x", "error": "bad JSON",
         "type": "invalid_tool_call"},
    ])
    model = fake(broken, calls(SEGMENT))
    plan = ChatModelPlanner(model).plan(request(memory, session, "segment the red object"))
    assert len(plan.steps) == 1
    refused = model.prompts[1][-1]
    assert isinstance(refused, ToolMessage) and refused.tool_call_id == "x" and "bad JSON" in refused.content


def test_too_many_bad_answers_raise_invalid_input(memory, session):
    bad = call("image_segmentation", "bad", image="@img1", region={"kind": "box", "box": [60, 6, 8, 40]})
    model = fake(calls(bad), calls(bad), calls(bad))
    with pytest.raises(InvalidInput) as caught:
        ChatModelPlanner(model, max_corrections=1).plan(request(memory, session, "segment it"))
    assert caught.value.field == "plan"
    assert "after 1 correction" in caught.value.message and "x1 < x2" in caught.value.message
    assert len(model.prompts) == 2


def test_a_text_answer_is_the_reply_with_no_steps(memory, session):
    blocks: list[str | dict] = [{"type": "text", "text": "It is a red shape"}, {"type": "text", "text": "on a photo."}]
    model = fake(AIMessage(content=blocks))
    plan = ChatModelPlanner(model).plan(request(memory, session, "what is in the picture?"))
    assert plan.steps == [] and plan.reply == "It is a red shape\non a photo."


def test_round_two_shows_the_results_and_may_use_their_outputs(memory, session):
    results = (StepOutcome(1, "image_segmentation", "segmentation: the red object", "succeeded", ("mask2",)),
               StepOutcome(2, "image_editing", "make it blue", "failed", error="image: expected an image"))
    model = fake(calls(call("image_editing", "c", image="@img1", mask="@mask2", command="make it blue")))
    plan = ChatModelPlanner(model).plan(request(memory, session, "make the red object blue", round=2,
                                                results=results))

    assert plan.steps[0].invocation.inputs == {"image": "@img1", "mask": "@mask2"}
    shown = model.prompts[0][-1]
    assert isinstance(shown, HumanMessage)
    assert "step 1 image_segmentation “segmentation: the red object”: succeeded → @mask2" in shown.content
    assert "failed (image: expected an image)" in shown.content


def test_feedback_on_a_refused_plan_reaches_the_model(memory, session):
    model = fake(AIMessage(content="Sorry, I cannot do that."))
    ChatModelPlanner(model).plan(request(memory, session, "segment it", feedback="step 1: image_generation is off",
                                         attempt=2))
    assert "refused: step 1: image_generation is off" in model.prompts[0][-1].content


def test_the_users_region_reaches_the_model_and_a_scribble_resolves_to_its_mask(memory, session):
    mask = next(e.ref for e in memory.artifact_table(session) if e.alias == "mask1")
    model = fake(calls(call("image_segmentation", "c", image="@img1", region={"kind": "scribble", "mask": "@mask1"})))
    plan = ChatModelPlanner(model).plan(request(memory, session, "segment this", region=ScribbleRegion(mask=mask)))
    assert plan.steps[0].invocation.region == ScribbleRegion(mask=mask)
    assert 'Region the user drew this turn: {"kind": "scribble", "mask": "@mask1"}' in model.prompts[0][1].content

    model = fake(AIMessage(content="ok"))
    ChatModelPlanner(model).plan(request(memory, session, "segment this", region=BoxRegion(box=(1, 2, 30, 40))))
    assert '{"kind":"box","box":[1.0,2.0,30.0,40.0]}' in model.prompts[0][1].content


def test_a_model_without_tool_calling_is_refused():
    with pytest.raises(BackendUnavailable, match="tool calling"):
        ChatModelPlanner(GenericFakeChatModel(messages=iter(())))


def test_from_settings_without_a_spec_names_the_variable(tmp_path, monkeypatch):
    monkeypatch.delenv("VITRON_CHAT_MODEL", raising=False)
    with pytest.raises(BackendUnavailable) as caught:
        ChatModelPlanner.from_settings(VitronSettings(home=tmp_path))
    assert "VITRON_CHAT_MODEL" in caught.value.message and "pip install langchain" in caught.value.message


def test_from_settings_without_langchain_names_the_packages(monkeypatch):
    monkeypatch.setitem(sys.modules, "langchain", None)  # as if not installed, whatever this machine has
    with pytest.raises(BackendUnavailable) as caught:
        ChatModelPlanner.from_settings(types.SimpleNamespace(chat_model="openai:gpt-4o-mini"))
    assert "VITRON_CHAT_MODEL" in caught.value.message
    assert "pip install langchain langchain-openai" in caught.value.message


def _stub_langchain(monkeypatch, init_chat_model: Any) -> None:
    """A stand-in for the `langchain` package (not installed here), holding only init_chat_model."""
    package, chat_models = types.ModuleType("langchain"), types.ModuleType("langchain.chat_models")
    chat_models.init_chat_model = init_chat_model  # type: ignore[attr-defined]
    package.chat_models = chat_models  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "langchain", package)
    monkeypatch.setitem(sys.modules, "langchain.chat_models", chat_models)


def test_from_settings_builds_the_named_model(monkeypatch, memory, session):
    asked: list[str] = []
    model = fake(AIMessage(content="hello"))
    _stub_langchain(monkeypatch, lambda spec: asked.append(spec) or model)
    monkeypatch.setenv("VITRON_CHAT_MODEL", "ollama:llava")
    planner = ChatModelPlanner.from_settings(VitronSettings(), max_corrections=0)
    assert asked == ["ollama:llava"] and planner.max_corrections == 0
    assert planner.plan(request(memory, session, "hi")).reply == "hello"


def test_from_settings_with_the_provider_package_missing(monkeypatch):
    def init_chat_model(spec: str) -> Any:
        raise ImportError("Unable to import langchain_ollama. Please install with `pip install -U langchain-ollama`")

    _stub_langchain(monkeypatch, init_chat_model)
    with pytest.raises(BackendUnavailable) as caught:
        ChatModelPlanner.from_settings(types.SimpleNamespace(chat_model="ollama:llava"))
    assert "pip install langchain langchain-ollama" in caught.value.message


# --- the turn's pictures -------------------------------------------------------------------------------------


def pictures(message: BaseMessage) -> list[tuple[str, np.ndarray]]:
    """The pictures of a multimodal message, each with the text block before it (its label), decoded to RGB."""
    assert isinstance(message.content, list)
    shown = []
    for before, block in zip(message.content, message.content[1:], strict=False):
        if isinstance(block, dict) and block["type"] == "image_url":
            assert isinstance(before, dict) and before["type"] == "text"
            head, data = block["image_url"]["url"].split(",", 1)
            assert head == "data:image/png;base64"
            shown.append((before["text"], np.asarray(Image.open(io.BytesIO(base64.b64decode(data))).convert("RGB"))))
    return shown


def resized(pixels: np.ndarray, width: int, height: int) -> np.ndarray:
    return np.asarray(Image.fromarray(pixels).resize((width, height), Image.Resampling.LANCZOS))


def test_an_uploaded_image_is_shown_downscaled_after_the_context(memory, session):
    photo = render_scene(5, width=1000, height=600).image
    upload = memory.store.put_image(photo)
    model = fake(calls(call("image_segmentation", "c", image="@img2", command="segmentation: the object")))
    plan = ChatModelPlanner(model).plan(request(memory, session, "segment the object", inputs={"img2": upload}))
    assert plan.steps[0].invocation.inputs == {"image": "@img2"}

    human = model.prompts[0][1]
    first, *rest = human.content
    assert first["type"] == "text"
    assert "Uploaded with this message: @img2" in first["text"] and first["text"].endswith("User: segment the object")
    assert [block["type"] for block in rest] == ["text", "image_url"]
    ((label, shown),) = pictures(human)
    assert label == "@img2 (1000x600, shown at 768x461):"  # the longest side at 768, the aspect ratio kept
    assert shown.shape == (461, 768, 3)
    assert np.array_equal(shown, resized(photo, 768, 461))  # lossless: exactly the photo, downscaled


def test_an_uploaded_video_is_shown_as_evenly_spaced_labelled_frames(memory, session):
    video = memory.store.put_video(render_video(2, frames=30, width=320, height=240).frames, fps=10)
    stored = list(memory.store.iter_frames(video))  # what the tools will read, after the video's encoding
    model = fake(AIMessage(content="A shape glides across a photo."))
    ChatModelPlanner(model, image_side=160).plan(request(memory, session, "what happens?", inputs={"video1": video}))

    shown = pictures(model.prompts[0][1])
    assert [label for label, _ in shown] == [f"@video1 frame {i} of 30 (320x240, shown at 160x120):"
                                             for i in (0, 10, 19, 29)]
    for (_, pixels), index in zip(shown, (0, 10, 19, 29), strict=True):
        assert np.array_equal(pixels, resized(stored[index], 160, 120)), index


def test_without_pictures_the_prompt_stays_plain_text(memory, session):
    """No upload, a mask upload, or images turned off: the prompt is the context string, as for a text-only model."""
    mask = next(e.ref for e in memory.artifact_table(session) if e.alias == "mask1")
    photo = memory.store.put_image(render_scene(5, width=200, height=100).image)
    for planner_images, inputs in ((True, {}), (True, {"mask2": mask}), (False, {"img2": photo})):
        model = fake(AIMessage(content="ok"))
        ChatModelPlanner(model, send_images=planner_images).plan(request(memory, session, "hi", inputs=inputs))
        human = model.prompts[0][1]
        assert isinstance(human.content, str) and human.content.endswith("User: hi"), (planner_images, inputs)
    assert "Uploaded with this message: @img2" in human.content  # listed by alias, not shown


def test_a_small_image_is_shown_at_its_size_and_a_missing_one_is_named(memory, session):
    photo = render_scene(4, width=300, height=200).image
    missing = ArtifactRef(sha256="0" * 64, kind="image", media_type="image/png", shape=(10, 10, 3))
    model = fake(AIMessage(content="ok"))
    ChatModelPlanner(model).plan(request(memory, session, "compare them",
                                         inputs={"img2": memory.store.put_image(photo), "img3": missing}))
    human = model.prompts[0][1]
    ((label, shown),) = pictures(human)
    assert label == "@img2 (300x200):" and np.array_equal(shown, photo)
    assert human.content[-1]["text"].startswith("@img3 cannot be shown: no image artifact 000000000000")


def test_a_question_about_an_image_is_answered_in_text(memory, session):
    upload = memory.store.put_image(render_scene(5, width=400, height=300).image)
    model = fake(AIMessage(content="An orange circle on a photo of an astronaut."))
    plan = ChatModelPlanner(model).plan(request(memory, session, "what is in it?", inputs={"img2": upload}))
    assert plan.steps == [] and plan.reply == "An orange circle on a photo of an astronaut."
    assert len(pictures(model.prompts[0][1])) == 1  # it answered having seen the picture


def test_from_settings_reads_whether_to_show_pictures(monkeypatch, tmp_path):
    _stub_langchain(monkeypatch, lambda spec: fake())
    monkeypatch.setenv("VITRON_CHAT_MODEL", "ollama:llama3")
    assert ChatModelPlanner.from_settings(VitronSettings(home=tmp_path)).send_images is True
    monkeypatch.setenv("VITRON_CHAT_IMAGES", "0")
    assert ChatModelPlanner.from_settings(VitronSettings(home=tmp_path)).send_images is False
