"""The one job function every executor calls: a `JobSpec` in, a `JobResult` out, pure given the store."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ValidationError

from memory import ArtifactStore
from schemas import JobResult, JobSpec

from .base import ToolContext, VisionTool, invalid_input_from
from .registry import get_tool


def job_spec(tool_name: str, data: BaseModel | dict[str, Any], store: ArtifactStore, *, backend: str | None = None,
             session_id: str | None = None, dry_run: bool = False) -> JobSpec:
    """The job for one tool call. Validates `data` here, so bad input fails before anything is queued;
    tensors (the signal embedding) are written to `store` and travel as refs."""
    tool = get_tool(tool_name)
    inp = data if isinstance(data, tool.input_model) else _validate(tool, data, store)
    return JobSpec(module=tool.name, backend=backend, input=inp.model_dump(mode="json", context={"store": store}),
                   queue=tool.queue, session_id=session_id, dry_run=dry_run)


Splitter = Callable[[JobSpec, int], JobResult]
"""Runs a long video job in chunks of the given number of frames (the Celery task passes one)."""


def run_job(spec: JobSpec, ctx: ToolContext, split: Splitter | None = None) -> JobResult:
    """Run the spec's tool on its input; the output JSON holds refs into `ctx.store`.

    A dry run (`spec.dry_run`) only checks the input, its artifacts and the backend, where the job runs.

    With `split`, a video job longer than one chunk (`spec.chunk_frames`, else VITRON_CHUNK_FRAMES) goes to it
    instead, so several workers share the video (`tools.chunks`)."""
    tool = get_tool(spec.module)
    inp = _validate(tool, spec.input, ctx.store)
    if spec.dry_run:
        started = time.perf_counter()
        backend, _ = tool.check(inp, ctx, backend=spec.backend)
        return JobResult(job_id=spec.job_id, output={}, seconds=time.perf_counter() - started, backend=backend)
    if split is not None:
        from .chunks import chunk_frames_for, pin_backend  # only workers split, and only video jobs

        chunk = chunk_frames_for(spec, inp, ctx)
        if chunk:
            return split(pin_backend(spec, ctx), chunk)
    started = time.perf_counter()
    out = tool.run(inp, ctx, backend=spec.backend)
    return JobResult(job_id=spec.job_id, output=out.model_dump(mode="json", context={"store": ctx.store}),
                     seconds=time.perf_counter() - started, backend=out.backend)


def job_input(spec: JobSpec, store: ArtifactStore) -> BaseModel:
    """The spec's tool input, validated (tensor refs loaded from `store`)."""
    return _validate(get_tool(spec.module), spec.input, store)


def _validate(tool: VisionTool, data: BaseModel | dict[str, Any], store: ArtifactStore) -> BaseModel:
    if isinstance(data, BaseModel):
        data = data.model_dump(mode="json", context={"store": store})
    try:
        # The store in the context loads tensor refs back into arrays.
        return tool.input_model.model_validate(data, context={"store": store})
    except ValidationError as exc:
        raise invalid_input_from(exc, tool.name) from None
