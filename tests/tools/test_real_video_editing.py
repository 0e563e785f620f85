"""Module F, video editing with diffusers: tiny random SD inpainting and InstructPix2Pix pipelines saved as diffusers
folders and loaded back through a models file; frames edited one by one with shared noise and latent blending."""

from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np
import pytest

from schemas import MODELS_SETTING, BackendUnavailable, BoxRegion, InvalidInput, ModelsFile, SignalEmbedding
from tests.measure import shrink
from tests.tools.tiny_diffusion import TEXT_WIDTH
from tests.tools.tiny_video_diffusion import models_file, tiny_inpainting, tiny_instruct_pix2pix
from tools import ToolContext, get_tool

FRAMES, SIZE = 4, 32
OPTIONS = {"num_inference_steps": 2}


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("weights")
    return {"inpaint": tiny_inpainting(root / "inpaint"), "instruct": tiny_instruct_pix2pix(root / "instruct")}


def context(tmp_path: Path, ctx: ToolContext, weights: dict[str, Path], **entry) -> ToolContext:
    """`ctx` reading a models file that configures video editing with both roles (and `entry`)."""
    entry.setdefault("options", OPTIONS)
    path = models_file(tmp_path / "models.yaml", "F", backend="stable_diffusion", **weights, **entry)
    return ToolContext(ctx.store, ctx.settings, ctx.progress, models_file=ModelsFile.load(path))


def scene() -> tuple[np.ndarray, np.ndarray]:
    """Frames of a square moving right over a smooth background, and the square's masks."""
    y, x = np.mgrid[0:SIZE, 0:SIZE] / SIZE
    background = np.stack([x, y, 1 - x], axis=-1) * 180 + 40
    frames, masks = [], []
    for i in range(FRAMES):
        mask = np.zeros((SIZE, SIZE), bool)
        mask[10:22, 6 + 2 * i:18 + 2 * i] = True
        frames.append(np.where(mask[..., None], [220, 60, 40], background).astype(np.uint8))
        masks.append(mask)
    return np.stack(frames), np.stack(masks)


def signal(seed: int, width: int = TEXT_WIDTH, k: int = 2) -> SignalEmbedding:
    rng = np.random.default_rng(seed)
    return SignalEmbedding(task_specific=rng.normal(size=(k, width)).astype(np.float32),
                           task_invariant=rng.normal(size=(1, 8)).astype(np.float32))


def edit(ctx: ToolContext, *, masks: bool = True, **extra) -> np.ndarray:
    frames, mask_frames = scene()
    args = {"video": ctx.store.put_video(frames, fps=10), "command": "make it blue", "seed": 0, **extra}
    if masks:
        args["masks"] = ctx.store.put_video(mask_frames, fps=10, kind="masks")
    out = get_tool("F").run(args, ctx)
    assert out.backend == "stable_diffusion"
    assert out.video.kind == "video" and out.video.media_type == "video/mp4"
    info = ctx.store.video_info(out.video)
    assert (info.frames, info.height, info.width) == (FRAMES, SIZE, SIZE)
    return np.stack(list(ctx.store.iter_frames(out.video)))


def test_inpainting_edits_inside_the_masks_and_keeps_every_pixel_outside(tmp_path, ctx, weights, progress_log):
    ctx = context(tmp_path, ctx, weights)
    edited = edit(ctx)
    frames, masks = scene()
    stored = np.stack(list(ctx.store.iter_frames(ctx.store.put_video(frames, fps=10))))  # the input as decoded
    # Outside the masks (a 4-pixel margin: the codec's transform blocks straddle the edge) the frames are as they
    # were, within H.264's tolerance (encoding these decoded frames once more changes them by 2.8 on average).
    for frame, original, mask in zip(edited, stored, masks, strict=True):
        outside = ~cv2.dilate(mask.astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool)
        diff = np.abs(frame.astype(int) - original.astype(int))
        assert diff[outside].mean() < 3 and diff[outside].max() <= 16
        assert diff[mask].mean() > 20  # and inside, edited
    per_frame = [(f, m) for f, m in progress_log if re.fullmatch(r"video_editing: frame \d/4", m)]
    assert [m for _, m in per_frame] == [f"video_editing: frame {i}/4" for i in range(1, 5)]
    steps = [m for _, m in progress_log if "step" in m]
    assert steps == [f"video_editing: frame {i}/4: step {s}/2" for i in range(1, 5) for s in (1, 2)]
    fractions = [f for f, _ in progress_log]
    assert fractions == sorted(fractions)


def test_a_frame_whose_mask_is_empty_is_left_as_it_is(tmp_path, ctx, weights):
    ctx = context(tmp_path, ctx, weights)
    frames, masks = scene()
    masks[2] = False  # the object is out of view in the third frame
    out = get_tool("F").run({"video": ctx.store.put_video(frames, fps=10), "command": "make it blue", "seed": 0,
                             "masks": ctx.store.put_video(masks, fps=10, kind="masks")}, ctx)
    edited = list(ctx.store.iter_frames(out.video))
    stored = list(ctx.store.iter_frames(ctx.store.put_video(frames, fps=10)))
    assert np.abs(edited[2].astype(int) - stored[2].astype(int)).mean() < 5  # as is, but for one more encoding
    assert np.abs(edited[1].astype(int) - stored[1].astype(int))[masks[1]].mean() > 20


