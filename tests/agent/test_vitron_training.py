"""Fine-tuning the VITRON planner on a tiny random LLaVA-style model built in code, on the CPU, through all three
stages, with tiny SAM and Stable Diffusion configured as the backends its signals must fit."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import pytest
import torch
from skimage import data as photos

from agent.api import VitronAgent
from agent.planners.tiny_vitron import build_tiny_vitron
from agent.planners.vitron import VitronPlanner
from agent.planners.vitron_model import VitronModel
from agent.planners.vitron_train import VitronTrainConfig, merge, train_vitron, training_turns
from schemas import InvalidInput, VitronSettings
from tests.tools.tiny_backends import tiny_models_file
from tests.tools.tiny_diffusion import TEXT_WIDTH
from tests.tools.tiny_sam import WIDTH

FAST = dict(steps=30, head_steps=40, requests=48, batch=2, lora_rank=4, lr=1e-2, save_every=10)


@pytest.fixture(scope="module")
def backends(tmp_path_factory) -> Path:
    """A models file: tiny SAM for B, tiny Stable Diffusion for A."""
    return tiny_models_file(tmp_path_factory.mktemp("backends"))


@pytest.fixture(scope="module")
def settings(tmp_path_factory, backends) -> VitronSettings:
    return VitronSettings(home=tmp_path_factory.mktemp("home"), models_file=backends)


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    return build_tiny_vitron(tmp_path_factory.mktemp("base") / "llava", seed=0, initializer_range=0.3)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, base, settings) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("trained") / "planner"
    return out, train_vitron(base, out, VitronTrainConfig(**FAST), settings=settings)


def test_the_data_is_the_generators_in_the_planners_own_prompt(base):
    turns = training_turns(40, 0, {"B": 2}, multimodal=True)
    planned = [t for t in turns if t.steps]
    assert planned and all(t.prompt.endswith("ASSISTANT:") and "USER:" in t.prompt for t in turns)
    assert all(t.reply.count("[SIG]") == sum(k for *_, k in t.steps) for t in planned)
    segmenting = [t for t in planned if any(code == "B" for code, *_ in t.steps)]
    assert segmenting and all("<module>B</module>" in t.reply for t in segmenting)
    assert any(t.images and t.prompt.count("<image>") == len(t.images) for t in turns)


def test_the_prompts_are_the_ones_the_planner_writes_at_run_time():
    """Follow-ups in the planner's own session context: the artifact table as session memory describes it, the
    pictures the planner would show (an upload; a video's frames; else the session's newest image)."""
    turns = training_turns(120, 0, {"B": 2}, multimodal=True)
    follow_ups = [t for t in turns if "This turn's inputs" not in t.prompt and "image_segmentation of @" in t.prompt]
    assert follow_ups and all(" mask [48, 64]: image_segmentation of @img" in t.prompt for t in follow_ups)
    shown = [t for t in follow_ups if t.images]
    assert shown and all("Pictures: @img" in t.prompt and t.prompt.count("<image>") == 1 for t in shown)
    videos = [t for t in turns if "frames of @vid" in t.prompt]
    assert videos and all(len(t.images) == 4 and t.prompt.count("<image>") == 4 for t in videos)
    assert not any(": upload" in line and (" mask " in line or " masks " in line)
                   for t in turns for line in t.prompt.splitlines())
    assert all(t.reply != "Sure. " for t in turns)  # "now the one on the left too" (the 3rd request): no plan known
    assert all(not t.images for t in training_turns(20, 0, {"B": 2}, multimodal=False))


def test_three_stages_lower_their_losses_and_fit_the_configured_backends(trained):
    out, summary = trained
    one, two, three = (summary["stages"][s] for s in ("1", "2", "3"))
    first, last = sum(one["losses"][:3]) / 3, sum(one["losses"][-3:]) / 3
    assert last < 0.8 * first and one["steps"] == FAST["steps"]
    assert one["tokens_per_second"] > 0
    assert sorted(two["aligned"]) == ["image_generation", "image_segmentation"]
    assert "video_editing" in two["not_configured"] and two["final_loss"] < 0.8 * two["first_loss"]
    assert len(three["adversary_losses"]) == FAST["head_steps"]
    # the heads' widths are the configured backends': SAM's prompt width, the tiny SD's cross-attention width
    heads = json.loads((out / "signal_heads.json").read_text())
    assert heads["task_specific_sizes"]["B"] == WIDTH and heads["task_specific_sizes"]["A"] == TEXT_WIDTH
    assert {"adapter_config.json", "adapter_model.safetensors", "vitron_planner.json"} <= {
        p.name for p in out.iterdir()}


def test_the_saved_planner_reloads_plans_in_the_grammar_and_runs_a_turn(trained, base, settings, tmp_path):
    out, _ = trained
    model = VitronModel.load(out)
    assert not hasattr(model.model, "peft_config")  # the adapter is folded into the weights
    planner = VitronPlanner(model, force_sequence="Sure. <module>B</module><instruction>segmentation: the cup"
                                                  "</instruction>[SIG][SIG]")
    with VitronAgent.from_settings(settings.model_copy(update={"home": tmp_path}), planner=planner) as agent:
        reply = agent.session().send("segment the cup", image=photos.coffee())
    (step,) = reply.steps
    assert step.status == "succeeded" and step.invocation["command"] == "the cup"
    signal = step.invocation.get("signal")
    assert signal is not None  # the trained B head's signal, in SAM's width: read by SAM with no adapter
    merged = merge(out, tmp_path / "merged")
    assert (merged / "config.json").is_file() and VitronModel.load(merged).heads.task_specific_sizes["B"] == WIDTH


def _killed_run(base: str, out: str, settings: dict) -> None:
    """A training run that dies (as a kill would) after its first resume checkpoint."""
    import agent.planners.vitron_train as training

    real = training._save_resume

    def save_then_die(*args, **kwargs):
        real(*args, **kwargs)
        raise SystemExit(9)

    training._save_resume = save_then_die
    train_vitron(base, out, VitronTrainConfig(**FAST), settings=VitronSettings(**settings))


def test_a_killed_run_goes_on_from_its_last_checkpoint(base, settings, tmp_path):
    out = tmp_path / "planner"
    process = multiprocessing.get_context("spawn").Process(
        target=_killed_run, args=(str(base), str(out), {"home": str(settings.home),
                                                         "models_file": str(settings.models_path)}))
    process.start()
    process.join(300)
    assert process.exitcode == 9
    state = json.loads((out / "resume" / "state.json").read_text())
    assert state["stage1_step"] == FAST["save_every"]
    summary = train_vitron(base, out, VitronTrainConfig(**FAST), settings=settings)
    one = summary["stages"]["1"]
    assert one["steps"] == FAST["steps"] and len(one["losses"]) == FAST["steps"]  # the first 10 kept, 20 more run


def test_bad_options_are_clear_errors():
    with pytest.raises(InvalidInput, match="stages"):
        VitronTrainConfig(stages=(4,))
    with pytest.raises(InvalidInput, match="steps"):
        VitronTrainConfig(steps=0)
    assert torch.get_num_threads() >= 1


def test_the_command_line_trains_then_scores_the_planner_on_a_set(base, backends, tmp_path):
    from tests.cli import cli_env, one_json, vitron

    env = {**cli_env(tmp_path / "home"), "VITRON_MODELS_FILE": str(backends)}
    out = tmp_path / "planner"
    trained = one_json(vitron(env, "planner", "train", "--base", str(base), "--out", str(out), "--steps", "2",
                              "--requests", "16", "--batch", "1", "--lora-rank", "2", "--stages", "1,2"))
    assert set(trained) == {"1", "2"} and trained["1"]["steps"] == 2 and "image_segmentation" in trained["2"]["aligned"]
    conversations = tmp_path / "set.jsonl"
    conversations.write_text(json.dumps({"id": "c1", "turns": [{"text": "segment the cup", "upload": "image",
                                                                "expect": {"steps": [{"module": "B"}]}}]}) + "\n")
    scored = one_json(vitron(env, "planner", "eval", "--planner", "vitron", "--model", str(out),
                             "--set", str(conversations)))
    assert scored["planner"] == "vitron" and scored["turns"] == 1 and 0 <= scored["turn_accuracy"] <= 1
    bad = vitron(env, "planner", "train", "--base", str(base), "--out", str(out), "--stages", "1,x")
    assert bad.returncode == 2 and "--stages" in bad.stderr and "Traceback" not in bad.stderr
