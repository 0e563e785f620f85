"""Long video jobs in chunks: several workers share one video, and every chunk's result is kept under a key,
so a retried or resumed job computes only the chunks it is missing.

A chunk's key is the SHA-256 of its module, backend, tool input (refs, so content hashes), operation,
parameters and frame range (`chunk_key`); the store's index maps it to the chunk's artifact
(`ArtifactStore.put_named`). Content-addressed, so running a chunk twice gives the identical file.

Video editing (F) splits exactly: each chunk edits its own frames with the given masks, the recolour's
reference brightness comes from the video's first frame showing the object (as unchunked). A chunk seeks to
its first frame (the store's videos have a keyframe every `KEYFRAME_EVERY` frames) rather than decoding what
comes before, and is encoded as a part of the output: the merge only copies the parts' packets into one file.
So the work is the unchunked job's, shared out; the frames match the unchunked job's within the codec's
rounding (each part's encoder starts afresh), and a given chunking always gives the same bytes.

Video segmentation (E) tracks, and each frame's mask depends on the one before. A keyframe pass first
tracks the first frame's mask over every `stride`-th frame (`KEYFRAME_STEPS` steps per chunk) to get each
chunk's starting mask; then the chunks track their own frames from those, in parallel. The trade-off: the
keyframe pass takes bigger steps (the object must stay within the tracker's reach, half its size, per
step) and each chunk starts its colour model afresh, so masks near chunk starts can differ a little from
the unchunked run's (on the rendered 120-frame test video the mean IoU stays within 0.05 of it). The
serial part is about 1/stride of the frames.

With SAM as E's backend the same plan holds: SAM's propagation over the keyframes, then each chunk tracked
by SAM from its start mask (`tools.real.video_segmentation`); a chunk's key also names the models-file entry.

Video editing that must track the object itself (a region, no masks) runs unchunked: run E first. So does a
diffusion edit of F: with latent blending, each frame's edit depends on the one before.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from itertools import chain
from typing import Any, Literal

import cv2
import numpy as np
from pydantic import BaseModel

from memory import ArtifactStore
from schemas import ArtifactRef, InvalidInput, JobResult, JobSpec, VitronError

from .base import ToolContext, input_refs
from .jobs import job_input, prepare_job
from .registry import get_tool
from .specialists import EditVideoInput, EditVideoOutput, SegmentVideoInput, SegmentVideoOutput

VIDEO_CHUNK = "vitron.video_chunk"
VIDEO_MERGE = "vitron.video_merge"
CHUNKED_MODULES = ("video_segmentation", "video_editing")
CHUNKED_BACKENDS = {("video_segmentation", "opencv"), ("video_segmentation", "sam"), ("video_editing", "opencv")}
"""The (module, backend) pairs that split: the embedded ones, and SAM's propagation for E."""
KEYFRAME_STEPS = 6  # tracker steps per chunk in E's keyframe pass: its stride is chunk // KEYFRAME_STEPS
REPORT_EVERY = 5  # frames between progress reports (each also checks for cancellation)
RNG_SEED = 0  # GrabCut's k-means draws from OpenCV's per-thread RNG: seeded, a chunk's masks are reproducible
KEY_VERSION = 3  # bump when a chunk's format changes, so old index entries are not reused

COMPUTED: Counter[str] = Counter()
"""Chunk computations in this process by operation ("edit", "track", "keyframes"); lookups that hit don't count."""

_VOLATILE = {"alias"}  # a session's name for an artifact: not part of its content


class ChunkPlan(BaseModel):
    """How a job is split: JSON, so it travels in a Celery message (the merge task's arguments)."""

    kind: Literal["video", "masks"]
    fps: float
    frames: int
    ranges: list[tuple[int, int]]
    start_masks: list[ArtifactRef | None]  # E: each chunk's starting mask (from the keyframe pass)
    started: float  # wall-clock time the job started, for JobResult.seconds
    notes: list[str] = []  # what the keyframe pass told the user (a signal left out…)