def test_instruct_pix2pix_edits_whole_frames_without_masks(tmp_path, ctx, weights):
    ctx = context(tmp_path, ctx, weights)
    edited = edit(ctx, masks=False)
    assert np.abs(edited.astype(int) - scene()[0].astype(int)).mean() > 10


def test_frames_of_any_size_come_back_at_their_size(tmp_path, ctx, weights):
    ctx = context(tmp_path, ctx, weights)
    frames = np.stack([cv2.resize(frame, (37, 30)) for frame in scene()[0]])  # not multiples of 8 (nor even)
    masks = np.zeros((FRAMES, 30, 37), bool)
    masks[:, 8:20, 10:30] = True
    out = get_tool("F").run({"video": ctx.store.put_video(frames, fps=10), "command": "make it blue", "seed": 0,
                             "masks": ctx.store.put_video(masks, fps=10, kind="masks")}, ctx)
    info = ctx.store.video_info(out.video)
    assert (info.frames, info.height, info.width) == (FRAMES, 30, 37)


@pytest.mark.parametrize("masks", [True, False], ids=["inpaint", "instruct"])
def test_a_seed_makes_it_reproducible_and_the_signal_conditions_it(tmp_path, ctx, weights, masks):
    ctx = context(tmp_path, ctx, weights)
    first = edit(ctx, masks=masks)
    assert np.array_equal(first, edit(ctx, masks=masks))
    a, b = edit(ctx, masks=masks, signal=signal(1)), edit(ctx, masks=masks, signal=signal(2))
    assert not np.array_equal(a, b) and not np.array_equal(first, a)


def test_latent_blending_ties_each_frame_to_the_previous_one(tmp_path, ctx, weights):
    def drift(blend: float) -> list[float]:
        video = edit(context(tmp_path, ctx, weights, options={**OPTIONS, "blend": blend}), masks=False)
        return [np.abs(frame.astype(int) - video[0].astype(int)).mean() for frame in video[1:]]

    # How far each frame's edit drifts from the first: blending pulls it towards its predecessor's latents, and
    # fully blended (1) every frame decodes from the first frame's latents.
    free, blended, locked = np.mean(drift(0)), np.mean(drift(0.3)), drift(1)
    assert free > 1.5 and blended < 0.8 * free
    assert max(locked) < 0.5


def test_a_signal_of_the_wrong_width_is_left_out_and_the_job_says_so(tmp_path, ctx, weights):
    ctx = context(tmp_path, ctx, weights)
    assert np.array_equal(edit(ctx, signal=signal(1, width=TEXT_WIDTH * 2)), edit(ctx))
    (note,) = ctx.notes
    assert f"stable_diffusion (inpaint) reads [k, {TEXT_WIDTH}]" in note and "--module video_editing" in note


def test_a_region_without_masks_asks_for_video_segmentation_first(tmp_path, ctx, weights):
    ctx = context(tmp_path, ctx, weights)
    with pytest.raises(InvalidInput, match="video_segmentation") as info:
        edit(ctx, masks=False, region=BoxRegion(box=(4, 4, 20, 20)))
    assert info.value.field == "region"


def test_masks_of_another_length_are_refused(tmp_path, ctx, weights):
    ctx = context(tmp_path, ctx, weights)
    frames, masks = scene()
    args = {"video": ctx.store.put_video(frames, fps=10), "command": "make it blue",
            "masks": ctx.store.put_video(masks[:-1], fps=10, kind="masks")}
    with pytest.raises(InvalidInput, match="3 frames but the video has 4") as info:
        get_tool("F").run(args, ctx)
    assert info.value.field == "masks"


def test_missing_weights_name_the_setting_and_the_path(tmp_path, ctx, weights):
    missing = tmp_path / "no-such-inpainting"
    ctx = context(tmp_path, ctx, {"inpaint": missing, "instruct": weights["instruct"]})
    with pytest.raises(BackendUnavailable, match=re.escape(str(missing))) as info:
        edit(ctx)
    assert info.value.field == MODELS_SETTING and MODELS_SETTING in str(info.value)


def test_a_wrong_blend_is_named(tmp_path, ctx, weights):
    ctx = context(tmp_path, ctx, weights, options={**OPTIONS, "blend": 2})
    with pytest.raises(InvalidInput) as info:
        edit(ctx, masks=False)
    assert info.value.field == "options.blend"


def test_a_background_edit_repaints_outside_the_masks_and_keeps_the_object(tmp_path, ctx, weights):
    ctx = context(tmp_path, ctx, weights)
    edited = edit(ctx, area="background")
    frames, masks = scene()
    stored = np.stack(list(ctx.store.iter_frames(ctx.store.put_video(frames, fps=10))))
    for frame, original, mask in zip(edited, stored, masks, strict=True):
        inside = shrink(mask, 4)  # a margin: the codec's transform blocks straddle the edge
        diff = np.abs(frame.astype(int) - original.astype(int))
        assert diff[inside].mean() < 8 and diff[~mask].mean() > 20  # H.264 on 32-pixel frames moves a few levels
