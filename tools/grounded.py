"""Referring segmentation before the backend runs: a command with no region that refers to an object ("the cat on the
left", "the second red car from the right in frame 12") becomes a region, which B's and E's backends take as if the
user had drawn it (the tools' `preparer`).

- With SAM and a grounding detector configured (`tools.real.grounding`): the detector finds the phrase's subject on
  the image (on a video: on the named frame, else the first), the phrase picks one box, and the box is the region:
  SAM segments from it, and on a video propagates from it.
- With the embedded backend: on an image, or a video's first frame, nothing is done here (segmentation reads the
  phrase itself: colour regions, `tools.embedded.referring`); on a later frame of a video ("in frame 12"), the object
  is picked there and its mask is the region, on that frame.

A region on a later frame is then followed back to the first (`tools.anchor.first_frame_region`), as a region the
user drew there is. A command with a region is left alone: the region says which object.
"""

from __future__ import annotations

from typing import Any

from schemas import InvalidInput, ScribbleRegion

from .anchor import first_frame_region
from .base import ToolContext
from .referring import Phrase, parse_phrase

SAM = "sam"


def _grounds(phrase: Phrase, ctx: ToolContext, module: str, backend: str) -> bool:
    """Whether the detector should look: SAM runs, a detector is configured, and the phrase names something."""
    if backend != SAM or not phrase.names_something:
        return False
    from .real.grounding import detector

    return detector(ctx, module) is not None


def image_region(inp: Any, ctx: ToolContext, backend: str) -> Any:
    """B's preparer: `inp` with the box of the object its command refers to, for SAM with a grounding detector."""
    if inp.region is not None:
        return inp
    phrase = parse_phrase(inp.command)
    if phrase.frame not in (None, 0):
        raise InvalidInput(f"the command names frame {phrase.frame}, but an image has one picture", field="command",
                           fix="leave the frame out, or segment a video (video_segmentation)")
    if not _grounds(phrase, ctx, "image_segmentation", backend):
        return inp
    from .real.grounding import grounded_region

    ctx.progress(0.0, f"image_segmentation: finding {phrase.described()}")
    region = grounded_region(ctx, "image_segmentation", ctx.store.get_image(inp.image), phrase)
    return inp.model_copy(update={"region": region})


def video_region(inp: Any, ctx: ToolContext, backend: str) -> Any:
    """E's preparer: the object its command refers to found on the named frame (or the first), as a region; then any
    region on a later frame followed back to the first."""
    if inp.region is not None:
        return first_frame_region(inp, ctx, backend)
    phrase = parse_phrase(inp.command)
    frame = _frame(phrase, ctx, inp.video)
    if _grounds(phrase, ctx, "video_segmentation", backend):
        from .real.grounding import grounded_region

        ctx.progress(0.0, f"video_segmentation: finding {phrase.described()} on frame {frame}")
        region = grounded_region(ctx, "video_segmentation", _frame_pixels(ctx, inp.video, frame), phrase, frame)
        return first_frame_region(inp.model_copy(update={"region": region}), ctx, backend)
    if backend != SAM and frame > 0:
        from .embedded.referring import referred_mask

        mask = referred_mask(_frame_pixels(ctx, inp.video, frame), inp.command)
        if mask is not None:
            ctx.progress(0.0, f"video_segmentation: found {phrase.described()} on frame {frame}")
            drawn = inp.model_copy(update={"region": ScribbleRegion(mask=ctx.store.put_mask(mask), frame=frame)})
            return first_frame_region(drawn, ctx, backend, start=mask)
    return inp


def _frame(phrase: Phrase, ctx: ToolContext, video: Any) -> int:
    """The frame the phrase names (0 when none; the last for -1), checked against the video's length."""
    if phrase.frame is None or phrase.frame == 0:
        return 0
    frames = ctx.store.video_info(video).frames
    frame = frames - 1 if phrase.frame < 0 else phrase.frame
    if not 0 <= frame < frames:
        raise InvalidInput(f"the command names frame {phrase.frame}, past the video's last frame, {frames - 1}",
                           field="command", fix=f"name a frame from 0 to {frames - 1}")
    return frame


def _frame_pixels(ctx: ToolContext, video: Any, frame: int) -> Any:
    frames = ctx.store.iter_frames(video, frame, frame + 1)
    try:
        return next(frames)
    finally:
        frames.close()

