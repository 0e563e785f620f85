"""The VITRON planner on a tiny random model: a real session, real photos and videos in, steps with embeddings out."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest
import torch
from skimage import data as photos

from agent.planners.base import Planner, PlanRequest
from agent.planners.tiny_vitron import build_tiny_vitron
from agent.planners.vitron import VitronPlanner, load_planner_model
from agent.planners.vitron_model import IMAGE_TOKEN, VitronModel
from memory import ArtifactStore, SessionMemory
from schemas import (
    ArtifactRef,
    BackendUnavailable,
    BoxRegion,
    InvalidInput,
    Invocation,
    PlanSyntaxError,
    Region,
    VitronSettings,
)
from tests.scenes import render_video

PLAN = (
    "Sure. <module>B</module><instruction>segment the cup</instruction><region>(10, 10, 50, 40)</region>[SIG]"
    "<module>C</module><instruction>make it blue</instruction><input>@1</input>[SIG][SIG]"
)
ASK = "segment the cup, then make it blue"


@pytest.fixture(scope="module")
def llava_folder(tmp_path_factory) -> Path:
    return build_tiny_vitron(tmp_path_factory.mktemp("planner_llava"), seed=0)


@pytest.fixture(scope="module")
def llava(llava_folder) -> VitronModel:
    return load_planner_model(llava_folder)


@pytest.fixture(scope="module")
def text_model(tmp_path_factory) -> VitronModel:
    return load_planner_model(build_tiny_vitron(tmp_path_factory.mktemp("planner_llama"), seed=1, vision=False))


@pytest.fixture
def memory(tmp_path, store) -> Iterator[SessionMemory]:
    with SessionMemory(f"sqlite:///{tmp_path / 'sessions.db'}", store) as memory:
        yield memory


def turn_request(memory: SessionMemory, session_id: str, text: str, uploads: Sequence[ArtifactRef] = (),
                 region: Region | None = None, **extra: object) -> PlanRequest:
    """Record the user's turn with its uploads, then ask as the agent would."""
    turn = memory.append_turn(session_id, "user", text, attachments=list(uploads))
    return PlanRequest(text=text, history=memory.history(session_id),
                       artifacts=tuple(memory.artifact_table(session_id)),
                       inputs={ref.alias: ref for ref in turn.artifacts}, region=region, store=memory.store,
                       **extra)  # type: ignore[arg-type]


def photo_request(memory: SessionMemory, image: np.ndarray, text: str = ASK) -> PlanRequest:
    session = memory.create_session("photo")
    return turn_request(memory, session.id, text, [memory.store.put_image(image)])


def test_forced_plan_becomes_steps_with_signal_embeddings(llava, memory):
    planner = VitronPlanner(llava, force_sequence=PLAN)
    assert isinstance(planner, Planner) and planner.name == "vitron" and not planner.replans
    plan = planner.plan(photo_request(memory, photos.coffee()))

    assert plan.reply == "Sure."
    segment, edit = plan.steps
    assert segment.invocation.module == "image_segmentation"
    assert segment.invocation.command == "segment the cup"
    assert segment.invocation.region == BoxRegion(box=(10, 10, 50, 40))
    assert edit.invocation.module == "image_editing"
    assert edit.invocation.inputs == {"input": "@1"}
    assert (segment.signal_tokens, edit.signal_tokens) == (1, 2)

    first, second = segment.invocation.signal, edit.invocation.signal
    assert first.task_specific.shape == (1, 256) and first.task_invariant.shape == (1, 512)  # SAM prompt space
    assert second.task_specific.shape == (2, 768) and second.task_invariant.shape == (2, 512)
    for tensor in (first.task_specific, first.task_invariant, second.task_specific, second.task_invariant):
        assert isinstance(tensor, torch.Tensor) and tensor.dtype == torch.float32 and tensor.device.type == "cpu"
        assert torch.isfinite(tensor).all()
    assert not torch.allclose(second.task_specific[0], second.task_specific[1], atol=1e-5)
    assert not torch.allclose(second.task_invariant[0], second.task_invariant[1], atol=1e-5)
    second.task_specific += 1  # ordinary tensors the caller owns, not inference-mode ones


