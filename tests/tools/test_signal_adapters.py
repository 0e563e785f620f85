"""Signal adapters on tiny random backends (SAM, Stable Diffusion) loaded through a models file: a planner's signal
of another width is mapped into the backend's own space when an adapter was fitted for its planner and these
weights, and left out (the step runs, and its job says so) when none was."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from diffusers import StableDiffusionPipeline

from schemas import ModelsFile, SignalEmbedding
from tests.tools.tiny_diffusion import TEXT_WIDTH
from tests.tools.tiny_gligen import save_sd
from tests.tools.tiny_sam import TINY_OPTIONS, WIDTH, save_tiny_sam, write_models_file
from tools import ToolContext, get_tool
from tools.model_cache import model_cache
from tools.real.adapters import SignalAdapter, adapter_path, find_adapter, fit_adapter, weights_identity
from tools.real.sam import build_custom_sam, load_sam
from tools.real.targets import conditioning_targets, place_box, signal_width

PLANNER = "tiny-planner-0123"  # a signal's source, as the agent stamps it
PLANNER_WIDTH = 48  # the planner's head width: neither SAM's nor SD's
H, W = 48, 64
BOX = {"kind": "box", "box": [16, 12, 36, 32]}
INSTRUCTIONS = ["the dog on the left", "the cup at the top", "a red car", "the tree on the right",
                "the bird in the middle", "the cat at the bottom left", "a lighthouse at dusk", "two boats"] * 5


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("weights")
    return {"sam": save_tiny_sam(root / "sam"), "sd": save_sd(StableDiffusionPipeline, root / "sd")}


pytestmark = pytest.mark.usefixtures("fresh_model_cache")  # each test loads its models anew


@pytest.fixture
def sam_ctx(ctx, tmp_path, weights) -> ToolContext:
    ctx.models_file = ModelsFile.load(write_models_file(tmp_path / "models.yaml", weights["sam"]))
    return ctx


@pytest.fixture
def sd_ctx(ctx, tmp_path, weights) -> ToolContext:
    path = tmp_path / "sd-models.yaml"
    path.write_text(f"image_generation:\n  backend: stable_diffusion\n  weights: {weights['sd']}\n  device: cpu\n"
                    "  options: {num_inference_steps: 2}\n")
    ctx.models_file = ModelsFile.load(path)
    return ctx


def picture() -> np.ndarray:
    image = (np.random.default_rng(1).random((H, W, 3)) * 80).astype(np.uint8)
    image[12:32, 16:36] = (230, 40, 30)
    return image


def signal(seed: int, source: str | None = PLANNER, width: int = PLANNER_WIDTH) -> SignalEmbedding:
    rng = np.random.default_rng(seed)
    return SignalEmbedding(task_specific=rng.normal(size=(1, width)).astype(np.float32),
                           task_invariant=rng.normal(size=(1, 8)).astype(np.float32), source=source)


def align(ctx: ToolContext, module: str, role: str = "main") -> Path:
    """An adapter from random planner signals to the backend's own conditioning of the instructions, stored where
    the backend looks for it (what `vitron planner align` does with a real planner's signals)."""
    targets = conditioning_targets(ctx, module, role, INSTRUCTIONS)
    # a planner's signal is a function of the instruction (one per distinct instruction), not noise: pairs of noise
    # and targets fit best as the constant mean target, which maps every signal to the same token
    distinct = sorted(set(INSTRUCTIONS))
    table = np.random.default_rng(0).normal(size=(len(distinct), PLANNER_WIDTH))
    signals = np.stack([table[distinct.index(text)] for text in INSTRUCTIONS])
    adapter = fit_adapter(signals, targets.values, tokens=targets.tokens)
    return adapter.save(adapter_path(ctx.settings.home, PLANNER, module, ctx.models.spec(module), role))


# -- the adapter itself ------------------------------------------------------------------------------

def test_a_ridge_fit_recovers_a_linear_map_and_survives_a_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 24))
    truth = rng.normal(size=(24, 2 * 8))
    adapter = fit_adapter(x, x @ truth + 3.0 + rng.normal(0, 0.01, (300, 16)), tokens=2, info={"source": "x"})
    assert adapter.info["r2_held_out"] > 0.99 and adapter.info["pairs"] == 300
    assert (adapter.in_width, adapter.tokens, adapter.width) == (24, 2, 8)
    assert adapter.apply(x[:3]).shape == (6, 8)  # each signal token becomes two backend tokens
    np.testing.assert_allclose(adapter.apply(x[:1]).reshape(-1), x[0] @ truth + 3.0, atol=0.1)

    again = SignalAdapter.load(adapter.save(tmp_path / "a" / "adapter.safetensors"))
    np.testing.assert_array_equal(again.weight, adapter.weight)
    assert again.tokens == 2 and again.info == adapter.info


