"""The tools in someone else's agent: LangGraph's `create_react_agent` over `agent.langchain_tools(session)`, driven by
a scripted tool-calling chat model that reads the tool messages as a real model would (the aliases they name, the
errors they explain)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import cv2
import numpy as np
import pytest
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langgraph.prebuilt import create_react_agent

from agent import langchain_tools
from schemas import ArtifactRef
from tests.measure import hue, hue_gap, shrink
from tests.scenes import render_scene
from tools import get_tool
from tools.embedded.colours import COLOURS

# LangGraph 1.0 points at `langchain.agents.create_agent` (the `langchain` package, not installed here); the
# prebuilt ReAct loop is the same loop of model and tool node.
pytestmark = pytest.mark.filterwarnings("ignore:create_react_agent has been moved")

Script = Callable[[list[BaseMessage]], AIMessage]


class ScriptedModel(BaseChatModel):
    """A tool-calling chat model whose answer is `script(messages)`: it sees every tool message, as a model does."""

    script: Script

    @property
    def _llm_type(self) -> str:
        return "scripted"

    def bind_tools(self, tools: Any, **kwargs: Any) -> ScriptedModel:
        return self

    def _generate(self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None,
                  **kwargs: Any) -> ChatResult:
        return ChatResult(generations=[ChatGeneration(message=self.script(messages))])


def call(name: str, **args: Any) -> AIMessage:
    return AIMessage(content="", tool_calls=[{"id": f"call_{name}", "name": name, "args": args}])


def last_tool_message(messages: list[BaseMessage]) -> ToolMessage:
    return next(m for m in reversed(messages) if isinstance(m, ToolMessage))


def run(session: Any, script: Script) -> list[BaseMessage]:
    graph = create_react_agent(ScriptedModel(script=script), langchain_tools(session))
    return graph.invoke({"messages": [("user", "recolour the object in @img1 blue, then animate it")]})["messages"]


def test_a_segment_edit_animate_chain_by_aliases(agent):
    scene = render_scene(0)  # a red circle on the coffee photo
    session = agent.session()
    photo = session.upload(scene.image)
    assert photo.alias == "img1"

    def script(messages: list[BaseMessage]) -> AIMessage:
        # What a model does: call, read the alias the result names, pass it on.
        calls = sum(isinstance(m, ToolMessage) for m in messages)
        if calls == 0:
            return call("image_segmentation", image="@img1", region={"kind": "box", "box": list(scene.box)})
        made = re.search(r"made @(\w+)", last_tool_message(messages).content).group(1)
        if calls == 1:
            return call("image_editing", image="img1", mask=f"@{made}", command="make it blue")
        if calls == 2:
            return call("image_to_video", image=f"@{made}", command="zoom in", num_frames=6)
        return AIMessage(content=f"Here is the clip: @{made}.")

    messages = run(session, script)
    tool_messages = [m for m in messages if isinstance(m, ToolMessage)]
    assert [m.status for m in tool_messages] == ["success"] * 3
    assert tool_messages[0].content.startswith("image_segmentation made @mask1 (mask, 480x360) from "
                                               "image_segmentation of @img1")
    assert "@img2 (image, 480x360) from image_editing of @img1, @mask1" in tool_messages[1].content
    assert "@video1 (video, 480x360, 6 frames) from image_to_video of @img2" in tool_messages[2].content
    assert messages[-1].content == "Here is the clip: @video1."

    # The artifact field holds the refs for the host program; the store has the files.
    store = agent.memory.store
    mask, edited, clip = (ArtifactRef.model_validate(m.artifact[0]) for m in tool_messages)
    assert (mask.alias, edited.alias, clip.alias) == ("mask1", "img2", "video1")
    table = {e.alias: e for e in agent.memory.artifact_table(session.id)}
    assert table["video1"].parents == ("img2",) and table["img2"].parents == ("img1", "mask1")

    # Judged by its pixels: the circle is blue, the photo around it untouched.
    pixels = store.get_image(edited)
    assert np.mean(hue_gap(hue(pixels[shrink(scene.mask, 3)]), hue(np.array(COLOURS["blue"]))[0]) < 15) > 0.9
    outside = ~cv2.dilate(scene.mask.astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool)
    assert np.abs(pixels.astype(int) - scene.image)[outside].max() <= 2
    first = next(iter(store.iter_frames(clip)))
    assert first.shape == scene.image.shape

    # Each call was a turn of the session: its steps and history, as for any turn.
    steps = agent.memory.steps(session.id)
    assert [(s.module, s.status) for s in steps] == [("image_segmentation", "succeeded"),
                                                     ("image_editing", "succeeded"), ("image_to_video", "succeeded")]
    turns = agent.memory.turns(session.id)
    assert turns[0].text.startswith("image_segmentation(image=@img1, region=box (")
    assert [t.reply for t in turns if t.role == "assistant"] == ["Made @mask1.", "Made @img2.", "Made @video1."]


def test_bad_calls_come_back_as_errors_the_model_corrects(agent):
    scene = render_scene(0)
    session = agent.session()
    session.upload(scene.image)
    sent: list[dict[str, Any]] = []

    def script(messages: list[BaseMessage]) -> AIMessage:
        calls = [m for m in messages if isinstance(m, ToolMessage)]
        if not calls:  # a mistyped alias
            answer = call("image_segmentation", image="@img7", region={"box": [10, 10, 100, 100]})
        elif len(calls) == 1:  # the error listed the images there are: take the first
            alias = re.search(r"use one of its images: (@\w+)", calls[-1].content).group(1)
            answer = call("image_segmentation", image=alias, region={"box": [100, 50, 900, 700]})
        elif len(calls) == 2:  # the error gave the image's size: keep the box inside it
            width, height = map(int, re.search(r"the (\d+)x(\d+) image", calls[-1].content).groups())
            answer = call("image_segmentation", image="img1",
                          region={"box": [scene.box[0], scene.box[1], min(scene.box[2], width),
                                          min(scene.box[3], height)]})
        elif len(calls) == 3:  # a field that is not there
            answer = call("image_editing", image="latest", colour="blue")
        elif len(calls) == 4:  # the error said what the tool takes
            answer = call("image_editing", image="the image", mask="latest", command="make it blue")
        else:
            answer = AIMessage(content="done")
        sent.extend(answer.tool_calls)
        return answer

    messages = run(session, script)
    results = [m for m in messages if isinstance(m, ToolMessage)]
    assert [m.status for m in results] == ["error", "error", "success", "error", "success"]
    assert results[0].content == ("image_segmentation: image: the session has no image '@img7' (use one of its "
                                  "images: @img1)")
    assert results[1].content == ("image_segmentation: region: box (100, 50, 900, 700) leaves the 480x360 image "
                                  "(keep x2 <= 480 and y2 <= 360)")
    assert results[3].content.startswith("image_editing: command: Field required; colour: Extra inputs are not "
                                         "permitted (image_editing takes image (required), command (required), mask")
    assert "@img2 (image, 480x360) from image_editing of @img1, @mask1" in results[4].content
    # A refused call records nothing: two turns, one per call that ran.
    assert [s.module for s in agent.memory.steps(session.id)] == ["image_segmentation", "image_editing"]
    assert messages[-1].content == "done"


def test_a_module_that_cannot_run_here_and_a_failing_step_are_errors_too(agent):
    session = agent.session()
    grey = np.full((120, 160, 3), 128, np.uint8)
    session.upload(grey)
    (generate,) = [t for t in langchain_tools(session) if t.name == "image_generation"]
    message = generate.invoke({"type": "tool_call", "id": "1", "name": "image_generation",
                               "args": {"command": "a red bicycle"}})
    assert message.status == "error" and "VITRON_MODELS_FILE" in message.content
    assert agent.memory.steps(session.id) == []  # refused before anything ran
    segment = get_tool("B").as_langchain_tool(session=session)  # the same as session.langchain_tool("B")
    assert segment.name == "image_segmentation" and segment.tool_call_schema.model_json_schema()["properties"][
        "image"]["type"] == "string"
    message = segment.invoke({"type": "tool_call", "id": "2", "name": segment.name,
                              "args": {"image": "@img1", "command": "the red object"}})
    assert message.status == "error" and message.content.startswith("image_segmentation: ")
    assert "no red object" in message.content and message.artifact is None
    assert [s.status for s in agent.memory.steps(session.id)] == ["failed"]


def test_parallel_calls_on_one_session_run_one_after_the_other(agent):
    scene = render_scene(2)
    session = agent.session()
    session.upload(scene.image)

    def script(messages: list[BaseMessage]) -> AIMessage:
        if any(isinstance(m, ToolMessage) for m in messages):
            return AIMessage(content="done")
        # Two calls in one answer: LangGraph runs them at once, each a turn of the one session.
        return AIMessage(content="", tool_calls=[
            {"id": "a", "name": "image_segmentation", "args": {"image": "@img1", "region": {"box": list(scene.box)}}},
            {"id": "b", "name": "image_editing", "args": {"image": "@img1", "command": "make it sepia"}}])

    results = [m for m in run(session, script) if isinstance(m, ToolMessage)]
    assert [m.status for m in results] == ["success", "success"], [m.content for m in results]
    assert sorted(s.module for s in agent.memory.steps(session.id) if s.status == "succeeded") == [
        "image_editing", "image_segmentation"]
    turns = agent.memory.turns(session.id)
    assert [t.role for t in turns] == ["user", "assistant"] * 2  # one turn, then the other: never interleaved


def test_saved_workflows_are_tools_with_alias_inputs(agent):
    scene = render_scene(0)
    session = agent.session()
    session.upload(scene.image)
    cutout = session.langchain_tool("product_cutout")
    schema = cutout.tool_call_schema.model_json_schema()
    assert set(schema["properties"]) == {"photo", "box", "background"} and schema["required"] == ["photo", "box"]
    message = cutout.invoke({"type": "tool_call", "id": "1", "name": "product_cutout",
                             "args": {"photo": "img1", "box": {"box": list(scene.box)}, "background": "black"}})
    assert message.status == "success"
    assert "product_cutout made @mask1 (mask, 480x360) from image_segmentation of @img1; @img2 (image, 480x360) " \
           "from image_editing of @img1, @mask1" in message.content
    out = agent.memory.store.get_image(ArtifactRef.model_validate(message.artifact[1]))
    far = ~cv2.dilate(scene.mask.astype(np.uint8), np.ones((15, 15), np.uint8)).astype(bool)
    assert np.median(out[far]) < 40 and np.std(out[far]) < 3  # the background went black


@pytest.mark.parametrize(("spelled", "alias"), [("@img2", "img2"), ("img1", "img1"), ("latest", "img2"),
                                                 ("the image", "img2"), (" @IMG1 ", "img1")])
def test_artifacts_are_named_as_models_name_them(agent, spelled, alias):
    from agent.toolkit import resolve

    session = agent.session()
    session.upload(np.zeros((20, 30, 3), np.uint8))
    session.upload(np.full((20, 30, 3), 9, np.uint8))
    assert resolve(agent.memory.artifact_table(session.id), spelled, "image", "image").alias == alias


def test_the_tool_without_a_session_answers_errors_in_words(ctx):
    """`as_langchain_tool(ctx)` (refs, no session): a box outside the image is no longer an empty message."""
    image = ctx.store.put_image(np.zeros((100, 120, 3), np.uint8))
    tool = get_tool("image_segmentation").as_langchain_tool(ctx)
    graph = create_react_agent(ScriptedModel(script=lambda messages: call(
        "image_segmentation", image=image.model_dump(mode="json"), region={"kind": "box", "box": [0, 0, 500, 50]})
        if len(messages) == 1 else AIMessage(content="ok")), [tool])
    (message,) = [m for m in graph.invoke({"messages": [("user", "go")]})["messages"] if isinstance(m, ToolMessage)]
    assert message.status == "error" and message.content == (
        "region: box (0, 0, 500, 50) leaves the 120x100 image (keep x2 <= 120 and y2 <= 100)")
    gone = image.model_copy(update={"sha256": "0" * 64})
    message = tool.invoke({"type": "tool_call", "id": "2", "name": tool.name,
                           "args": {"image": gone.model_dump(mode="json")}})
    assert message.status == "error" and "0000000000" in message.content  # the store has no such artifact


def test_the_error_of_a_region_outside_the_picture_names_its_field(ctx):
    """Where the empty message came from: the check was the model's, so its error had no field for LangGraph's
    ToolNode (which keeps the errors of the fields a model writes) to show."""
    from pydantic import ValidationError

    image = ctx.store.put_image(np.zeros((100, 120, 3), np.uint8))
    with pytest.raises(ValidationError) as raised:
        get_tool("C").input_model.model_validate({"image": image, "command": "blur it",
                                                  "region": {"kind": "box", "box": [0, 0, 500, 50]}})
    assert raised.value.errors()[0]["loc"] == ("region",)
