"""Module A, image generation with diffusers: tiny random SD, SDXL and GLIGEN pipelines saved as diffusers folders
and loaded back through a models file, as a user configures them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from diffusers import StableDiffusionPipeline

from schemas import MODELS_SETTING, BackendUnavailable, InvalidInput, ModelsFile, SignalEmbedding, VitronSettings
from tests.tools.tiny_diffusion import TEXT_WIDTH
from tests.tools.tiny_gligen import SDXL_WIDTH, save_gligen, save_sd, save_sdxl, write_models_file
from tools import ToolContext, get_tool

SIZE = {"width": 64, "height": 80}  # not square: the output must be height x width, not width x height


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("weights")
    return {"sd": save_sd(StableDiffusionPipeline, root / "sd"), "sdxl": save_sdxl(root / "sdxl"),
            "gligen": save_gligen(root / "gligen", seed=1)}


def context(tmp_path: Path, ctx: ToolContext, **entry) -> ToolContext:
    """`ctx` reading a models file that configures image generation with `entry`."""
    entry.setdefault("backend", "stable_diffusion")
    entry.setdefault("device", "cpu")
    entry.setdefault("options", {"num_inference_steps": 2})
    path = write_models_file(tmp_path / "models.yaml", "image_generation", **entry)
    return ToolContext(ctx.store, ctx.settings, ctx.progress, models_file=ModelsFile.load(path))


def signal(seed: int, width: int = TEXT_WIDTH, k: int = 2) -> SignalEmbedding:
    rng = np.random.default_rng(seed)
    return SignalEmbedding(task_specific=rng.normal(size=(k, width)).astype(np.float32),
                           task_invariant=rng.normal(size=(1, 8)).astype(np.float32))


def generate(ctx: ToolContext, command: str = "a cat", **extra) -> np.ndarray:
    out = get_tool("A").run({"command": command, **SIZE, "seed": 0, **extra}, ctx)
    assert out.backend == "stable_diffusion"
    return ctx.store.get_image(out.image)


def test_generates_an_image_of_the_asked_size_reporting_each_step(tmp_path, ctx, weights, progress_log):
    ctx = context(tmp_path, ctx, weights=weights["sd"])
    out = get_tool("A").run({"command": "a cat", **SIZE, "seed": 0}, ctx)
    assert out.image.kind == "image" and out.image.media_type == "image/png"
    assert tuple(out.image.shape) == (80, 64, 3)
    image = ctx.store.get_image(out.image)
    assert image.shape == (80, 64, 3) and image.dtype == np.uint8 and image.std() > 0
    assert [m for _, m in progress_log if "step" in m] == ["image_generation: step 1/2", "image_generation: step 2/2"]


def test_a_seed_makes_it_reproducible_and_another_seed_changes_it(tmp_path, ctx, weights):
    ctx = context(tmp_path, ctx, weights=weights["sd"])
    first, again = generate(ctx), generate(ctx)
    assert np.array_equal(first, again)
    assert not np.array_equal(first, generate(ctx, seed=1))


def test_the_signal_embedding_conditions_the_image(tmp_path, ctx, weights):
    ctx = context(tmp_path, ctx, weights=weights["sd"])
    plain, a, b = generate(ctx), generate(ctx, signal=signal(1)), generate(ctx, signal=signal(2))
    assert not np.array_equal(a, b)
    assert not np.array_equal(plain, a)


def test_text_conditioning_ignores_the_signal(tmp_path, ctx, weights):
    text_only = context(tmp_path, ctx, weights=weights["sd"],
                        options={"num_inference_steps": 2, "conditioning": "text"})
    assert np.array_equal(generate(text_only, signal=signal(1)), generate(text_only))


def test_the_command_conditions_the_image(tmp_path, ctx, weights):
    ctx = context(tmp_path, ctx, weights=weights["sd"])
    assert not np.array_equal(generate(ctx, "a cat"), generate(ctx, "a dog"))


def test_signal_conditioning_ignores_the_command(tmp_path, ctx, weights):
    signal_only = context(tmp_path, ctx, weights=weights["sd"],
                          options={"num_inference_steps": 2, "conditioning": "signal"})
    assert np.array_equal(generate(signal_only, "a cat", signal=signal(1)),
                          generate(signal_only, "a dog", signal=signal(1)))


def test_a_signal_of_the_wrong_width_is_left_out_and_the_job_says_so(tmp_path, ctx, weights):
    ctx = context(tmp_path, ctx, weights=weights["sd"])
    assert np.array_equal(generate(ctx, signal=signal(1, width=TEXT_WIDTH + 1)), generate(ctx))  # the text alone
    (note,) = ctx.notes
    assert f"[k, {TEXT_WIDTH}]" in note and "vitron planner align --module image_generation" in note
    # in `signal` mode too, the step runs on its text rather than failing
    signal_only = context(tmp_path, ctx, weights=weights["sd"],
                          options={"num_inference_steps": 2, "conditioning": "signal"})
    assert np.array_equal(generate(signal_only, signal=signal(1, width=TEXT_WIDTH + 1)), generate(ctx))


def test_a_missing_weights_folder_names_the_setting_and_the_path(tmp_path, ctx):
    missing = tmp_path / "no-such-weights"
    ctx = context(tmp_path, ctx, weights=missing)
    with pytest.raises(BackendUnavailable) as info:
        generate(ctx)
    assert info.value.field == MODELS_SETTING and str(missing) in str(info.value)


def test_settings_pointing_at_a_models_file_select_the_backend(tmp_path, weights):
    path = write_models_file(tmp_path / "my-models.yaml", "A", backend="stable_diffusion", weights=weights["sd"],
                             device="cpu", options={"num_inference_steps": 1})
    settings = VitronSettings(home=tmp_path / "home", models_file=path)
    ctx = ToolContext.from_settings(settings)
    assert generate(ctx).shape == (80, 64, 3)


def test_sdxl_folders_load_through_the_auto_pipeline(tmp_path, ctx, weights):
    ctx = context(tmp_path, ctx, weights=weights["sdxl"])
    plain = generate(ctx)
    assert plain.shape == (80, 64, 3)
    assert np.array_equal(plain, generate(ctx))
    assert np.array_equal(generate(ctx, signal=signal(1, TEXT_WIDTH)), plain)  # SDXL reads both encoders' width
    assert f"[k, {SDXL_WIDTH}]" in ctx.notes[0]


def test_sdxl_reads_signals_of_its_cross_attention_width(tmp_path, ctx, weights):
    ctx = context(tmp_path, ctx, weights=weights["sdxl"])
    plain, a, b = (generate(ctx, signal=s) for s in (None, signal(1, SDXL_WIDTH), signal(2, SDXL_WIDTH)))
    assert not np.array_equal(a, b) and not np.array_equal(plain, a)


def boxes(phrase: str) -> list[dict]:
    return [{"phrase": phrase, "box": {"box": (8, 8, 40, 56)}}]


def gligen_context(tmp_path: Path, ctx: ToolContext, weights: dict[str, Path]) -> ToolContext:
    # beta 1: ground every step (the default 0.3 of 2 steps would ground none)
    return context(tmp_path, ctx, weights=weights["sd"], gligen=weights["gligen"],
                   options={"num_inference_steps": 2, "gligen_scheduled_sampling_beta": 1.0})


def test_boxes_with_phrases_go_through_gligen_reproducibly(tmp_path, ctx, weights, progress_log):
    ctx = gligen_context(tmp_path, ctx, weights)
    cat = generate(ctx, "a photo", boxes=boxes("a cat"))
    assert cat.shape == (80, 64, 3)
    assert np.array_equal(cat, generate(ctx, "a photo", boxes=boxes("a cat")))
    assert [m for _, m in progress_log if "step" in m][:2] == ["image_generation: step 1/2",
                                                               "image_generation: step 2/2"]


def test_gligen_reads_the_phrases(tmp_path, ctx, weights):
    ctx = gligen_context(tmp_path, ctx, weights)
    assert not np.array_equal(generate(ctx, "a photo", boxes=boxes("a cat")),
                              generate(ctx, "a photo", boxes=boxes("a dog")))


def test_gligen_reads_the_signal(tmp_path, ctx, weights):
    ctx = gligen_context(tmp_path, ctx, weights)
    assert not np.array_equal(generate(ctx, "a photo", boxes=boxes("a cat")),
                              generate(ctx, "a photo", boxes=boxes("a cat"), signal=signal(1)))


def test_boxes_without_gligen_weights_say_which_role_to_add(tmp_path, ctx, weights):
    ctx = context(tmp_path, ctx, weights=weights["sd"])
    with pytest.raises(BackendUnavailable, match="gligen:") as info:
        generate(ctx, boxes=boxes("a cat"))
    assert info.value.field == MODELS_SETTING


def test_a_box_outside_the_image_is_refused(tmp_path, ctx, weights):
    ctx = context(tmp_path, ctx, weights=weights["sd"], gligen=weights["gligen"])
    with pytest.raises(InvalidInput) as info:
        generate(ctx, boxes=[{"phrase": "a cat", "box": {"box": (8, 8, 70, 40)}}])
    assert info.value.field == "boxes.0.box"
