"""Modules B and E with segment-anything: a tiny random SAM saved as a `.pth` and loaded through a models file.

The tiny model's masks mean nothing; these tests check the wiring a user relies on: outputs, determinism, the
signal really reaching the mask decoder, clear errors for a bad signal or bad weights, one load per process.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from schemas import ArtifactRef, BackendUnavailable, InvalidInput, ModelsFile, SignalEmbedding, VitronSettings
from tools import ToolContext, get_tool
from tools.model_cache import model_cache
from tools.real.sam import Prompt, decode, load_sam, precision, predictor_for, region_prompt, sam_signal, spread_points
from tools.real.video_segmentation import start_prompt, track, track_masks

from .tiny_sam import WIDTH, save_tiny_sam, write_models_file

H, W, FRAMES = 48, 64, 6


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return save_tiny_sam(tmp_path_factory.mktemp("sam"))


pytestmark = pytest.mark.usefixtures("fresh_model_cache")  # each test loads its models anew


@pytest.fixture
def sam_ctx(ctx, tmp_path, weights) -> ToolContext:
    """The conftest context with a models file configuring SAM for B and E, as a user writes it."""
    path = write_models_file(tmp_path / "models.yaml", weights, modules=("B", "video_segmentation"))
    ctx.models_file = ModelsFile.load(path)
    return ctx


def scene(shift: int = 0) -> np.ndarray:
    rng = np.random.default_rng(1)
    image = (rng.random((H, W, 3)) * 80).astype(np.uint8)
    image[12 : 32, 16 + shift : 36 + shift] = (230, 40, 30)
    return image


def signal(seed: int, width: int = WIDTH, k: int = 2) -> SignalEmbedding:
    rng = np.random.default_rng(seed)
    return SignalEmbedding(task_specific=rng.normal(0, 3, (k, width)).astype(np.float32),
                           task_invariant=rng.normal(size=(1, 8)).astype(np.float32))


BOX = {"kind": "box", "box": [16, 12, 36, 32]}
POINTS = {"kind": "points", "points": [[25, 20], [4, 4]], "labels": [1, 0]}


# -- B: image segmentation -------------------------------------------------------------------------

@pytest.mark.parametrize("region", ["box", "points", "scribble", "signal only"])
def test_sam_segments_from_each_prompt_through_the_models_file(sam_ctx, progress_log, region):
    store = sam_ctx.store
    scribble = np.zeros((H, W), bool)
    scribble[20:23, 18:34] = True
    regions = {"box": BOX, "points": POINTS, "scribble": {"kind": "scribble", "mask": store.put_mask(scribble)},
               "signal only": None}
    out = get_tool("B").run({"image": store.put_image(scene()), "region": regions[region], "signal": signal(0)},
                            sam_ctx)

    assert out.backend == "sam"
    assert (out.mask.kind, out.mask.media_type) == ("mask", "image/png")
    mask = store.get_mask(out.mask)
    assert mask.shape == (H, W) and mask.dtype == bool
    ys, xs = np.nonzero(mask)
    assert out.area == mask.sum() > 0
    assert out.box.box == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
    assert any("sam" in message for _, message in progress_log)


def test_the_same_input_gives_the_same_mask(sam_ctx):
    data = {"image": sam_ctx.store.put_image(scene()), "region": BOX, "signal": signal(0)}
    first, second = get_tool("B").run(data, sam_ctx), get_tool("B").run(data, sam_ctx)
    assert first.mask == second.mask and first.area == second.area


def test_the_signal_enters_the_mask_decoder(sam_ctx, weights):
    """Two signals (or none) give different decoder logits, alone and beside a box; so the tool's masks differ."""
    sam = load_sam(sam_ctx.models.spec("B"))
    with precision(sam_ctx.models.spec("B"), sam.device):
        predictor = predictor_for(sam, scene())
        for prompt in (Prompt(), region_prompt(get_tool("B").parse_input(
                {"image": sam_ctx.store.put_image(scene()), "region": BOX}).region, sam_ctx.store)):
            logits = [decode(predictor, prompt, sam_signal(sam, signal(seed), sam_ctx, sam_ctx.models.spec("B")))[0]
                      for seed in (1, 2)]
            assert not torch.allclose(logits[0], logits[1], atol=1e-3)
            if not prompt.empty:
                alone = decode(predictor, prompt, None)[0]
                assert not torch.allclose(alone, logits[0], atol=1e-3)

    image = sam_ctx.store.put_image(scene())
    masks = {get_tool("B").run({"image": image, "region": BOX, "signal": signal(seed)}, sam_ctx).mask.sha256
             for seed in (1, 2, 3)}
    assert len(masks) > 1