def chunk_ranges(frames: int, chunk: int) -> list[tuple[int, int]]:
    """`[start, stop)` ranges of at most `chunk` frames covering `frames` frames, in order."""
    if chunk < 1:
        raise InvalidInput(f"chunk size {chunk} is below 1", field="chunk_frames", fix="give 1 or more frames")
    if frames < 0:
        raise InvalidInput(f"frame count {frames} is negative", field="frames")
    return [(start, min(start + chunk, frames)) for start in range(0, frames, chunk)]


def _canonical(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _canonical(v) for k, v in value.items() if k not in _VOLATILE}
    if isinstance(value, list):
        return [_canonical(v) for v in value]
    return value


def pin_backend(spec: JobSpec, ctx: ToolContext) -> JobSpec:
    """The spec with its backend named (the models file's, else the embedded one), so that every chunk of the job,
    on any worker, runs the same backend and its keys say which."""
    if spec.backend is not None:
        return spec
    return spec.model_copy(update={"backend": get_tool(spec.module).backend_name(None, ctx.models)})


def _model_params(spec: JobSpec, ctx: ToolContext) -> dict[str, Any]:
    """What a chunk's result depends on beyond its input: the real backend's models-file entry (other weights,
    other masks)."""
    entry = ctx.models.spec(spec.module)
    return {"model": entry.model_dump(mode="json")} if entry is not None and entry.backend == spec.backend else {}