def test_the_image_reaches_the_model(llava, memory):
    planner = VitronPlanner(llava, force_sequence=PLAN)
    coffee = planner.plan(photo_request(memory, photos.coffee())).steps[0].invocation.signal
    again = planner.plan(photo_request(memory, photos.coffee())).steps[0].invocation.signal
    astronaut = planner.plan(photo_request(memory, photos.astronaut())).steps[0].invocation.signal
    torch.testing.assert_close(coffee.task_specific, again.task_specific)  # greedy: same turn, same plan
    assert not torch.allclose(coffee.task_specific, astronaut.task_specific, atol=1e-4)
    assert not torch.allclose(coffee.task_invariant, astronaut.task_invariant, atol=1e-4)


def test_prompt_holds_modules_history_inputs_and_region(llava, memory):
    session = memory.create_session("cup")
    memory.append_turn(session.id, "user", "hello there")
    memory.append_turn(session.id, "assistant", reply="Hi! Send me a picture.")
    request = turn_request(memory, session.id, ASK, [memory.store.put_image(photos.coffee())],
                           region=BoxRegion(box=(10, 10, 50, 40)))
    prompt = VitronPlanner(llava).prompt_for(request)

    for module in ("A image_generation", "B image_segmentation", "G image_to_video"):
        assert module in prompt.text
    assert "<module>B</module><instruction>" in prompt.text
    assert "[1] user: hello there" in prompt.text and "[2] assistant: Hi! Send me a picture." in prompt.text
    assert "@img1 image [400, 600, 3]: upload (turn 3)" in prompt.text  # the artifact table
    assert "This turn's inputs: @img1 image 600x400" in prompt.text
    assert "Region drawn by the user: box (10, 10, 50, 40)" in prompt.text
    assert prompt.text.endswith(f"USER: {IMAGE_TOKEN}\n{ASK} ASSISTANT:")
    assert prompt.text.count(ASK) == 1  # the recorded user turn is not repeated from the history
    assert prompt.shown == "@img1"
    assert len(prompt.images) == 1 and np.array_equal(prompt.images[0], photos.coffee())
    encoded = llava.encode(prompt.text, prompt.images)
    assert encoded["pixel_values"].shape == (1, 3, 32, 32)


def test_a_typed_image_token_cannot_shift_the_pictures(llava, memory):
    text = f"what is {IMAGE_TOKEN} in this?"
    request = photo_request(memory, photos.coffee(), text)
    prompt = VitronPlanner(llava).prompt_for(request)
    assert prompt.text.count(IMAGE_TOKEN) == 1
    assert VitronPlanner(llava, force_sequence=PLAN).plan(request).reply == "Sure."


def test_video_input_gives_evenly_spread_frames(llava, memory, store):
    clip = render_video(3, frames=9, width=64, height=48).frames
    video = store.put_video(clip, fps=10)
    session = memory.create_session("video")
    request = turn_request(memory, session.id, "segment the moving object", [video])
    planner = VitronPlanner(llava, video_frames=4, force_sequence=PLAN)
    prompt = planner.prompt_for(request)

    decoded = list(store.iter_frames(video))
    assert len(decoded) == 9
    assert len(prompt.images) == 4
    for frame, index in zip(prompt.images, (0, 3, 5, 8), strict=True):  # linspace(0, 8, 4) rounded
        assert np.array_equal(frame, decoded[index])
    assert prompt.shown == "4 frames of @video1 (frames 0, 3, 5, 8)"
    assert "@video1 video 9 frames of 64x48" in prompt.text
    encoded = llava.encode(prompt.text, prompt.images)
    assert encoded["pixel_values"].shape == (4, 3, 32, 32)
    assert int((encoded["input_ids"] == llava.model.config.image_token_id).sum()) == 4 * 16

    plan = planner.plan(request)
    assert plan.steps[1].invocation.signal.task_specific.shape == (2, 768)
    # fewer frames than asked for: each one once
    assert [index for index, _ in store.sample_frames(video, 20)[1]] == list(range(9))


def test_without_inputs_the_newest_image_of_the_session_is_shown(llava, memory, store):
    session = memory.create_session("two photos")
    turn_request(memory, session.id, "first", [store.put_image(photos.coffee())])
    turn_request(memory, session.id, "second", [store.put_image(photos.astronaut())])
    prompt = VitronPlanner(llava).prompt_for(turn_request(memory, session.id, "now make it brighter"))
    assert prompt.shown == "@img2"
    assert np.array_equal(prompt.images[0], photos.astronaut())


def test_a_session_without_pictures_gets_a_text_only_prompt(llava, memory):
    session = memory.create_session("words")
    request = turn_request(memory, session.id, "draw a cat on a sofa")
    planner = VitronPlanner(llava, force_sequence=PLAN)
    prompt = planner.prompt_for(request)
    assert prompt.images == [] and IMAGE_TOKEN not in prompt.text
    assert len(planner.plan(request).steps) == 2