def test_a_signal_of_the_wrong_width_is_left_out_and_the_job_says_so(sam_ctx):
    image = sam_ctx.store.put_image(scene())
    out = get_tool("B").run({"image": image, "region": BOX, "signal": signal(0, width=16, k=3)}, sam_ctx)
    assert out.mask == get_tool("B").run({"image": image, "region": BOX}, sam_ctx).mask  # the region alone
    (note,) = sam_ctx.notes
    assert "signal was left out" in note and "[3, 16]" in note and "[k, 32]" in note
    assert "vitron planner align --module image_segmentation" in note


def test_a_signal_left_out_with_no_region_asks_for_a_region_or_an_adapter(sam_ctx):
    with pytest.raises(InvalidInput, match="signal was left out") as err:
        get_tool("B").run({"image": sam_ctx.store.put_image(scene()), "signal": signal(0, width=16)}, sam_ctx)
    assert err.value.field == "region" and "vitron planner align --module image_segmentation" in err.value.fix


def test_no_region_and_no_signal_asks_for_a_region(sam_ctx):
    with pytest.raises(InvalidInput, match="SAM needs a prompt") as err:
        get_tool("B").run({"image": sam_ctx.store.put_image(scene())}, sam_ctx)
    assert err.value.field == "region"


def test_the_model_loads_once_across_calls_and_modules(sam_ctx):
    loads = model_cache().stats()["loads"]
    image = sam_ctx.store.put_image(scene())
    get_tool("B").run({"image": image, "region": BOX}, sam_ctx)
    get_tool("B").run({"image": image, "region": POINTS}, sam_ctx)
    get_tool("E").run({"video": sam_ctx.store.put_video([scene()] * 2, 8.0), "region": BOX}, sam_ctx)
    assert model_cache().stats()["loads"] - loads == 1  # B twice and E share one load of the same weights


def test_settings_pointing_at_a_models_file_pick_sam(tmp_path, weights):
    path = write_models_file(tmp_path / "models.yaml", weights)
    ctx = ToolContext.from_settings(VitronSettings(home=tmp_path / "home", models_file=path))
    out = get_tool("B").run({"image": ctx.store.put_image(scene()), "region": BOX}, ctx)
    assert out.backend == "sam"


@pytest.mark.parametrize(("problem", "match"), [
    ("missing", "does not exist"),
    ("corrupt", "cannot load SAM custom weights"),
    ("wrong variant", "cannot load SAM vit_b weights"),
    ("unknown variant", "unknown variant 'vit_q'"),
    ("no variant", "cannot tell the SAM variant"),
    ("wrong sizes", "cannot load SAM custom weights.*size mismatch"),
])
def test_bad_weights_name_the_setting_and_the_path(ctx, tmp_path, weights, problem, match):
    path, variant, options = weights, "custom", {}
    if problem == "missing":
        path = tmp_path / "nowhere" / "sam.pth"
    elif problem == "corrupt":
        path = tmp_path / "corrupt.pth"
        path.write_bytes(b"junk")
    elif problem == "wrong sizes":
        options = {"encoder_embed_dim": 24}
    else:
        variant = {"wrong variant": "vit_b", "unknown variant": "vit_q", "no variant": None}[problem]
    ctx.models_file = ModelsFile.load(write_models_file(tmp_path / "models.yaml", path, variant=variant, **options))
    with pytest.raises(BackendUnavailable, match=match) as err:
        get_tool("B").run({"image": ctx.store.put_image(scene()), "region": BOX}, ctx)
    assert err.value.field == "VITRON_MODELS_FILE" and str(path) in str(err.value)


