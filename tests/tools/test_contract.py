"""The tool contract: registry spellings, typed inputs, LLM-facing schemas without tensors, bind_tools."""

from __future__ import annotations

import json

import numpy as np
import pytest
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage
from langchain_core.utils.function_calling import convert_to_openai_tool

from schemas import MODULES, ArtifactNotFound, ArtifactRef, BackendUnavailable, InvalidInput
from tools import all_tools, get_tool


class ToolCallingFake(GenericFakeChatModel):
    """A fake chat model that binds tools the way real providers do (OpenAI-format schemas)."""

    def bind_tools(self, tools, **kwargs):
        return self.bind(tools=[convert_to_openai_tool(t) for t in tools], **kwargs)


def test_registry_finds_every_module_by_letter_name_and_title():
    assert [t.code for t in all_tools()] == list("ABCDEFGH")
    for info in MODULES:
        assert get_tool(info.code) is get_tool(info.name) is get_tool(info.title.upper())
        assert get_tool(info.code).name == info.name


@pytest.mark.parametrize("tool", all_tools(), ids=lambda t: t.name)
def test_llm_facing_schema_has_no_tensors(tool):
    spec = convert_to_openai_tool(tool.as_langchain_tool())
    params = spec["function"]["parameters"]
    assert spec["function"]["name"] == tool.name
    assert "signal" not in params["properties"] and "command" in params["properties"]
    assert "x-tensor-shape" not in json.dumps(params)
    assert "signal" in tool.input_model.model_fields  # the tensors are still part of the typed input


def test_bind_tools_and_a_tool_call_with_an_injected_signal(ctx):
    photo = ctx.store.put_image(np.zeros((32, 32, 3), np.uint8) + 200)
    mask = ctx.store.put_mask(np.pad(np.ones((16, 16), bool), 8))
    lc_tools = [t.as_langchain_tool(ctx) for t in all_tools()]
    call = {"name": "image_editing", "id": "call-1", "type": "tool_call",
            "args": {"image": photo.model_dump(), "mask": mask.model_dump(), "command": "make it blue"}}
    model = ToolCallingFake(messages=iter([AIMessage(content="", tool_calls=[call])])).bind_tools(lc_tools)
    names = [t["function"]["name"] for t in model.kwargs["tools"]]
    assert names == [t.name for t in all_tools()]
    reply = model.invoke("make the square blue")
    tool = {t.name: t for t in lc_tools}[reply.tool_calls[0]["name"]]
    signal = {"task_specific": np.ones((1, 8), np.float32), "task_invariant": np.ones((1, 4), np.float32)}
    message = tool.invoke({**reply.tool_calls[0], "args": {**reply.tool_calls[0]["args"], "signal": signal}})
    result = json.loads(message.content)
    edited = ctx.store.get_image(ArtifactRef(**result["image"]))
    assert edited[16, 16, 2] > edited[16, 16, 0]  # the square turned blue
    assert (edited[0, 0] == 200).all()  # outside the mask: untouched


def test_wrong_kind_of_input_is_refused_before_running(ctx):
    mask = ctx.store.put_mask(np.ones((8, 8), bool))
    with pytest.raises(InvalidInput, match="kind image") as info:
        get_tool("B").run({"image": mask, "command": "segment"}, ctx)
    assert info.value.field == "image"


def test_region_outside_the_image_is_refused(ctx):
    photo = ctx.store.put_image(np.zeros((20, 30, 3), np.uint8))
    with pytest.raises(InvalidInput, match="leaves the 30x20 image") as info:
        get_tool("B").run({"image": photo, "region": {"kind": "box", "box": [0, 0, 40, 10]}}, ctx)
    assert info.value.field == "region"


def test_mask_of_another_size_is_refused(ctx):
    photo = ctx.store.put_image(np.zeros((20, 30, 3), np.uint8))
    mask = ctx.store.put_mask(np.ones((10, 10), bool))
    with pytest.raises(InvalidInput, match="mask is 10x10"):
        get_tool("C").run({"image": photo, "mask": mask, "command": "blur it"}, ctx)


def test_missing_artifact_fails_before_any_work(ctx, progress_log):
    ghost = ArtifactRef(sha256="f" * 64, kind="image", media_type="image/png", shape=(8, 8, 3))
    with pytest.raises(ArtifactNotFound):
        get_tool("B").run({"image": ghost, "region": {"kind": "box", "box": [0, 0, 4, 4]}}, ctx)
    assert progress_log == []


@pytest.mark.parametrize("module", ["A", "D"])
def test_generation_without_a_diffusion_backend_names_the_setting(ctx, module):
    with pytest.raises(BackendUnavailable, match="VITRON_MODELS_FILE"):
        get_tool(module).run({"command": "a red fox in the snow"}, ctx)


def test_unknown_backend_lists_the_known_ones(ctx):
    photo = ctx.store.put_image(np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(BackendUnavailable, match="opencv"):
        get_tool("B").run({"image": photo, "command": "x"}, ctx, backend="no-such-backend")
