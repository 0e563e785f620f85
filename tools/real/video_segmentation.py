"""Video segmentation with segment-anything (SAM): SAM on keyframes, propagation between them.

Weights and loading as the image backend (`tools.real.sam`: role `main`, a SAM `.pth` with `variant:`); the entry
is the models file's `video_segmentation` one, and the same weights share one loaded model with module B.

Per frame, SAM encodes the frame and its mask decoder is prompted:

- the first frame (or a chunk's first frame): by the region (box, points, scribble), or by the chunk's start mask
  (its box, and the mask as SAM's low-res mask input);
- propagation: each next frame by the previous frame's mask — its box plus SAM's own low-res logits for it as the
  mask input, so the object is followed as it moves and deforms;
- keyframes, every `options.keyframe_every` frames (default 10): the previous mask's box only, without the
  mask input, so SAM re-segments from scratch there and drift in the propagated logits does not accumulate;
- a lost object (an empty mask): the first frame's prompt again, until SAM finds it.

The conditioning rule is the image backend's: the signal's task-specific part [k, d] is appended to the sparse
prompt embeddings of every frame (the signal says what is tracked, all along). The best of SAM's three masks by
predicted IoU is kept, non-empty ones first.

Chunk-friendly: `track` streams (only the previous frame's mask and logits are held) and can start from any
frame with a start mask, so a long video can be split into chunks, each started from a keyframe pass's mask
(`track_masks` has the embedded tracker's shape for that).
Masks are written frame by frame (lossless), boxes as JSON (null where empty); progress is reported per frame.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np
import torch

from schemas import InvalidInput, ModelSpec, SignalEmbedding
from tools.base import ToolContext
from tools.specialists import SegmentVideoInput, SegmentVideoOutput

from .loading import model_spec
from .sam import (
    BACKEND,
    Prediction,
    Prompt,
    load_sam,
    mask_box,
    mask_logits,
    no_prompt,
    precision,
    predict,
    predictor_for,
    region_prompt,
    sam_signal,
)

MODULE = "video_segmentation"
KEYFRAME_EVERY = 10


def keyframe_every(spec: ModelSpec) -> int:
    """`options.keyframe_every` of the models-file entry (default 10), checked."""
    value = spec.options.get("keyframe_every", KEYFRAME_EVERY)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidInput(f"keyframe_every must be a whole number of frames >= 1, not {value!r}",
                           field="options.keyframe_every",
                           fix=f"set `options: {{keyframe_every: 10}}` under {MODULE} in the models file")
    return value


def start_prompt(sam: Any, mask: np.ndarray) -> Prompt:
    """The prompt that continues a track from a known mask (a chunk's start): its box and the mask itself."""
    box = mask_box(mask)
    if box is None:
        raise InvalidInput("the start mask is empty", field="masks",
                           fix="start the track from a frame showing the object")
    return Prompt(box=np.asarray(box, np.float32), mask_logits=mask_logits(sam, mask))


def track(sam: Any, frames: Iterable[np.ndarray], first: Prompt, tokens: torch.Tensor | None, *,
          every: int = KEYFRAME_EVERY, progress: Callable[[int], None] | None = None) -> Iterator[Prediction]:
    """Yield SAM's prediction per RGB frame: `first` prompts frame 0, then propagation with keyframes (see above).

    Call inside `precision(spec, device)`; only the previous frame's result is held."""
    previous: Prediction | None = None
    for index, frame in enumerate(frames):
        predictor = predictor_for(sam, frame)
        box = mask_box(previous.mask) if previous is not None else None
        if box is None:  # the first frame, or the object was lost
            prompt = first
        elif index % every == 0:  # keyframe: re-segment from the box alone
            prompt = Prompt(box=np.asarray(box, np.float32))
        else:
            prompt = Prompt(box=np.asarray(box, np.float32), mask_logits=previous.logits)
        previous = predict(predictor, prompt, tokens)
        if progress is not None:
            progress(index)
        yield previous


def track_masks(ctx: ToolContext, frames: Iterable[np.ndarray], start_mask: np.ndarray,
                signal: SignalEmbedding | None = None, progress: Callable[[int], None] | None = None
                ) -> Iterator[np.ndarray]:
    """One bool mask per frame, tracked by SAM from `start_mask` on the first: a chunk's track (the embedded
    tracker's `track(frames, first_mask, progress)` shape), with the models file's E entry and the signal."""
    spec = model_spec(ctx, MODULE, BACKEND)
    sam = load_sam(spec, MODULE)
    tokens = sam_signal(sam, signal, ctx, spec, MODULE)
    first = start_prompt(sam, start_mask)
    with precision(spec, sam.device):
        for result in track(sam, frames, first, tokens, every=keyframe_every(spec), progress=progress):
            yield result.mask


def _first_prompt(inp: SegmentVideoInput, ctx: ToolContext, sam: Any,
                  spec: ModelSpec) -> tuple[Prompt, torch.Tensor | None]:
    first = region_prompt(inp.region, ctx.store)
    tokens = sam_signal(sam, inp.signal, ctx, spec, MODULE)
    if first.empty and tokens is None:
        raise no_prompt(inp.signal, MODULE, " on the first frame")
    return first, tokens


def masks_from_region(ctx: ToolContext, inp: SegmentVideoInput, frames: Iterable[np.ndarray],
                      progress: Callable[[int], None] | None = None) -> Iterator[np.ndarray]:
    """One bool mask per frame, tracked from the input's region (and signal) on the first: the keyframe pass of a
    chunked job, over every few frames of the video."""
    spec = model_spec(ctx, MODULE, BACKEND)
    sam = load_sam(spec, MODULE)
    first, tokens = _first_prompt(inp, ctx, sam, spec)
    with precision(spec, sam.device):
        for result in track(sam, frames, first, tokens, every=keyframe_every(spec), progress=progress):
            yield result.mask


def segment_video(inp: SegmentVideoInput, ctx: ToolContext) -> SegmentVideoOutput:
    """Backend of video_segmentation: SAM from the first frame's region (and signal), propagated frame by frame."""
    spec = model_spec(ctx, MODULE, BACKEND)
    every = keyframe_every(spec)
    sam = load_sam(spec, MODULE)
    first, tokens = _first_prompt(inp, ctx, sam, spec)
    info = ctx.store.video_info(inp.video)
    total = max(1, info.frames)

    def report(index: int) -> None:
        ctx.progress(min(0.99, (index + 1) / total), f"video_segmentation: frame {index + 1}/{total} (sam)")

    boxes: list[list[int] | None] = []
    with precision(spec, sam.device), ctx.store.video_writer(info.fps, kind="masks", lossless=True) as writer:
        for result in track(sam, ctx.store.iter_frames(inp.video), first, tokens, every=every, progress=report):
            writer.write(result.mask)
            box = mask_box(result.mask)
            boxes.append(list(box) if box is not None else None)
    return SegmentVideoOutput(backend=BACKEND, masks=writer.ref, boxes=ctx.store.put_json(boxes, kind="boxes"))
