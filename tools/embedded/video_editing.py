"""Video edits: the image edits applied frame by frame, inside per-frame masks, streaming.

Masks come from the input (per-frame masks from video segmentation), or are tracked from the object
on the first frame (a region, or the one the command names by colour, place, size or order), or there are none
(whole frames).
Frames are decoded and encoded one at a time, so memory does not grow with the video's length.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np

from schemas import ArtifactRef, InvalidInput
from tools.base import ToolContext
from tools.specialists import EditVideoInput, EditVideoOutput

from .editing import EditOp, apply_edit, object_mask_for, parse_edit, with_reference

_MASKS_FIX = "use per-frame masks made from this video (video_segmentation)"


def _frame_count(ctx: ToolContext, ref: ArtifactRef) -> int:
    return ref.shape[0] if ref.shape else ctx.store.video_info(ref).frames


def _paired(frames: Iterable[np.ndarray], masks: Iterator[np.ndarray]) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Frames with their masks; a clear error (before the output is stored) if the counts differ."""
    index = -1
    for index, frame in enumerate(frames):
        mask = next(masks, None)
        if mask is None:
            raise InvalidInput(f"the masks end at frame {index}, before the video does", field="masks",
                               fix=_MASKS_FIX)
        yield frame, mask
    if next(masks, None) is not None:
        raise InvalidInput(f"there are more masks than the video's {index + 1} frames", field="masks",
                           fix=_MASKS_FIX)


def _masks(inp: EditVideoInput, op: EditOp, ctx: ToolContext) -> Iterator[np.ndarray] | None:
    """Per-frame masks for the edit, as a stream; None when it applies to whole frames."""
    if inp.masks is not None:
        frames, masks = _frame_count(ctx, inp.video), _frame_count(ctx, inp.masks)
        if frames != masks:
            raise InvalidInput(f"the masks have {masks} frames but the video has {frames}", field="masks",
                               fix=_MASKS_FIX)
        return ctx.store.iter_frames(inp.masks)
    if inp.region is None and not op.refers:
        return None
    # Find the object on the first frame, then track it through a second pass over the video.
    first_frames = ctx.store.iter_frames(inp.video)
    try:
        first = next(first_frames)
    finally:
        first_frames.close()
    ctx.progress(0.02, f"video_editing: finding {op.object_phrase} on the first frame")
    first_mask = object_mask_for(first, op, inp.region, ctx.store)
    from .video_segmentation import track  # optical flow loads only when a region must be tracked

    return track(ctx.store.iter_frames(inp.video), first_mask)


def edit_video(inp: EditVideoInput, ctx: ToolContext) -> EditVideoOutput:
    """Backend of video_editing: parse the command, stream frames (and masks) through the edit, encode."""
    op = parse_edit(inp.command, inp.area)  # fail fast, before decoding anything
    if op.needs_mask and inp.masks is None and inp.region is None and not op.refers:
        raise InvalidInput(f"{op.label} needs per-frame masks or a region on the first frame", field="masks",
                           fix="give masks from video segmentation, or a region (box, points or scribble)")
    info = ctx.store.video_info(inp.video)
    total = max(1, _frame_count(ctx, inp.video))
    masks = _masks(inp, op, ctx)
    every = max(1, total // 50)  # about fifty progress events, whatever the length
    with ctx.store.video_writer(info.fps) as writer:
        frames = ctx.store.iter_frames(inp.video)
        pairs = _paired(frames, masks) if masks is not None else ((f, None) for f in frames)
        for index, (frame, mask) in enumerate(pairs):
            # The recolour's reference brightness comes from the first frame showing the object, so
            # the new colour does not flicker as the object's mean brightness changes frame to frame.
            op = with_reference(op, frame, mask)
            writer.write(apply_edit(frame, mask, op, frame=True))
            if (index + 1) % every == 0:
                ctx.progress(0.05 + 0.9 * min(1.0, (index + 1) / total),
                             f"video_editing: {op.label}, frame {index + 1}/{total}")
    return EditVideoOutput(backend="opencv", video=writer.ref, operation=op.label)