def test_the_weights_identity_follows_their_content_not_their_path(tmp_path, weights):
    spec = ModelsFile.load(write_models_file(tmp_path / "m.yaml", weights["sam"])).spec("B")
    copy = tmp_path / "elsewhere" / "tiny_sam.pth"
    copy.parent.mkdir()
    shutil.copy(weights["sam"], copy)
    moved = spec.model_copy(update={"weights": {"main": copy}})
    assert weights_identity(moved) == weights_identity(spec)
    with open(copy, "r+b") as f:  # one byte of the weights changed
        f.seek(copy.stat().st_size // 2)
        byte = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([byte[0] ^ 0xFF]))
    assert weights_identity(moved) != weights_identity(spec)

    folder = spec.model_copy(update={"backend": "stable_diffusion", "variant": None,
                                     "weights": {"main": weights["sd"]}})
    folder_copy = tmp_path / "sd-copy"
    shutil.copytree(weights["sd"], folder_copy)
    (folder_copy / ".cache").mkdir()  # a hub cache's bookkeeping is not the weights
    (folder_copy / ".cache" / "lock").write_text("x")
    assert weights_identity(folder.model_copy(update={"weights": {"main": folder_copy}})) == weights_identity(folder)


def test_place_words_give_the_part_of_the_frame_they_name():
    assert place_box("segmentation: the dog on the left") == (0.0, 0.0, 0.5, 1.0)
    assert place_box("the cup at the TOP right") == (0.5, 0.0, 1.0, 0.5)
    assert place_box("the bird in the middle") == (0.25, 0.25, 0.75, 0.75)
    assert place_box("a zebra") == place_box("left and right") == (0.0, 0.0, 1.0, 1.0)


def test_signal_widths_come_from_the_configuration_alone(sd_ctx, weights, tmp_path):
    assert signal_width(sd_ctx.models.spec("A"), "A") == TEXT_WIDTH
    sam = ModelsFile.load(write_models_file(tmp_path / "sam.yaml", weights["sam"])).spec("B")
    assert signal_width(sam, "B") == WIDTH == TINY_OPTIONS["prompt_embed_dim"]
    assert signal_width(sam, "B") == load_sam(sam, "image_segmentation").prompt_encoder.embed_dim  # what it reads
    assert signal_width(sam.model_copy(update={"variant": "vit_h", "options": {}}), "B") == 256
    # a custom SAM whose options leave the width out is built with the loader's default width, and sized so
    rest = {k: v for k, v in TINY_OPTIONS.items() if k != "prompt_embed_dim"}
    built = build_custom_sam(rest).prompt_encoder.embed_dim
    assert signal_width(sam.model_copy(update={"options": rest}), "B") == built


# -- SAM -------------------------------------------------------------------------------------------