def chunk_key(spec: JobSpec, start: int, stop: int, *, op: str = "chunk", params: dict[str, Any] | None = None) -> str:
    """The key of one chunk's result: SHA-256 of the module, backend, input, operation, parameters and range.

    Job ids, sessions, queues and aliases are left out, so the same work in another job finds the result."""
    tool = get_tool(spec.module)
    doc = {"v": KEY_VERSION, "module": tool.name, "backend": spec.backend or next(iter(tool.backends), None),
           "input": _canonical(spec.input), "op": op, "params": params or {}, "range": [start, stop]}
    return hashlib.sha256(json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _frame_count(store: ArtifactStore, ref: ArtifactRef) -> int:
    return ref.shape[0] if ref.shape else store.video_info(ref).frames


def chunk_frames_for(spec: JobSpec, inp: BaseModel, ctx: ToolContext) -> int | None:
    """The chunk size when this job should be split, else None (it runs whole)."""
    tool = get_tool(spec.module)
    if tool.name not in CHUNKED_MODULES:
        return None
    chunk = spec.chunk_frames if spec.chunk_frames is not None else ctx.settings.chunk_frames
    if not chunk or (tool.name, tool.backend_name(spec.backend, ctx.models)) not in CHUNKED_BACKENDS:
        return None  # a diffusion edit runs whole: each frame's edit depends on the one before (latent blending)
    if isinstance(inp, EditVideoInput):
        from .embedded.editing import parse_edit

        try:
            op = parse_edit(inp.command, inp.area)
        except VitronError:
            return None  # the whole job reports the error, with the same text
        if inp.masks is None and (inp.region is not None or op.refers or op.needs_mask):
            return None  # tracking inside the edit (or an error): see the module docstring
    return chunk if _frame_count(ctx.store, inp.video) > chunk else None


# -- reading part of a video -----------------------------------------------------------------------


@contextlib.contextmanager
def _frames(store: ArtifactStore, ref: ArtifactRef, start: int, stop: int | None) -> Iterator[Iterator[np.ndarray]]:
    """Frames [start, stop), decoded in order (seeking to `start`); the file closes on leaving."""
    frames = store.iter_frames(ref, start, stop)
    try:
        yield frames
    finally:
        frames.close()


def _reporter(ctx: ToolContext, what: str, total: int) -> Any:
    def report(index: int) -> None:
        done = index + 1
        if done % REPORT_EVERY == 0 or done == total:
            ctx.progress(done / max(1, total), f"{what}: frame {done}/{total}")

    return report


# -- F: video editing ------------------------------------------------------------------------------


def _edit_op(inp: EditVideoInput, ctx: ToolContext) -> Any:
    """The parsed edit, with the recolour's reference brightness from the first frame showing the object."""
    from .embedded.editing import parse_edit, with_reference

    op = parse_edit(inp.command, inp.area)
    if op.name != "recolour" or inp.masks is None:
        return op
    with _frames(ctx.store, inp.video, 0, None) as frames, _frames(ctx.store, inp.masks, 0, None) as masks:
        for frame, mask in zip(frames, masks, strict=False):
            op = with_reference(op, frame, mask)
            if "luminance" in op.params:
                break
    return op


def edit_video_chunk(spec: JobSpec, start: int, stop: int, ctx: ToolContext) -> ArtifactRef:
    """Edit frames [start, stop) into a part of the output video, recorded under its chunk key (reused if there)."""
    from .embedded.editing import apply_edit

    key = chunk_key(spec, start, stop, op="edit")
    if (found := ctx.store.get_named(key)) is not None:
        ctx.progress(1.0, f"video_editing: frames {start}-{stop} already done")
        return found
    inp = job_input(spec, ctx.store)
    assert isinstance(inp, EditVideoInput)
    COMPUTED["edit"] += 1
    ctx.progress(0.0, f"video_editing: computing frames {start}-{stop}")
    op = _edit_op(inp, ctx)
    report = _reporter(ctx, f"video_editing: {op.label}, frames {start}-{stop}", stop - start)
    fps = ctx.store.video_info(inp.video).fps
    with contextlib.ExitStack() as stack:
        frames = stack.enter_context(_frames(ctx.store, inp.video, start, stop))
        masks = stack.enter_context(_frames(ctx.store, inp.masks, start, stop)) if inp.masks is not None else None
        with ctx.store.video_writer(fps) as writer:
            for index, frame in enumerate(frames):
                mask = next(masks) if masks is not None else None
                writer.write(apply_edit(frame, mask, op, frame=True))
                report(index)
    if writer.frames != stop - start:
        raise InvalidInput(f"the video ends at frame {start + writer.frames}, before {stop}", field="video")
    ctx.store.put_named(key, writer.ref)
    return writer.ref


# -- E: video segmentation -------------------------------------------------------------------------


def keyframe_stride(chunk: int) -> int:
    return max(1, chunk // KEYFRAME_STEPS)


def track_keyframes(spec: JobSpec, starts: list[int], ctx: ToolContext, stride: int) -> ArtifactRef:
    """The object's mask at each chunk start, tracked from the first frame over every `stride`-th frame.

    Returns the ref of a JSON document {start: mask ref, "notes": [what the job noted]}; recorded under its key like
    a chunk, its notes with it, so that a job that finds it says them too."""
    from .embedded.segmentation import object_mask
    from .embedded.video_segmentation import track

    key = chunk_key(spec, 0, max(starts) + 1, op="keyframes",
                    params={"starts": starts, "stride": stride, **_model_params(spec, ctx)})
    if (found := ctx.store.get_named(key)) is not None:
        return found
    inp = job_input(spec, ctx.store)
    assert isinstance(inp, SegmentVideoInput)
    COMPUTED["keyframes"] += 1
    cv2.setRNGSeed(RNG_SEED)
    wanted = set(starts)
    steps = set(range(0, max(starts) + 1, stride)) | wanted
    indices = sorted(steps)
    report = _reporter(ctx, "video_segmentation: keyframes", len(indices))
    keep: dict[str, Any] = {}
    noted = len(ctx.notes)
    with _frames(ctx.store, inp.video, 0, max(starts) + 1) as frames:
        picked = (frame for index, frame in enumerate(frames) if index in steps)  # decoded, not tracked
        if spec.backend == "sam":
            from .real.video_segmentation import masks_from_region

            masks = masks_from_region(ctx, inp, picked, report)
        else:
            first = next(picked)
            ctx.progress(0.0, "video_segmentation: finding the object on the first frame")
            first_mask = object_mask(first, inp.command, inp.region, ctx.store)
            masks = track(chain([first], picked), first_mask, report)
        for index, mask in zip(indices, masks, strict=False):
            if index in wanted:
                keep[str(index)] = ctx.store.put_mask(mask).model_dump(mode="json")
    if len(keep) != len(wanted):
        raise InvalidInput(f"the video ends before frame {max(starts)}", field="video")
    ref = ctx.store.put_json({**keep, "notes": ctx.notes[noted:]})
    ctx.store.put_named(key, ref)
    return ref


def _box(mask: np.ndarray) -> list[int] | None:
    from .embedded.video_segmentation import _box

    return _box(mask)


def segment_video_chunk(spec: JobSpec, start: int, stop: int, start_mask: ArtifactRef, ctx: ToolContext) -> ArtifactRef:
    """Track frames [start, stop) from `start_mask`; the result is a JSON {masks: ref, boxes: [...], notes: [...]}."""
    from .embedded.video_segmentation import track

    key = chunk_key(spec, start, stop, op="track", params={"start_mask": start_mask.sha256, **_model_params(spec, ctx)})
    if (found := ctx.store.get_named(key)) is not None:
        ctx.progress(1.0, f"video_segmentation: frames {start}-{stop} already done")
        return found
    inp = job_input(spec, ctx.store)
    assert isinstance(inp, SegmentVideoInput)
    COMPUTED["track"] += 1
    cv2.setRNGSeed(RNG_SEED)
    ctx.progress(0.0, f"video_segmentation: computing frames {start}-{stop}")
    report = _reporter(ctx, f"video_segmentation: frames {start}-{stop}", stop - start)
    fps = ctx.store.video_info(inp.video).fps
    boxes: list[list[int] | None] = []
    noted = len(ctx.notes)
    with _frames(ctx.store, inp.video, start, stop) as frames, ctx.store.video_writer(fps, kind="masks") as writer:
        if spec.backend == "sam":
            from .real.video_segmentation import track_masks

            masks = track_masks(ctx, frames, ctx.store.get_mask(start_mask), inp.signal, report)
        else:
            masks = track(frames, ctx.store.get_mask(start_mask), report)
        for mask in masks:
            writer.write(mask)
            boxes.append(_box(mask))
    if writer.frames != stop - start:
        raise InvalidInput(f"the video ends at frame {start + writer.frames}, before {stop}", field="video")
    ref = ctx.store.put_json({"masks": writer.ref.model_dump(mode="json"), "boxes": boxes,
                              "notes": ctx.notes[noted:]})
    ctx.store.put_named(key, ref)
    return ref


# -- planning, running, merging --------------------------------------------------------------------


def plan_chunks(spec: JobSpec, ctx: ToolContext, chunk: int) -> ChunkPlan:
    """Check the input, split the frames, and for E run the keyframe pass (the serial part)."""
    started = time.time()
    inp = job_input(spec, ctx.store)
    for ref in input_refs(inp):
        ctx.store.path(ref)  # ArtifactNotFound before any chunk starts
    if not isinstance(inp, EditVideoInput | SegmentVideoInput):
        raise InvalidInput(f"{spec.module} jobs are not split into chunks", field="module",
                           fix=f"split only {', '.join(CHUNKED_MODULES)}")
    frames = _frame_count(ctx.store, inp.video)
    if isinstance(inp, EditVideoInput) and inp.masks is not None and _frame_count(ctx.store, inp.masks) != frames:
        raise InvalidInput(f"the masks have {_frame_count(ctx.store, inp.masks)} frames but the video has {frames}",
                           field="masks", fix="use per-frame masks made from this video (video_segmentation)")
    ranges = chunk_ranges(frames, chunk)
    fps = ctx.store.video_info(inp.video).fps
    if isinstance(inp, EditVideoInput):
        return ChunkPlan(kind="video", fps=fps, frames=frames, ranges=ranges, start_masks=[None] * len(ranges),
                         started=started)
    starts = [start for start, _ in ranges]
    doc = ctx.store.get_json(track_keyframes(spec, starts, ctx, keyframe_stride(chunk)))
    masks = [ArtifactRef.model_validate(doc[str(start)]) for start in starts]
    return ChunkPlan(kind="masks", fps=fps, frames=frames, ranges=ranges, start_masks=masks, started=started,
                     notes=doc.get("notes", []))


def run_chunk(spec: JobSpec, start: int, stop: int, start_mask: ArtifactRef | None, ctx: ToolContext) -> ArtifactRef:
    """One chunk of either kind (what the `vitron.video_chunk` task runs)."""
    if start_mask is None:
        return edit_video_chunk(spec, start, stop, ctx)
    return segment_video_chunk(spec, start, stop, start_mask, ctx)


def merge_chunks(kind: Literal["video", "masks"], chunk_refs: list[ArtifactRef],
                 ctx: ToolContext) -> tuple[dict[str, ArtifactRef], list[str]]:
    """Join the chunks into the job's artifacts, {"video"} or {"masks", "boxes"}, and what the chunks noted: their
    packets are copied, not decoded and encoded again, so the merge is quick and the chunks' work is the whole
    job's."""
    store = ctx.store
    ctx.progress(0.99, f"merging {len(chunk_refs)} chunks")
    if kind == "video":
        return {"video": store.concat_videos(chunk_refs)}, []
    parts = [store.get_json(ref) for ref in chunk_refs]
    masks = store.concat_videos([ArtifactRef.model_validate(part["masks"]) for part in parts])
    boxes = [box for part in parts for box in part["boxes"]]
    notes = [note for part in parts for note in part.get("notes", [])]
    return {"masks": masks, "boxes": store.put_json(boxes, kind="boxes")}, notes


def finish(spec: JobSpec, plan: ChunkPlan, chunk_refs: list[ArtifactRef], ctx: ToolContext) -> JobResult:
    """Merge the chunks and give the job's result: the same output contract as the unchunked tool."""
    merged, notes = merge_chunks(plan.kind, chunk_refs, ctx)
    out: SegmentVideoOutput | EditVideoOutput
    if plan.kind == "masks":
        out = SegmentVideoOutput(backend=spec.backend or "opencv", masks=merged["masks"], boxes=merged["boxes"])
    else:
        from .embedded.editing import parse_edit

        label = parse_edit(spec.input["command"], spec.input.get("area")).label
        out = EditVideoOutput(backend="opencv", video=merged["video"], operation=label)
    ctx.progress(1.0, f"{spec.module}: done in {len(chunk_refs)} chunks")
    return JobResult(job_id=spec.job_id, output=out.model_dump(mode="json", context={"store": ctx.store}),
                     seconds=time.time() - plan.started, backend=out.backend,
                     notes=list(dict.fromkeys([*plan.notes, *notes])))  # each said once, as `ToolContext.note` does


def run_chunked(spec: JobSpec, ctx: ToolContext, chunk: int = 30, *, workers: int = 2) -> JobResult:
    """Run a video job in chunks on `workers` threads here (on Celery workers, a job's chunks are a chord: a job
    with `chunk_frames` set, `tools.celery_app`)."""
    spec = prepare_job(pin_backend(spec, ctx), ctx)
    plan = plan_chunks(spec, ctx, chunk)
    lock, done = threading.Lock(), [0]

    def chunk_ctx(length: int) -> ToolContext:
        # Each chunk reports its own fraction; summed over chunks it becomes one rising fraction for the job.
        seen = [0.0]

        def progress(fraction: float, message: str) -> None:
            with lock:
                done[0] += round((fraction - seen[0]) * length)
                seen[0] = fraction
                ctx.progress(min(0.99, done[0] / max(1, plan.frames)), message)

        return ToolContext(ctx.store, ctx.settings, progress, ctx.models)

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="vitron-chunk") as pool:
        futures = [pool.submit(run_chunk, spec, start, stop, mask, chunk_ctx(stop - start))
                   for (start, stop), mask in zip(plan.ranges, plan.start_masks, strict=True)]
        try:
            refs = [future.result() for future in futures]
        except BaseException:
            for future in futures:
                future.cancel()
            raise
    return finish(spec, plan, refs, ctx)