def test_scribble_points_spread_over_the_scribble():
    scribble = np.zeros((H, W), bool)
    scribble[20:23, 10:50] = True
    points = spread_points(scribble, 3)
    assert len(points) == 3 and all(scribble[int(y), int(x)] for x, y in points)
    assert np.ptp(points[:, 0]) >= 35  # the two ends of the stroke, not three neighbours


# -- E: video segmentation -------------------------------------------------------------------------

def video(ctx) -> object:
    return ctx.store.put_video([scene(shift=2 * i) for i in range(FRAMES)], 8.0)


def test_sam_tracks_a_video_frame_by_frame(sam_ctx, progress_log):
    out = get_tool("E").run({"video": video(sam_ctx), "region": BOX, "signal": signal(0)}, sam_ctx)
    store = sam_ctx.store

    assert out.backend == "sam"
    assert (out.masks.kind, out.masks.media_type) == ("masks", "video/x-matroska")
    info = store.video_info(out.masks)
    assert (info.frames, info.width, info.height) == (FRAMES, W, H)
    masks = list(store.iter_frames(out.masks))
    boxes = store.get_json(out.boxes)
    assert len(masks) == len(boxes) == FRAMES
    for mask, box in zip(masks, boxes, strict=True):
        ys, xs = np.nonzero(mask)
        assert box == ([int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1] if xs.size else None)
    frames = [message for _, message in progress_log if "frame" in message]
    assert len(frames) == FRAMES and frames[-1].startswith(f"video_segmentation: frame {FRAMES}/{FRAMES}")
    fractions = [f for f, _ in progress_log]
    assert fractions == sorted(fractions)


def test_video_masks_are_deterministic_and_follow_the_signal(sam_ctx):
    ref = video(sam_ctx)
    runs = [get_tool("E").run({"video": ref, "region": BOX, "signal": signal(seed)}, sam_ctx) for seed in (1, 1, 2)]
    assert runs[0].masks == runs[1].masks and runs[0].boxes == runs[1].boxes
    assert runs[0].masks != runs[2].masks


def test_video_signal_of_the_wrong_width_is_left_out_and_a_missing_prompt_refused(sam_ctx):
    ref = video(sam_ctx)
    out = get_tool("E").run({"video": ref, "region": BOX, "signal": signal(0, width=256)}, sam_ctx)
    assert out.masks == get_tool("E").run({"video": ref, "region": BOX}, sam_ctx).masks
    (note,) = sam_ctx.notes
    assert "video_segmentation: the planner's signal was left out" in note
    with pytest.raises(InvalidInput, match="SAM needs a prompt on the first frame"):
        get_tool("E").run({"video": ref}, sam_ctx)


def test_keyframe_every_is_checked(ctx, tmp_path, weights):
    ctx.models_file = ModelsFile.load(write_models_file(tmp_path / "m.yaml", weights, modules=("E",),
                                                        keyframe_every=0))
    with pytest.raises(InvalidInput, match="keyframe_every") as err:
        get_tool("E").run({"video": video(ctx), "region": BOX}, ctx)
    assert err.value.field == "options.keyframe_every"


