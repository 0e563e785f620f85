"""Module F, video editing (OpenCV backend): per-frame edits inside per-frame masks, streamed."""

from __future__ import annotations

from functools import cache

import cv2
import numpy as np
import pytest

from schemas import InvalidInput, UnsupportedOperation
from tests.measure import grow, hue, hue_gap, luminance, shrink
from tests.scenes import VideoScene, render_video, two_of_a_colour
from tools import get_tool
from tools.embedded.colours import COLOURS


@cache
def video(seed: int) -> VideoScene:
    return render_video(seed)


def test_recolour_follows_the_masks_in_every_frame(store, ctx, progress_log):
    v = video(2)  # a blue object
    ref = store.put_video(v.frames, v.fps)
    masks = store.put_video(v.masks, v.fps, kind="masks")
    out = get_tool("F").run({"video": ref, "masks": masks, "command": "make it orange"}, ctx)
    assert out.operation == "recolour:orange"

    info, source = store.video_info(out.video), store.video_info(ref)
    assert (info.frames, info.width, info.height, info.fps) == (30, 320, 240, v.fps) == (
        source.frames, source.width, source.height, source.fps)
    want = hue(np.array(COLOURS["orange"]))[0]
    object_luma = []
    for index, (edited, before) in enumerate(zip(store.iter_frames(out.video), store.iter_frames(ref), strict=True)):
        core = shrink(v.masks[index], 2)  # 4:2:0 chroma blurs colour across the edge by a pixel or two
        assert hue_gap(hue(edited[core].mean(axis=0)), want)[0] < 5, index
        assert np.mean(hue_gap(hue(edited[core]), want) < 12) > 0.95, index
        outside = ~v.masks[index]
        # Compared with the decoded input, the outside changes only by the codec's small error.
        assert np.abs(edited.astype(int) - before)[outside].mean() < 2, index
        object_luma.append(luminance(edited[core]).mean())
    assert np.std(object_luma) < 3  # one reference brightness for the whole clip: no flicker

    fractions = [f for f, _ in progress_log]
    assert len(fractions) >= 10 and fractions == sorted(fractions) and fractions[-1] == 1.0


def test_whole_frames_without_masks(store, ctx):
    v = video(1)
    ref = store.put_video(v.frames[:12], v.fps)
    out = get_tool("video_editing").run({"video": ref, "command": "make it black and white"}, ctx)
    assert out.operation == "grayscale"
    frames = list(store.iter_frames(out.video))
    assert len(frames) == 12
    for frame in frames:
        spread = frame.astype(int).max(axis=-1) - frame.min(axis=-1)
        assert spread.mean() < 2  # grey everywhere, up to the codec's rounding


def test_background_blur_in_a_video_keeps_the_object(store, ctx):
    v = video(3)
    ref = store.put_video(v.frames[:10], v.fps)
    masks = store.put_video(v.masks[:10], v.fps, kind="masks")
    out = get_tool("F").run({"video": ref, "masks": masks, "command": "blur the background"}, ctx)
    for index, (edited, before) in enumerate(zip(store.iter_frames(out.video), store.iter_frames(ref), strict=True)):
        inside, away = shrink(v.masks[index], 2), ~grow(v.masks[index], 3)
        assert np.abs(edited.astype(int) - before)[inside].mean() < 3  # codec noise on a noisy texture
        detail = np.abs(cv2.Laplacian(cv2.cvtColor(before, cv2.COLOR_RGB2GRAY), cv2.CV_32F))[away].mean()
        blurred = np.abs(cv2.Laplacian(cv2.cvtColor(edited, cv2.COLOR_RGB2GRAY), cv2.CV_32F))[away].mean()
        assert blurred < detail / 2


def test_masks_with_another_frame_count_are_refused(store, ctx):
    v = video(0)
    ref = store.put_video(v.frames, v.fps)
    masks = store.put_video(v.masks[:20], v.fps, kind="masks")
    with pytest.raises(InvalidInput, match="20 frames but the video has 30") as info:
        get_tool("F").run({"video": ref, "masks": masks, "command": "make it blue"}, ctx)
    assert info.value.field == "masks"


def test_recolour_without_masks_or_region_is_refused(store, ctx):
    ref = store.put_video(video(0).frames[:3], 10.0)
    with pytest.raises(InvalidInput, match="needs per-frame masks or a region") as info:
        get_tool("F").run({"video": ref, "command": "make it blue"}, ctx)
    assert info.value.field == "masks"


def test_unknown_edit_is_refused_with_the_known_ones(store, ctx):
    ref = store.put_video(video(0).frames[:3], 10.0)
    with pytest.raises(UnsupportedOperation, match="recolour") as info:
        get_tool("F").run({"video": ref, "command": "make it sing"}, ctx)
    assert info.value.field == "command"


def test_a_region_on_the_first_frame_is_tracked_and_edited(store, ctx):
    v = video(4)
    ref = store.put_video(v.frames, v.fps)
    out = get_tool("F").run({"video": ref, "command": "make it green",
                             "region": {"kind": "box", "box": list(v.box(0))}}, ctx)
    want = hue(np.array(COLOURS["green"]))[0]
    frames = list(store.iter_frames(out.video))
    assert len(frames) == len(v.frames)
    for index in (0, len(frames) // 2, len(frames) - 1):
        core = shrink(v.masks[index], 3)
        assert np.mean(hue_gap(hue(frames[index][core]), want) < 15) > 0.85, index


def test_the_object_named_by_colour_and_place_is_tracked_and_edited(store, ctx):
    image, (left, right, _) = two_of_a_colour()
    ref = store.put_video([image] * 6, 10.0)
    out = get_tool("F").run({"video": ref, "command": "make the red object on the right green"}, ctx)
    want = hue(np.array(COLOURS["green"]))[0]
    for frame in store.iter_frames(out.video):
        assert np.mean(hue_gap(hue(frame[shrink(right, 3)]), want) < 15) > 0.85
        assert np.mean(hue_gap(hue(frame[shrink(left, 3)]), want) < 15) < 0.05  # the left one stays red