def test_without_an_adapter_sam_leaves_the_signal_out_and_says_how_to_align(sam_ctx):
    image = sam_ctx.store.put_image(picture())
    out = get_tool("B").run({"image": image, "region": BOX, "signal": signal(1)}, sam_ctx)
    assert out.mask == get_tool("B").run({"image": image, "region": BOX}, sam_ctx).mask
    (note,) = sam_ctx.notes
    assert f"[1, {PLANNER_WIDTH}]" in note and f"sam reads [k, {WIDTH}]" in note
    assert "`vitron planner align --module image_segmentation`" in note


def test_with_an_adapter_sam_reads_the_signal_and_it_changes_the_mask(sam_ctx):
    path = align(sam_ctx, "B")
    assert path.parent == sam_ctx.settings.home / "adapters" / PLANNER / "image_segmentation" / "sam"
    image = sam_ctx.store.put_image(picture())
    plain = get_tool("B").run({"image": image, "region": BOX}, sam_ctx)
    masks = {get_tool("B").run({"image": image, "region": BOX, "signal": signal(seed)}, sam_ctx).mask
             for seed in (1, 2, 3)}
    assert plain.mask not in masks and sam_ctx.notes == []
    # the adapted signal alone is a prompt SAM reads: a box of its own
    alone = get_tool("B").run({"image": image, "signal": signal(1)}, sam_ctx)
    assert alone.area > 0 and sam_ctx.notes == []
    loads = model_cache().stats()["loads"]
    get_tool("B").run({"image": image, "region": BOX, "signal": signal(4)}, sam_ctx)
    assert model_cache().stats()["loads"] == loads  # the adapter loaded once, as the model did


def test_an_adapter_serves_only_its_planner_and_its_weights(sam_ctx, tmp_path):
    align(sam_ctx, "B")
    spec = sam_ctx.models.spec("B")
    assert find_adapter(sam_ctx.settings.home, PLANNER, "B", spec) is not None
    assert find_adapter(sam_ctx.settings.home, "another-planner", "B", spec) is None
    assert find_adapter(sam_ctx.settings.home, PLANNER, "video_segmentation", spec) is None  # its own head
    other = save_tiny_sam(tmp_path / "other", seed=1)
    assert find_adapter(sam_ctx.settings.home, PLANNER, "B", spec.model_copy(update={"weights": {"main": other}})) \
        is None

    image = sam_ctx.store.put_image(picture())
    get_tool("B").run({"image": image, "region": BOX, "signal": signal(1, source="another-planner")}, sam_ctx)
    assert "left out" in sam_ctx.notes[0]


def test_a_damaged_adapter_leaves_the_signal_out_instead_of_failing_the_step(sam_ctx):
    path = adapter_path(sam_ctx.settings.home, PLANNER, "B", sam_ctx.models.spec("B"))
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not an adapter")
    out = get_tool("B").run({"image": sam_ctx.store.put_image(picture()), "region": BOX, "signal": signal(1)},
                            sam_ctx)
    assert out.area > 0 and "does not load" in sam_ctx.notes[0]


# -- Stable Diffusion ------------------------------------------------------------------------------

def generate(ctx: ToolContext, **extra) -> np.ndarray:
    out = get_tool("A").run({"command": "a cat", "width": 64, "height": 64, "seed": 0, **extra}, ctx)
    return ctx.store.get_image(out.image)


def test_without_an_adapter_stable_diffusion_runs_on_the_text_and_says_so(sd_ctx):
    assert np.array_equal(generate(sd_ctx, signal=signal(1)), generate(sd_ctx))
    assert "image_generation: the planner's signal was left out" in sd_ctx.notes[0]


def test_with_an_adapter_stable_diffusion_reads_the_signal_as_a_prompt_token(sd_ctx):
    align(sd_ctx, "A")
    plain, a, b = generate(sd_ctx), generate(sd_ctx, signal=signal(1)), generate(sd_ctx, signal=signal(2))
    assert not np.array_equal(plain, a) and not np.array_equal(a, b)
    assert sd_ctx.notes == []
