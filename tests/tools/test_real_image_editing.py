"""Module C, image editing with diffusers: tiny random SD inpainting, GLIGEN inpainting and InstructPix2Pix
pipelines saved as diffusers folders and loaded back through a models file, as a user configures them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from diffusers import StableDiffusionInpaintPipeline, StableDiffusionInstructPix2PixPipeline

from schemas import MODELS_SETTING, BackendUnavailable, InvalidInput, ModelsFile, SignalEmbedding
from tests.tools.tiny_diffusion import TEXT_WIDTH
from tests.tools.tiny_gligen import save_gligen, save_sd, write_models_file
from tools import ToolContext, get_tool

H, W = 36, 44  # not multiples of 8: the backend resizes for the pipeline and back


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("weights")
    return {
        "inpaint": save_sd(StableDiffusionInpaintPipeline, root / "inpaint", unet_in_channels=9),
        "instruct": save_sd(StableDiffusionInstructPix2PixPipeline, root / "instruct", unet_in_channels=8),
        "gligen": save_gligen(root / "gligen", inpainting=True, seed=1),
    }


@pytest.fixture(scope="module")
def picture() -> np.ndarray:
    yy, xx = np.mgrid[0:H, 0:W]
    image = np.stack([xx * 255 / W, yy * 255 / H, np.full((H, W), 90.0)], axis=-1)
    image += np.random.default_rng(0).normal(0, 12, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def mask() -> np.ndarray:
    mask = np.zeros((H, W), bool)
    mask[8:26, 10:30] = True
    return mask


def context(tmp_path: Path, ctx: ToolContext, options: dict | None = None, **roles) -> ToolContext:
    """`ctx` reading a models file that configures image editing with these weight roles."""
    path = write_models_file(tmp_path / "models.yaml", "image_editing", backend="stable_diffusion", device="cpu",
                             weights=roles, options={"num_inference_steps": 2, **(options or {})})
    return ToolContext(ctx.store, ctx.settings, ctx.progress, models_file=ModelsFile.load(path))


def signal(seed: int, width: int = TEXT_WIDTH) -> SignalEmbedding:
    rng = np.random.default_rng(seed)
    return SignalEmbedding(task_specific=rng.normal(size=(2, width)).astype(np.float32),
                           task_invariant=rng.normal(size=(1, 8)).astype(np.float32))


def edit(ctx: ToolContext, picture: np.ndarray, command: str = "a red ball", *, mask: np.ndarray | None = None,
         **extra) -> tuple[np.ndarray, str]:
    args = {"image": ctx.store.put_image(picture), "command": command, "seed": 0, **extra}
    if mask is not None:
        args["mask"] = ctx.store.put_mask(mask)
    out = get_tool("C").run(args, ctx)
    assert out.backend == "stable_diffusion"
    assert out.image.kind == "image" and out.image.media_type == "image/png" and tuple(out.image.shape) == (H, W, 3)
    return ctx.store.get_image(out.image), out.operation


def changed(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs(a.astype(int) - b.astype(int)).max(axis=-1) > 0


# -- SD inpainting ---------------------------------------------------------------------------------

def test_inpainting_repaints_the_mask_and_keeps_every_pixel_outside_it(tmp_path, ctx, weights, picture, mask,
                                                                       progress_log):
    ctx = context(tmp_path, ctx, inpaint=weights["inpaint"])
    edited, operation = edit(ctx, picture, mask=mask)
    assert operation == "inpaint"
    assert np.array_equal(edited[~mask], picture[~mask])
    assert changed(edited, picture)[mask].mean() > 0.5
    assert [m for _, m in progress_log if "step" in m] == ["image_editing: step 1/2", "image_editing: step 2/2"]


def test_inpainting_is_reproducible_by_seed(tmp_path, ctx, weights, picture, mask):
    ctx = context(tmp_path, ctx, inpaint=weights["inpaint"])
    first, _ = edit(ctx, picture, mask=mask)
    assert np.array_equal(first, edit(ctx, picture, mask=mask)[0])
    assert not np.array_equal(first, edit(ctx, picture, mask=mask, seed=1)[0])


def test_inpainting_is_conditioned_by_the_signal(tmp_path, ctx, weights, picture, mask):
    ctx = context(tmp_path, ctx, inpaint=weights["inpaint"])
    plain, a, b = (edit(ctx, picture, mask=mask, signal=s)[0] for s in (None, signal(1), signal(2)))
    assert not np.array_equal(a, b) and not np.array_equal(plain, a)


def test_a_box_region_edits_exactly_the_box(tmp_path, ctx, weights, picture):
    ctx = context(tmp_path, ctx, inpaint=weights["inpaint"])
    edited, operation = edit(ctx, picture, region={"kind": "box", "box": (4, 6, 20, 30)})
    box = np.zeros((H, W), bool)
    box[6:30, 4:20] = True
    assert operation == "inpaint"
    assert np.array_equal(edited[~box], picture[~box]) and changed(edited, picture)[box].mean() > 0.5


def test_points_edit_a_small_disc_around_the_object_points(tmp_path, ctx, weights, picture):
    ctx = context(tmp_path, ctx, inpaint=weights["inpaint"])
    edited, _ = edit(ctx, picture, region={"kind": "points", "points": [(30, 18), (5, 5)], "labels": [1, 0]})
    diff = changed(edited, picture)
    assert diff[18, 30] and not diff[5, 5]
    ys, xs = np.nonzero(diff)
    assert np.hypot(xs - 30, ys - 18).max() < 6


def test_an_empty_mask_is_refused(tmp_path, ctx, weights, picture):
    ctx = context(tmp_path, ctx, inpaint=weights["inpaint"])
    with pytest.raises(InvalidInput, match="marks no pixel") as info:
        edit(ctx, picture, mask=np.zeros((H, W), bool))
    assert info.value.field == "mask"


def test_a_signal_of_the_wrong_width_is_left_out_and_the_job_says_so(tmp_path, ctx, weights, picture, mask):
    ctx = context(tmp_path, ctx, inpaint=weights["inpaint"])
    left_out, _ = edit(ctx, picture, mask=mask, signal=signal(1, TEXT_WIDTH * 2))
    assert np.array_equal(left_out, edit(ctx, picture, mask=mask)[0])
    (note,) = ctx.notes
    assert f"stable_diffusion (inpaint) reads [k, {TEXT_WIDTH}]" in note and "--module image_editing" in note


def test_a_missing_weights_folder_names_the_setting_and_the_path(tmp_path, ctx, picture, mask):
    missing = tmp_path / "nowhere" / "sd-inpainting"
    ctx = context(tmp_path, ctx, inpaint=missing)
    with pytest.raises(BackendUnavailable) as info:
        edit(ctx, picture, mask=mask)
    assert info.value.field == MODELS_SETTING and str(missing) in str(info.value)


def test_a_masked_edit_without_inpainting_weights_says_which_role_to_add(tmp_path, ctx, weights, picture, mask):
    ctx = context(tmp_path, ctx, instruct=weights["instruct"])
    with pytest.raises(BackendUnavailable, match="inpaint:") as info:
        edit(ctx, picture, mask=mask)
    assert info.value.field == MODELS_SETTING


# -- GLIGEN inpainting -----------------------------------------------------------------------------

def gligen_context(tmp_path: Path, ctx: ToolContext, weights: dict[str, Path]) -> ToolContext:
    # beta 1: ground every step (the default 0.3 of 2 steps would ground none)
    return context(tmp_path, ctx, {"masked_with": "gligen", "gligen_scheduled_sampling_beta": 1.0},
                   inpaint=weights["inpaint"], gligen=weights["gligen"])


BOX = {"kind": "box", "box": (8, 4, 36, 28)}


def test_a_box_goes_to_gligen_when_asked(tmp_path, ctx, weights, picture):
    ctx = gligen_context(tmp_path, ctx, weights)
    box = np.zeros((H, W), bool)
    box[4:28, 8:36] = True
    ball, operation = edit(ctx, picture, "a red ball", region=BOX)
    assert operation == "gligen-inpaint"
    assert np.array_equal(ball[~box], picture[~box]) and changed(ball, picture)[box].mean() > 0.5
    assert np.array_equal(ball, edit(ctx, picture, "a red ball", region=BOX)[0])


def test_gligen_places_the_command_as_its_phrase(tmp_path, ctx, weights, picture):
    ctx = gligen_context(tmp_path, ctx, weights)
    assert not np.array_equal(edit(ctx, picture, "a red ball", region=BOX)[0],
                              edit(ctx, picture, "a green tree", region=BOX)[0])


def test_gligen_inpainting_reads_the_signal(tmp_path, ctx, weights, picture):
    ctx = gligen_context(tmp_path, ctx, weights)
    assert not np.array_equal(edit(ctx, picture, "a red ball", region=BOX)[0],
                              edit(ctx, picture, "a red ball", region=BOX, signal=signal(1))[0])


def test_gligen_alone_inpaints_a_mask_in_its_bounding_box(tmp_path, ctx, weights, picture, mask):
    ctx = context(tmp_path, ctx, gligen=weights["gligen"])
    edited, operation = edit(ctx, picture, mask=mask)
    assert operation == "gligen-inpaint"
    assert np.array_equal(edited[~mask], picture[~mask])


# -- InstructPix2Pix -------------------------------------------------------------------------------

def instruct_context(tmp_path: Path, ctx: ToolContext, weights: dict[str, Path]) -> ToolContext:
    return context(tmp_path, ctx, inpaint=weights["inpaint"], instruct=weights["instruct"])


def test_no_mask_edits_the_whole_image_by_instruction(tmp_path, ctx, weights, picture, progress_log):
    ctx = instruct_context(tmp_path, ctx, weights)
    edited, operation = edit(ctx, picture, "make it winter")
    assert operation == "instruct-pix2pix"
    assert changed(edited, picture).mean() > 0.5
    assert [m for _, m in progress_log if "step" in m] == ["image_editing: step 1/2", "image_editing: step 2/2"]


def test_instruction_edits_are_reproducible_by_seed(tmp_path, ctx, weights, picture):
    ctx = instruct_context(tmp_path, ctx, weights)
    edited = edit(ctx, picture, "make it winter")[0]
    assert np.array_equal(edited, edit(ctx, picture, "make it winter")[0])
    assert not np.array_equal(edited, edit(ctx, picture, "make it winter", seed=1)[0])


def test_instruction_edits_are_conditioned_by_the_signal(tmp_path, ctx, weights, picture):
    ctx = instruct_context(tmp_path, ctx, weights)
    plain, a, b = (edit(ctx, picture, "make it winter", signal=s)[0] for s in (None, signal(1), signal(2)))
    assert not np.array_equal(a, b) and not np.array_equal(plain, a)


def test_a_global_edit_without_instruct_weights_says_which_role_to_add(tmp_path, ctx, weights, picture):
    ctx = context(tmp_path, ctx, inpaint=weights["inpaint"])
    with pytest.raises(BackendUnavailable, match="instruct") as info:
        edit(ctx, picture, "make it winter")
    assert info.value.field == MODELS_SETTING


def test_a_background_edit_repaints_outside_the_mask_and_keeps_the_object(tmp_path, ctx, weights, picture, mask):
    ctx = context(tmp_path, ctx, inpaint=weights["inpaint"])
    edited, operation = edit(ctx, picture, "a snowy field", mask=mask, area="background")
    assert operation == "inpaint"
    assert np.array_equal(edited[mask], picture[mask])  # the object, exactly as it was
    assert changed(edited, picture)[~mask].mean() > 0.5
