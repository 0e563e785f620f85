"""The one job function every executor calls: a `JobSpec` in, a `JobResult` out, pure given the store."""

from __future__ import annotations

import dataclasses
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
    tensors (the signal embedding) are written to `store` and travel as refs. (A compiled plan's steps were
    checked when it was compiled: `workflows` builds their specs from the JSON without checking again.)"""
    tool = get_tool(tool_name)
    inp = data if isinstance(data, tool.input_model) else _validate(tool, data, store)
    return JobSpec(module=tool.name, backend=backend, input=inp.model_dump(mode="json", context={"store": store}),
                   queue=tool.queue, session_id=session_id, dry_run=dry_run)


Splitter = Callable[[JobSpec, BaseModel, ToolContext], JobResult | None]
"""Given a job and its validated input, runs it in parts elsewhere and gives its result, or None to run it whole
(the Celery task passes one that splits long videos into chunks)."""


def run_job(spec: JobSpec, ctx: ToolContext, split: Splitter | None = None) -> JobResult:
    """Run the spec's tool on its input; the output JSON holds refs into `ctx.store`.

    A dry run (`spec.dry_run`) only checks the input, its artifacts and the backend, where the job runs.
    `split` may take the job over (a long video shared by several workers, `tools.chunks`)."""
    tool = get_tool(spec.module)
    inp = _validate(tool, spec.input, ctx.store)
    ctx = job_context(spec, ctx)
    if spec.dry_run:
        started = time.perf_counter()
        backend, _ = tool.check(inp, ctx, backend=spec.backend)
        return JobResult(job_id=spec.job_id, output={}, seconds=time.perf_counter() - started, backend=backend)
    if split is not None:
        spec, inp = _prepared(tool, spec, inp, ctx)  # before the split: each chunk reads the spec's input
        if (result := split(spec, inp, ctx)) is not None:
            return result
    started, noted = time.perf_counter(), len(ctx.notes)
    out = tool.run(inp, ctx, backend=spec.backend)
    return JobResult(job_id=spec.job_id, output=out.model_dump(mode="json", context={"store": ctx.store}),
                     seconds=time.perf_counter() - started, backend=out.backend, notes=ctx.notes[noted:])


def prepare_job(spec: JobSpec, ctx: ToolContext) -> JobSpec:
    """The spec with its input as every backend takes it (`VisionTool.prepare`: a region drawn on a later frame of a
    video moved to the first), for a job split into chunks that each read the spec."""
    tool = get_tool(spec.module)
    return _prepared(tool, spec, _validate(tool, spec.input, ctx.store), job_context(spec, ctx))[0]


def _prepared(tool: VisionTool, spec: JobSpec, inp: BaseModel, ctx: ToolContext) -> tuple[JobSpec, BaseModel]:
    ready = tool.prepare(inp, ctx, spec.backend)
    if ready is inp:
        return spec, inp
    return spec.model_copy(update={"input": ready.model_dump(mode="json", context={"store": ctx.store})}), ready


def job_context(spec: JobSpec, ctx: ToolContext) -> ToolContext:
    """The context a job runs in: the job's own backend options over the models file's."""
    if not spec.options:
        return ctx
    return dataclasses.replace(ctx, models_file=ctx.models.with_options(spec.module, spec.options))


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
