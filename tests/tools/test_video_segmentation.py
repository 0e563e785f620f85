"""Module E, video segmentation (OpenCV backend): a first-frame prompt tracked through moving-object videos."""

from __future__ import annotations

import numpy as np
import pytest

from schemas import InvalidInput
from tests.scenes import iou, render_video
from tools import get_tool
from tools.embedded.video_segmentation import track


@pytest.mark.parametrize("seed", [0, 2, 4])
def test_a_first_frame_box_is_tracked_through_thirty_frames(store, ctx, progress_log, seed):
    v = render_video(seed)
    ref = store.put_video(v.frames, v.fps)
    out = get_tool("E").run({"video": ref, "region": {"kind": "box", "box": list(v.box(0))}}, ctx)

    info = store.video_info(out.masks)
    assert (out.masks.kind, info.frames, info.width, info.height) == ("masks", 30, 320, 240)
    masks = list(store.iter_frames(out.masks))  # bool per frame
    scores = [iou(mask, truth) for mask, truth in zip(masks, v.masks, strict=True)]
    assert np.mean(scores) >= 0.8, scores
    assert min(scores) >= 0.6, scores  # no frame is lost on the way

    boxes = store.get_json(out.boxes)
    assert len(boxes) == 30
    for box, mask in zip(boxes, masks, strict=True):
        ys, xs = np.nonzero(mask)
        assert box == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]

    fractions = [f for f, _ in progress_log]
    assert fractions == sorted(fractions) and len(fractions) >= 10


def test_a_colour_phrase_starts_the_track(store, ctx):
    v = render_video(1)
    out = get_tool("E").run({"video": store.put_video(v.frames, v.fps), "command": f"track the {v.colour} object"},
                            ctx)
    masks = list(store.iter_frames(out.masks))  # bool per frame
    assert np.mean([iou(m, t) for m, t in zip(masks, v.masks, strict=True)]) >= 0.8


def test_track_streams_one_mask_per_frame_without_holding_the_video():
    v = render_video(5, frames=12)
    seen = []

    def frames():
        for index, frame in enumerate(v.frames):
            seen.append(index)
            yield frame

    masks = track(frames(), v.masks[0])
    first = next(masks)
    assert seen == [0] and iou(first, v.masks[0]) == 1.0  # lazily: one frame read per mask out
    rest = list(masks)
    assert len(rest) == 11 and np.mean([iou(m, t) for m, t in zip(rest, v.masks[1:], strict=True)]) >= 0.9


def test_an_object_that_does_not_move_stays_put():
    v = render_video(3, frames=6)
    still = [v.frames[0]] * 6
    masks = list(track(still, v.masks[0]))
    assert all(iou(m, v.masks[0]) >= 0.97 for m in masks)


def test_no_prompt_is_a_clear_error(store, ctx):
    v = render_video(0, frames=3)
    with pytest.raises(InvalidInput, match="no region was given"):
        get_tool("E").run({"video": store.put_video(v.frames, v.fps), "command": "track the dog"}, ctx)
