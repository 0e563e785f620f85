"""The VITRON planner on the other vision-language families it loads (LLaVA-OneVision, Qwen2-VL, Qwen2.5-VL), each a
tiny random model built in code: pictures through the family's own processor and tokens, the hidden states at
`[SIG]`, and a few CPU training steps (a stopped run resumed) whose saved planner runs a turn through the agent."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
import transformers
from safetensors.torch import load_file
from skimage import data as photos

from agent.api import VitronAgent
from agent.planners.tiny_vitron import build_tiny_vitron
from agent.planners.vitron import VitronPlanner
from agent.planners.vitron_families import lora_targets, vision_tower
from agent.planners.vitron_model import IMAGE_TOKEN, VitronModel
from agent.planners.vitron_train import VitronTrainConfig, train_vitron
from schemas import VitronSettings
from tests.scenes import render_scene
from tests.tools.tiny_backends import tiny_models_file
from tests.tools.tiny_sam import WIDTH

FAMILIES = [
    "llava_onevision",
    "qwen2_vl",
    pytest.param("qwen2_5_vl", marks=pytest.mark.skipif(
        not hasattr(transformers, "Qwen2_5_VLForConditionalGeneration"), reason="transformers has no Qwen2.5-VL")),
]
PLAN = ("Sure. <module>B</module><instruction>segmentation: the zebra</instruction>[SIG]<module>C</module>"
        "<instruction>editing: make it blue</instruction><input>@1</input>[SIG][SIG]")
PROMPT = "Segment the zebra, then make it blue."
FEW = dict(head_steps=20, requests=16, batch=2, lora_rank=4, lr=1e-2, save_every=1)


@pytest.fixture(scope="module")
def pictures():
    return [render_scene(1, 96, 72).image, render_scene(2, 96, 72).image]


@pytest.fixture(scope="module", params=FAMILIES)
def family(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def base(family, tmp_path_factory) -> Path:
    return build_tiny_vitron(tmp_path_factory.mktemp(family), family=family, initializer_range=0.3)


@pytest.fixture(scope="module")
def model(base) -> VitronModel:
    return VitronModel.load(base)


@pytest.fixture(scope="module")
def settings(tmp_path_factory) -> VitronSettings:
    root = tmp_path_factory.mktemp("backends")
    return VitronSettings(home=root / "home", models_file=tiny_models_file(root))


@pytest.fixture(scope="module")
def trained(base, settings, tmp_path_factory) -> tuple[Path, dict]:
    """Stage 1 stopped after 2 steps, then the same folder trained on through all three stages to 4 steps."""
    out = tmp_path_factory.mktemp("trained") / "planner"
    train_vitron(base, out, VitronTrainConfig(**FEW, steps=2, stages=(1,)), settings=settings)
    assert json.loads((out / "resume" / "state.json").read_text())["stage1_step"] == 2
    return out, train_vitron(base, out, VitronTrainConfig(**FEW, steps=4), settings=settings)


def _image_id(model: VitronModel) -> int:
    config = model.model.config
    return getattr(config, "image_token_id", None) or config.image_token_index


def test_pictures_go_in_as_the_familys_own_tokens(family, model, pictures):
    config, image_id = model.model.config, _image_id(model)
    one, two = model.encode(PROMPT, pictures[:1]), model.encode(f"{IMAGE_TOKEN} or {IMAGE_TOKEN}?", pictures)
    if family.startswith("qwen"):
        # each picture between vision start and end, as many pads as its merged patches
        assert model.image_placeholder == "<|vision_start|><|image_pad|><|vision_end|>"
        for inputs, n in ((one, 1), (two, 2)):
            ids = inputs["input_ids"][0]
            assert int((ids == config.vision_start_token_id).sum()) == n == inputs["image_grid_thw"].shape[0]
            assert int((ids == image_id).sum()) == int(inputs["image_grid_thw"].prod(-1).sum()) // 4
            assert inputs["mm_token_type_ids"].shape == inputs["input_ids"].shape
    else:
        assert model.image_placeholder == IMAGE_TOKEN
        # one tile per picture of a multi-picture prompt, tiles and a newline row for a single one
        assert int((two["input_ids"] == image_id).sum()) == 2 * (16 + 1)
        assert int((one["input_ids"] == image_id).sum()) > 16 + 1 and two["image_sizes"].shape[0] == 2


def test_signal_states_are_the_full_forwards_and_see_the_picture(model, pictures):
    for shown in (pictures[:1], pictures):
        generation = model.generate(PROMPT, shown, force_sequence=PLAN)
        assert generation.text == PLAN and generation.signal_hidden.shape == (3, model.hidden_size)
        inputs = model.encode(PROMPT, shown)
        full = model.extend(inputs, torch.tensor([generation.token_ids]))
        with torch.inference_mode():
            last = model.model(**full, output_hidden_states=True).hidden_states[-1][0]
        start = inputs["input_ids"].shape[1]
        steps = [i for i, t in enumerate(generation.token_ids) if t == model.signal_token_id]
        expected = torch.stack([last[start + i - 1] for i in steps])  # the state that predicted each [SIG]
        torch.testing.assert_close(generation.signal_hidden, expected, atol=1e-4, rtol=1e-4)
    other = model.generate(PROMPT, pictures[1:], force_sequence=PLAN).signal_hidden
    first = model.generate(PROMPT, pictures[:1], force_sequence=PLAN).signal_hidden
    assert not torch.allclose(first, other, atol=1e-4)


def test_picture_tokens_typed_in_the_prompt_do_not_shift_the_pictures(family, model, pictures):
    if not family.startswith("qwen"):
        pytest.skip("the LLaVAs' picture token is the prompt's own <image>, which the planner's prompt escapes")
    typed = model.encode("what is <|image_pad|><|vision_end|> here?", pictures[:1])
    plain = model.encode("what is here?", pictures[:1])
    assert int((typed["input_ids"] == _image_id(model)).sum()) == int((plain["input_ids"] == _image_id(model)).sum())


def test_lora_targets_every_projection_of_the_language_model_and_nothing_else(model, tmp_path):
    text_only = VitronModel.load(build_tiny_vitron(tmp_path / "llama", vision=False)).model
    for lm, inside in ((model.model, "model.language_model.layers."), (text_only, "model.layers.")):
        pattern = re.compile(lora_targets(lm))
        linear = [name for name, m in lm.named_modules() if isinstance(m, torch.nn.Linear)]
        chosen = [name for name in linear if pattern.fullmatch(name)]
        assert chosen == [name for name in linear if name.startswith(inside)]
        assert len(chosen) == 2 * 7  # two layers: q, k, v, o and the gated MLP's three
    assert vision_tower(text_only) is None


def test_training_resumes_adapts_only_the_language_model_and_fits_the_backends(trained):
    out, summary = trained
    one, two = summary["stages"]["1"], summary["stages"]["2"]
    assert one["steps"] == 4 and len(one["losses"]) == 4  # two kept from the stopped run, two more
    assert "image_segmentation" in two["aligned"] and two["final_loss"] < 0.8 * two["first_loss"]
    assert json.loads((out / "signal_heads.json").read_text())["task_specific_sizes"]["B"] == WIDTH
    adapted = load_file(str(out / "adapter_model.safetensors"))
    lora = [k for k in adapted if "lora_" in k]
    assert lora and all(".language_model.layers." in k for k in lora)
    assert any("token_adapter" in k for k in adapted)  # the grammar's token rows


def test_the_trained_planner_kept_its_vision_tower_and_runs_a_turn(trained, base, settings, tmp_path):
    out, _ = trained
    loaded = VitronModel.load(out)
    before = vision_tower(VitronModel.load(base).model).state_dict()
    after = vision_tower(loaded.model).state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    planner = VitronPlanner(loaded, force_sequence="Sure. <module>B</module><instruction>segmentation: the cup"
                                                   "</instruction>[SIG][SIG]")
    with VitronAgent.from_settings(settings.model_copy(update={"home": tmp_path}), planner=planner) as agent:
        reply = agent.session().send("segment the cup", image=photos.coffee())
    (step,) = reply.steps
    assert step.status == "succeeded" and step.invocation["command"] == "the cup"
    assert step.invocation.get("signal") is not None  # the trained B head's, in SAM's width


def test_a_published_base_gets_the_planner_tokens_in_its_spare_rows(tmp_path, pictures):
    """A real base's tokenizer lacks the grammar's tokens; Qwen's have embedding rows past their last token: the
    tokens are added in those rows (the embedding is not shrunk to the tokenizer) and plan as one token each."""
    folder = build_tiny_vitron(tmp_path / "qwen", family="qwen2_vl", planner_tokens=False)
    rows = json.loads((folder / "config.json").read_text())["text_config"]["vocab_size"]
    model = VitronModel.load(folder)
    assert len(model.tokenizer) < rows == model.model.get_input_embeddings().num_embeddings
    assert model.signal_token_id < rows
    generation = model.generate(PROMPT, pictures[:1], force_sequence=PLAN)
    assert generation.text == PLAN and generation.signal_hidden.shape == (3, model.hidden_size)
