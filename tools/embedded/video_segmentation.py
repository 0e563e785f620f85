"""Video segmentation by mask propagation: the object's colour model finds where the mask moved, GrabCut
re-fits it to each frame.

Per frame, the previous mask is slid (template matching) over the map of how object-like each pixel's
colour is, within a search window around its last place; GrabCut then re-fits the shifted mask's edge
band, which follows turning and deforming. The colour model keeps learning slowly, for changing light.
Streaming: only the previous mask and the colour model are held, so memory does not grow with the video.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import cv2
import numpy as np

from tools.base import ToolContext
from tools.specialists import SegmentVideoInput, SegmentVideoOutput

from .masks import keep_components
from .segmentation import ColourModel, object_mask, refine_mask

Progress = Callable[[int], None]

SEARCH = 0.5  # how far the object may move between frames, as a fraction of its size
LEARN_RATE = 0.1  # how fast the colour model follows the object's look
MIN_GAIN = 0.02  # a shift must explain this much more of the object (per mask pixel) than staying put


def _background(mask: np.ndarray) -> np.ndarray:
    return ~(cv2.dilate(mask.astype(np.uint8), np.ones((11, 11), np.uint8)) > 0)


def shift_mask(mask: np.ndarray, odds: np.ndarray, reach: int) -> np.ndarray:
    """`mask` moved by the shift within ±`reach` pixels that covers the most object-like pixels."""
    h, w = mask.shape
    ys, xs = np.nonzero(mask)
    x1, y1, x2, y2 = int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1
    template = mask[y1:y2, x1:x2].astype(np.float32)
    wx1, wy1, wx2, wy2 = max(0, x1 - reach), max(0, y1 - reach), min(w, x2 + reach), min(h, y2 + reach)
    window = (odds[wy1:wy2, wx1:wx2] - 0.5).astype(np.float32)  # object-like > 0 > background-like
    scores = cv2.matchTemplate(window, template, cv2.TM_CCORR)
    _, best, _, (bx, by) = cv2.minMaxLoc(scores)
    stay = scores[y1 - wy1, x1 - wx1]
    if best - stay < MIN_GAIN * template.sum():  # no clear evidence of motion (e.g. colours like the background)
        return mask
    shift = np.float32([[1, 0, wx1 + bx - x1], [0, 1, wy1 + by - y1]])
    return cv2.warpAffine(mask.astype(np.uint8), shift, (w, h), flags=cv2.INTER_NEAREST) > 0


def _refine(frame: np.ndarray, moved: np.ndarray) -> np.ndarray:
    """Re-fit the moved mask to this frame's edges and colours; the moved mask when that fails."""
    band = max(2, round(0.08 * np.sqrt(moved.sum())))
    refined = keep_components(refine_mask(frame, moved, band), moved)
    return refined if refined.any() else moved


def track(frames: Iterable[np.ndarray], first_mask: np.ndarray,
          progress: Progress | None = None) -> Iterator[np.ndarray]:
    """Yield one bool mask per RGB frame: `first_mask` for the first, then the mask followed and re-fitted."""
    mask = first_mask.astype(bool)
    model: ColourModel | None = None
    for index, frame in enumerate(frames):
        if model is None:
            model = ColourModel.fit(frame, mask, _background(mask))
        elif mask.any():
            ys, xs = np.nonzero(mask)
            reach = max(8, round(SEARCH * max(np.ptp(xs), np.ptp(ys))))
            mask = _refine(frame, shift_mask(mask, model.likeness(frame), reach))
            if mask.any():
                model = model.blend(ColourModel.fit(frame, mask, _background(mask)), LEARN_RATE)
        if progress is not None:
            progress(index)
        yield mask


def _box(mask: np.ndarray) -> list[int] | None:
    ys, xs = np.nonzero(mask)
    if xs.size == 0:
        return None
    return [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]


def segment_video(inp: SegmentVideoInput, ctx: ToolContext) -> SegmentVideoOutput:
    """Backend of video_segmentation: find the object on the first frame, track it, store masks and boxes."""
    info = ctx.store.video_info(inp.video)
    total = max(1, info.frames)
    frames = ctx.store.iter_frames(inp.video)
    try:
        first = next(frames)
    finally:
        frames.close()
    ctx.progress(0.01, "video_segmentation: finding the object on the first frame")
    first_mask = object_mask(first, inp.command, inp.region, ctx.store)
    every = max(1, total // 20)  # about twenty progress events, whatever the length

    def report(index: int) -> None:
        done = index + 1
        if done % every == 0 or done == total:
            ctx.progress(min(0.99, done / total), f"video_segmentation: frame {done}/{total}")

    boxes: list[list[int] | None] = []
    with ctx.store.video_writer(info.fps, kind="masks") as writer:
        for mask in track(ctx.store.iter_frames(inp.video), first_mask, report):
            writer.write(mask)
            boxes.append(_box(mask))
    return SegmentVideoOutput(backend="opencv", masks=writer.ref, boxes=ctx.store.put_json(boxes, kind="boxes"))
