"""Signals the backends accept: vitron-mini's 384-wide signals against tiny random SAM and Stable Diffusion backends
configured in a models file. Without an adapter every step still runs (its event says the signal was left out);
`vitron planner align` fits one from the planner's generated data, and the backend then reads the signal."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from diffusers import StableDiffusionInpaintPipeline, StableDiffusionPipeline

from agent.alignment import align_signals
from agent.api import VitronAgent
from agent.planners.base import PlanRequest
from agent.planners.mini import MiniPlanner
from agent.planners.signals import signal_source, with_signal_source
from agent.planners.vitron_model import DEFAULT_TASK_SPECIFIC_SIZES, SignalHeads, backend_widths
from memory import History
from schemas import BoxRegion, ModelsFile, VitronSettings
from tests.cli import one_json, vitron
from tests.tools.tiny_diffusion import TEXT_WIDTH
from tests.tools.tiny_gligen import save_sd
from tests.tools.tiny_sam import TINY_OPTIONS, WIDTH, save_tiny_sam
from tools import ToolContext, get_tool
from tools.model_cache import model_cache

H, W = 48, 64
BOX = (16, 12, 36, 32)


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("weights")
    return {"sam": save_tiny_sam(root / "sam"),
            "inpaint": save_sd(StableDiffusionInpaintPipeline, root / "inpaint", unet_in_channels=9),
            "sd": save_sd(StableDiffusionPipeline, root / "sd")}


pytestmark = pytest.mark.usefixtures("fresh_model_cache")  # each test loads its models anew


def sam_entry(weights: dict[str, Path]) -> dict:
    return {"backend": "sam", "weights": str(weights["sam"]), "variant": "custom", "device": "cpu",
            "options": TINY_OPTIONS}


def write_models(home: Path, modules: dict[str, dict]) -> Path:
    home.mkdir(parents=True, exist_ok=True)
    path = home / "models.yaml"
    path.write_text(yaml.safe_dump(modules))
    return path


def picture() -> np.ndarray:
    image = (np.random.default_rng(1).random((H, W, 3)) * 80).astype(np.uint8)
    image[12:32, 16:36] = (230, 40, 30)
    return image


def test_the_vitron_planners_head_widths_come_from_the_configured_backends(tmp_path, weights):
    models = ModelsFile.load(write_models(tmp_path, {
        "B": sam_entry(weights), "E": sam_entry(weights),
        "A": {"backend": "stable_diffusion", "weights": str(weights["sd"])},
    }))
    widths = backend_widths(models)
    assert widths == {**DEFAULT_TASK_SPECIFIC_SIZES, "A": TEXT_WIDTH, "B": WIDTH, "E": WIDTH}
    assert (DEFAULT_TASK_SPECIFIC_SIZES["D"], DEFAULT_TASK_SPECIFIC_SIZES["G"]) == (1024, 1024)  # ZeroScope, I2VGen-XL
    assert SignalHeads(16, models=models).task_specific_sizes == widths
    assert SignalHeads(16, models=ModelsFile()).task_specific_sizes == DEFAULT_TASK_SPECIFIC_SIZES
    assert SignalHeads(16, {"B": 8}, models=models).task_specific_sizes["B"] == 8  # given sizes win


def test_a_vitron_planner_built_for_the_configured_sam_makes_signals_it_reads_as_they_are(tmp_path, weights):
    from agent.planners.tiny_vitron import build_tiny_vitron
    from agent.planners.vitron import VitronPlanner, load_planner_model

    models = ModelsFile.load(write_models(tmp_path / "home", {"B": sam_entry(weights)}))
    planner = VitronPlanner(load_planner_model(build_tiny_vitron(tmp_path / "planner", vision=False, models=models)),
                            force_sequence="Sure. <module>B</module><instruction>segment it</instruction>[SIG]")
    ctx = ToolContext.from_settings(VitronSettings(home=tmp_path / "home"))
    request = PlanRequest(text="segment it", history=History("s", (), 0, 0), artifacts=(), inputs={}, region=None,
                          store=ctx.store)
    (step,) = with_signal_source(planner.plan(request), signal_source(planner)).steps
    signal = step.invocation.signal
    assert tuple(signal.task_specific.shape) == (1, WIDTH) and signal.source.startswith("vitron-")
    out = get_tool("B").run({"image": ctx.store.put_image(picture()), "signal": signal}, ctx)
    assert out.area > 0 and ctx.notes == []  # no adapter needed: the head is as wide as SAM's prompt


def test_align_on_a_tiny_sam_writes_the_adapter_and_a_second_load_uses_it(env, home, weights):
    write_models(home, {"image_segmentation": sam_entry(weights)})
    report = one_json(vitron(env, "planner", "align", "--module", "B", "--pairs", "40"))
    (adapter,) = report["adapters"]
    planner = MiniPlanner()
    assert report["planner"] == signal_source(planner) and report["planner"].startswith("mini-")
    assert (report["module"], report["backend"], report["pairs"]) == ("image_segmentation", "sam", 40)
    assert (adapter["in_width"], adapter["tokens"], adapter["width"]) == (384, 2, WIDTH)  # a box's two corners
    path = Path(adapter["path"])
    assert path.is_file() and path.parent == home / "adapters" / report["planner"] / "image_segmentation" / "sam"

    # Another process (this one) loads SAM with the adapter and reads the planner's signal: alone, it prompts SAM.
    ctx = ToolContext.from_settings(VitronSettings(home=home))
    request = PlanRequest(text="segment the dog on the left", history=History("s", (), 0, 0), artifacts=(),
                          inputs={}, region=None, store=ctx.store)
    (step,) = with_signal_source(planner.plan(request), signal_source(planner)).steps
    signal = step.invocation.signal
    assert signal.source == report["planner"] and signal.task_specific.shape == (1, 384)
    out = get_tool("B").run({"image": ctx.store.put_image(picture()), "signal": signal}, ctx)
    assert out.backend == "sam" and out.area > 0 and ctx.notes == []
    assert any(key[0] == "signal_adapter" for key in model_cache().stats()["entries"])


def test_mini_planner_with_tiny_sam_and_tiny_sd_end_to_end_through_the_agent(tmp_path, weights):
    home = tmp_path / "home"
    write_models(home, {
        "image_segmentation": sam_entry(weights),
        "image_editing": {"backend": "stable_diffusion", "weights": {"inpaint": str(weights["inpaint"])},
                          "device": "cpu", "options": {"num_inference_steps": 2}},
    })
    settings = VitronSettings(home=home, planner="mini")

    def turn() -> tuple[list[dict], object, object]:
        with VitronAgent.from_settings(settings) as agent:
            session = agent.session()
            events = list(session.stream("make the red car blue", image=picture(), region=BoxRegion(box=BOX)))
            reply = session.reply()
            rows = agent.memory.steps(session.id)
            mask = agent.memory.store.get_mask(reply.artifacts[0].ref)
        return [e for e in events if e["event"] == "step_finished"], reply, (rows, mask)

    # No adapters yet: both steps run on their text and region, and say that their signal was left out.
    finished, reply, (rows, left_out_mask) = turn()
    assert [(s.module, s.status) for s in reply.steps] == [("image_segmentation", "succeeded"),
                                                          ("image_editing", "succeeded")]
    for event, module in zip(finished, ("image_segmentation", "image_editing"), strict=True):
        (note,) = event["notes"]
        assert f"{module}: the planner's signal was left out" in note
        assert f"vitron planner align --module {module}" in note
    assert all("left out" in row.message for row in rows)  # session memory keeps the note as the step's message

    # Aligned with the planner's own generated data, each backend reads the signal.
    for module in ("image_segmentation", "image_editing"):
        report = align_signals(module, settings=settings, pairs=40)
        assert report["pairs"] == 40 and Path(report["adapters"][0]["path"]).is_file()
    finished, reply, (_, aligned_mask) = turn()
    assert [s.status for s in reply.steps] == ["succeeded", "succeeded"]
    assert all("notes" not in event for event in finished)
    assert not np.array_equal(aligned_mask, left_out_mask)  # the signal reached SAM's decoder beside the region