def test_track_streams_from_a_start_mask_and_propagates(sam_ctx):
    """Chunk-friendly: a track starts from any frame's mask, reads one frame per mask, and between keyframes feeds
    SAM its previous logits (so propagation differs from re-prompting every frame with the box alone)."""
    spec = sam_ctx.models.spec("E")
    sam = load_sam(spec, "video_segmentation")
    start = np.zeros((H, W), bool)
    start[12:32, 16:36] = True
    seen: list[int] = []

    def frames():
        for index in range(FRAMES):
            seen.append(index)
            yield scene(shift=2 * index)

    with precision(spec, sam.device):
        lazy = track(sam, frames(), start_prompt(sam, start), None, every=FRAMES)
        first = next(lazy)
        assert seen == [0] and first.mask.shape == (H, W)
        propagated = [first, *lazy]
        keyframes = list(track(sam, (scene(shift=2 * i) for i in range(FRAMES)), start_prompt(sam, start), None,
                               every=1))
    assert len(propagated) == len(keyframes) == FRAMES
    assert np.array_equal(propagated[0].logits, keyframes[0].logits)  # the same start
    assert any(not np.array_equal(p.logits, k.logits) for p, k in zip(propagated[1:], keyframes[1:], strict=True))


def test_track_masks_continues_a_chunk_from_its_start_mask(sam_ctx):
    start = np.zeros((H, W), bool)
    start[12:32, 20:40] = True
    done: list[int] = []
    masks = list(track_masks(sam_ctx, (scene(shift=2 * i) for i in range(2, 5)), start, signal(0), done.append))
    assert len(masks) == 3 and done == [0, 1, 2]
    assert all(m.shape == (H, W) and m.dtype == bool for m in masks)


def test_a_long_sam_track_splits_into_chunks_from_a_keyframe_pass(sam_ctx):
    from tools.chunks import COMPUTED, chunk_frames_for, run_chunked
    from tools.jobs import job_input, job_spec

    ref = sam_ctx.store.put_video([scene(shift=i % 20) for i in range(24)], 8.0)
    spec = job_spec("E", {"video": ref, "region": BOX, "signal": signal(0)}, sam_ctx.store)
    assert chunk_frames_for(spec.model_copy(update={"chunk_frames": 8}), job_input(spec, sam_ctx.store), sam_ctx) == 8

    before = COMPUTED.copy()
    result = run_chunked(spec, sam_ctx, chunk=8)
    assert (COMPUTED - before) == {"keyframes": 1, "track": 3}  # SAM's keyframe pass, then three chunks
    assert result.backend == "sam" and result.output["backend"] == "sam"
    masks = list(sam_ctx.store.iter_frames(ArtifactRef.model_validate(result.output["masks"])))
    assert len(masks) == 24 and len(sam_ctx.store.get_json(ArtifactRef.model_validate(result.output["boxes"]))) == 24
    assert run_chunked(spec, sam_ctx, chunk=8).output == result.output  # found again, nothing recomputed
    assert (COMPUTED - before) == {"keyframes": 1, "track": 3}

    # The embedded tracker's chunks are other work: other keys, computed afresh.
    opencv = spec.model_copy(update={"backend": "opencv", "input": {**spec.input, "signal": None}})
    assert run_chunked(opencv, sam_ctx, chunk=8).backend == "opencv"
    assert (COMPUTED - before)["track"] == 6


def test_a_chunked_sam_track_says_what_its_chunks_noted_even_when_found_again(sam_ctx):
    """A signal of another width is left out, and the job says so: split into chunks too, and when its keyframes
    and chunks are found in the store instead of computed."""
    from tools.chunks import run_chunked
    from tools.jobs import job_spec

    ref = sam_ctx.store.put_video([scene(shift=i % 20) for i in range(24)], 8.0)
    spec = job_spec("E", {"video": ref, "region": BOX, "signal": signal(0, width=WIDTH + 5)}, sam_ctx.store)
    for _ in range(2):  # computed, then found
        notes = run_chunked(spec, sam_ctx, chunk=8).notes
        assert len(notes) == 1 and "the planner's signal was left out" in notes[0], notes


def test_a_region_on_a_later_frame_is_followed_back_by_sam(sam_ctx, progress_log):
    later = {**BOX, "frame": FRAMES - 2}
    out = get_tool("E").run({"video": video(sam_ctx), "region": later, "signal": signal(0)}, sam_ctx)
    assert out.backend == "sam" and sam_ctx.store.video_info(out.masks).frames == FRAMES
    assert any("back to frame 0" in message for _, message in progress_log)  # SAM's own tracker went back