def test_a_text_only_model_plans_without_pictures(text_model, memory):
    request = photo_request(memory, photos.coffee())
    planner = VitronPlanner(text_model, force_sequence=PLAN)
    prompt = planner.prompt_for(request)
    assert prompt.images == [] and IMAGE_TOKEN not in prompt.text
    assert "@img1 image 600x400" in prompt.text  # it still hears about the upload
    plan = planner.plan(request)
    assert plan.reply == "Sure."
    assert plan.steps[0].invocation.signal.task_specific.shape == (1, 256)
    assert plan.steps[1].invocation.signal.task_invariant.shape == (2, 512)


@pytest.mark.parametrize(
    "text",
    [
        # spelled as a tag: the grammar counts it, but the model emitted no [SIG] token
        "Ok. <module>B</module><instruction>segment the cup</instruction><signal/>",
        # inside an instruction: the model emitted [SIG], but no block holds it
        "Ok. <module>B</module><instruction>segment [SIG] the cup</instruction>",
    ],
)
def test_signal_tokens_that_do_not_match_hidden_states_are_refused(llava, memory, text):
    with pytest.raises(InvalidInput, match="signal tokens") as info:
        VitronPlanner(llava, force_sequence=text).plan(photo_request(memory, photos.coffee()))
    assert info.value.field == "plan"


def test_a_plan_without_blocks_is_a_reply(llava, memory):
    plan = VitronPlanner(llava, force_sequence="A cup of coffee.").plan(photo_request(memory, photos.coffee()))
    assert plan.reply == "A cup of coffee." and plan.steps == []


def test_a_syntax_error_comes_back_as_is(llava, memory):
    planner = VitronPlanner(llava, force_sequence="Sure. <module>B</module><instruction>segment the cup")
    with pytest.raises(PlanSyntaxError, match="never closed"):
        planner.plan(photo_request(memory, photos.coffee()))


def test_feedback_reaches_the_prompt_and_later_rounds_plan_nothing(llava, memory):
    session = memory.create_session("retry")
    request = turn_request(memory, session.id, ASK, attempt=2, feedback="step 2 names no input")
    planner = VitronPlanner(llava, force_sequence=PLAN)
    assert "Your previous plan was refused: step 2 names no input" in planner.prompt_for(request).text
    assert planner.plan(dataclasses.replace(request, round=2)).steps == []


def test_missing_setting_names_it(tmp_path, monkeypatch):
    monkeypatch.delenv("VITRON_PLANNER_MODEL", raising=False)
    with pytest.raises(BackendUnavailable, match="VITRON_PLANNER_MODEL"):
        VitronPlanner.from_settings(VitronSettings(home=tmp_path))


def test_from_settings_loads_each_folder_once(llava, llava_folder, tmp_path, monkeypatch):
    monkeypatch.chdir(llava_folder.parent)
    first = VitronPlanner.from_settings(VitronSettings(home=tmp_path, planner_model=llava_folder), video_frames=2)
    # the same folder spelled relative to the working directory: still the one loaded model
    second = VitronPlanner.from_settings(VitronSettings(home=tmp_path, planner_model=Path(llava_folder.name)))
    assert first.model is second.model is llava
    assert first.video_frames == 2
    with pytest.raises(BackendUnavailable, match="VITRON_PLANNER_MODEL"):
        VitronPlanner.from_settings(VitronSettings(home=tmp_path, planner_model=llava_folder / "missing"))


def test_embeddings_travel_by_reference(llava, memory, store: ArtifactStore):
    plan = VitronPlanner(llava, force_sequence=PLAN).plan(photo_request(memory, photos.coffee()))
    invocation = plan.steps[1].invocation
    dumped = invocation.model_dump(mode="json", context={"store": store})
    for name, shape in (("task_specific", [2, 768]), ("task_invariant", [2, 512])):
        ref = ArtifactRef.model_validate(dumped["signal"][name])
        assert ref.kind == "embedding" and ref.media_type == "application/vnd.safetensors"
        assert list(ref.shape) == shape
        np.testing.assert_array_equal(store.get_tensor(ref), getattr(invocation.signal, name).numpy())
    assert len(json.dumps(dumped)) < 2000  # refs, not numbers
    back = Invocation.model_validate(dumped, context={"store": store})
    np.testing.assert_array_equal(back.signal.task_specific, invocation.signal.task_specific.numpy())
