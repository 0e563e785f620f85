"""A region drawn on a later frame of a video, moved to the first frame: the object is found on the frame the user
drew on, tracked backward to frame 0 by the backend's own tracker, and handed on as a mask on the first frame (a
scribble region). Every video backend, and the chunked runs of long videos, then start from the first frame as
they always do.

Backward, a few frames at a time: each part is decoded forward from its keyframe (the store's videos have one
every `KEYFRAME_EVERY` frames), reversed and tracked, so memory holds one part, not the video up to the frame."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from memory.artifacts import KEYFRAME_EVERY
from schemas import ScribbleRegion

from .base import ToolContext

Tracker = Callable[[list[np.ndarray], np.ndarray | None], Iterator[np.ndarray]]
"""Frames (the first one the start) and the mask on the first (None: the input's region) → one mask per frame."""


def first_frame_region(inp: Any, ctx: ToolContext, backend: str, *, start: np.ndarray | None = None) -> Any:
    """`inp` with its region on frame 0; the input itself when it already is, has none, or has per-frame masks (the
    region is not read then). `start`: the object's mask on the region's frame, when already known (a referring
    phrase's pick), instead of the backend finding it from the region."""
    region = getattr(inp, "region", None)
    if region is None or region.frame == 0 or getattr(inp, "masks", None) is not None:
        return inp
    drawn = region.frame
    track = _tracker(inp, ctx, backend)
    ctx.progress(0.0, f"finding the object on frame {drawn}, then following it back to the first frame")
    mask: np.ndarray | None = start
    stop = drawn + 1
    while True:
        start = max(0, stop - KEYFRAME_EVERY)
        part = list(ctx.store.iter_frames(inp.video, start, stop))[::-1]  # from frame stop-1 back to start
        mask = deque(track(part, mask), maxlen=1)[0]  # the mask on frame `start`
        ctx.progress(0.0, f"followed the object back to frame {start}")  # where a cancel is heard, too
        if start == 0:
            break
        stop = start + 1  # the next part starts on this part's last frame, whose mask is known
    anchored = ScribbleRegion(mask=ctx.store.put_mask(mask))
    return inp.model_copy(update={"region": anchored})


def _tracker(inp: Any, ctx: ToolContext, backend: str) -> Tracker:
    """The backend's own tracker: SAM's for `sam`, else the embedded colour-and-flow one."""
    if backend == "sam":
        from .real.video_segmentation import masks_from_region, track_masks

        def sam(frames: list[np.ndarray], start: np.ndarray | None) -> Iterator[np.ndarray]:
            drawn = inp.model_copy(update={"region": inp.region.model_copy(update={"frame": 0})})
            if start is None:
                return masks_from_region(ctx, drawn, frames)
            return track_masks(ctx, frames, start, inp.signal)

        return sam

    from .embedded.segmentation import object_mask
    from .embedded.video_segmentation import track

    def embedded(frames: list[np.ndarray], start: np.ndarray | None) -> Iterator[np.ndarray]:
        if start is None:
            start = object_mask(frames[0], inp.command, inp.region, ctx.store)
        return track(frames, start)

    return embedded
