"""The planner model path on a tiny random LLaVA built in code: images in, module tokens out, signal embeddings."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from agent.planners.tiny_vitron import build_tiny_vitron
from agent.planners.vitron_model import (
    HEADS_WEIGHTS,
    IMAGE_TOKEN,
    SIGNAL_TOKEN,
    SPECIAL_TOKENS,
    VitronModel,
)
from schemas import BackendUnavailable, InvalidInput, UnsupportedOperation
from tests.scenes import render_scene, render_video

PLAN = (
    "Sure, I'll take the zebra. <module>B</module><instruction>segmentation: zebra farthest from you</instruction>"
    "<region>(23, 35, 110, 126)</region>[SIG]<module>C</module><instruction>editing: make it blue</instruction>"
    "<input>@1</input>[SIG][SIG]"
)
PROMPT = "Segment the zebra, then make it blue."


@pytest.fixture(scope="session")
def llava_folder(tmp_path_factory):
    return build_tiny_vitron(tmp_path_factory.mktemp("tiny_llava"), seed=0)


@pytest.fixture(scope="session")
def llava(llava_folder) -> VitronModel:
    return VitronModel.load(llava_folder)


@pytest.fixture(scope="session")
def text_model(tmp_path_factory) -> VitronModel:
    return VitronModel.load(build_tiny_vitron(tmp_path_factory.mktemp("tiny_llama"), seed=1, vision=False))


@pytest.fixture(scope="session")
def photos() -> tuple[np.ndarray, np.ndarray]:
    return render_scene(1, 96, 72).image, render_scene(2, 96, 72).image


def test_each_planner_token_is_one_special_token(llava):
    for token in (*SPECIAL_TOKENS, IMAGE_TOKEN):
        ids = llava.tokenizer.encode(token, add_special_tokens=False)
        assert len(ids) == 1, token
    assert llava.tokenizer.convert_ids_to_tokens(llava.signal_token_id) == SIGNAL_TOKEN


def test_processor_puts_one_block_of_image_tokens_per_image(llava, photos):
    image_id = llava.model.config.image_token_id
    one = llava.encode(PROMPT, [photos[0]])
    assert int((one["input_ids"] == image_id).sum()) == 16  # (32 / 8)^2 patches, CLS dropped
    assert one["pixel_values"].shape == (1, 3, 32, 32)

    frames = render_video(3, frames=3, width=64, height=48).frames
    video = llava.encode(PROMPT, frames)
    assert int((video["input_ids"] == image_id).sum()) == 3 * 16
    assert video["pixel_values"].shape == (3, 3, 32, 32)

    placed = llava.encode(f"First {IMAGE_TOKEN} then {IMAGE_TOKEN}: which is bigger?", photos)
    assert int((placed["input_ids"] == image_id).sum()) == 2 * 16


def test_the_image_reaches_the_model(llava, photos):
    first = llava.generate(PROMPT, [photos[0]], force_sequence=PLAN)
    again = llava.generate(PROMPT, [photos[0]], force_sequence=PLAN)
    other = llava.generate(PROMPT, [photos[1]], force_sequence=PLAN)
    torch.testing.assert_close(first.signal_hidden, again.signal_hidden)  # greedy and repeatable
    assert not torch.allclose(first.signal_hidden, other.signal_hidden, atol=1e-4)


def test_forced_plan_decodes_with_module_tokens_intact(llava, photos):
    generation = llava.generate(PROMPT, [photos[0]], force_sequence=PLAN)
    assert generation.text == PLAN
    assert generation.token_ids[-1] == llava.tokenizer.eos_token_id
    assert generation.token_ids.count(llava.signal_token_id) == 3
    assert generation.signal_hidden.shape == (3, llava.hidden_size)
    assert torch.isfinite(generation.signal_hidden).all()


def test_signal_hidden_is_the_last_layer_state_that_emitted_each_signal(llava, photos):
    generation = llava.generate(PROMPT, [photos[0]], force_sequence=PLAN)
    inputs = llava.encode(PROMPT, [photos[0]])
    prompt_length = inputs["input_ids"].shape[1]
    full = torch.cat([inputs["input_ids"], torch.tensor([generation.token_ids])], dim=1)
    with torch.inference_mode():
        out = llava.model(
            input_ids=full,
            attention_mask=torch.ones_like(full),
            pixel_values=inputs["pixel_values"],
            output_hidden_states=True,
        )
    last = out.hidden_states[-1][0]
    steps = [i for i, t in enumerate(generation.token_ids) if t == llava.signal_token_id]
    expected = torch.stack([last[prompt_length + i - 1] for i in steps])  # the position that predicted [SIG]
    torch.testing.assert_close(generation.signal_hidden, expected, atol=1e-4, rtol=1e-4)


def test_free_generation_stays_within_budget_and_hides_control_tokens(llava, photos):
    generation = llava.generate(PROMPT, [photos[0]], max_new_tokens=6)
    assert 1 <= len(generation.token_ids) <= 6
    assert generation.signal_hidden.shape == (generation.token_ids.count(llava.signal_token_id), llava.hidden_size)
    for hidden in ("<s>", "</s>", "<pad>", IMAGE_TOKEN):
        assert hidden not in generation.text


def test_embed_signals_sizes_and_distinct_rows(llava, photos):
    hidden = llava.generate(PROMPT, [photos[0]], force_sequence=PLAN).signal_hidden
    seg, invariant = llava.embed_signals("B", hidden)
    assert seg.shape == (3, 256)
    assert invariant.shape == (3, 512)
    edit, invariant_c = llava.embed_signals("C", hidden)
    assert edit.shape == (3, 768)
    torch.testing.assert_close(invariant, invariant_c)  # one shared task-invariant projection
    assert llava.embed_signals("image_segmentation", hidden)[0].shape == (3, 256)
    assert llava.embed_signals("E", hidden)[0].shape == (3, 256)
    # different hidden states give different embeddings
    assert not torch.allclose(seg[0], seg[1], atol=1e-5)
    assert not torch.allclose(invariant[0], invariant[2], atol=1e-5)
    assert not torch.allclose(seg[0], llava.embed_signals("B", hidden[:1] + 1.0)[0][0], atol=1e-5)


def test_embed_signals_rejects_wrong_hidden_size(llava):
    with pytest.raises(InvalidInput, match="hidden"):
        llava.embed_signals("B", torch.zeros(2, llava.hidden_size + 1))


def test_missing_folder_names_the_setting(tmp_path):
    with pytest.raises(BackendUnavailable) as info:
        VitronModel.load(tmp_path / "nowhere")
    assert "VITRON_PLANNER_MODEL" in str(info.value)
    assert "nowhere" in str(info.value)


def test_missing_heads_names_the_setting(tmp_path, llava_folder):
    copy = shutil.copytree(llava_folder, tmp_path / "no_heads")
    (copy / HEADS_WEIGHTS).unlink()
    with pytest.raises(BackendUnavailable, match="VITRON_PLANNER_MODEL") as info:
        VitronModel.load(copy)
    assert HEADS_WEIGHTS in str(info.value)


def test_missing_weights_names_the_setting(tmp_path, llava_folder):
    copy = shutil.copytree(llava_folder, tmp_path / "no_weights")
    (copy / "model.safetensors").unlink()
    with pytest.raises(BackendUnavailable, match="VITRON_PLANNER_MODEL"):
        VitronModel.load(copy)


def test_image_count_must_match_placeholders(llava, photos):
    with pytest.raises(InvalidInput, match="2 images"):
        llava.generate(f"{IMAGE_TOKEN} what is this?", list(photos))
    with pytest.raises(InvalidInput, match="images"):
        llava.generate(PROMPT, [photos[0].astype(np.float32)])


def test_plain_causal_lm_path(text_model):
    assert not text_model.is_multimodal
    generation = text_model.generate(PROMPT, None, force_sequence=PLAN)
    assert generation.text == PLAN
    assert generation.signal_hidden.shape == (3, text_model.hidden_size)
    task_specific, invariant = text_model.embed_signals("A", generation.signal_hidden)
    assert task_specific.shape == (3, 768)
    assert invariant.shape == (3, 512)
    with pytest.raises(UnsupportedOperation, match="images"):
        text_model.generate(PROMPT, [np.zeros((8, 8, 3), np.uint8)])
