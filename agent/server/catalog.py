"""Tools and workflows over HTTP: the registry with each tool's schema, one tool run as a job, and workflows
validated, described, run (streamed) and run over many items. Artifacts go in by sha256 (from `POST /artifacts`)
and come out with signed links."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field
from sse_starlette.sse import EventSourceResponse, ServerSentEvent

from schemas import ARTIFACT_KINDS, ArtifactRef, InvalidInput, VitronError

from ..service import tool_rows
from .context import ServerContext, context, owner
from .runs import error_json

router = APIRouter()
log = logging.getLogger("vitron.server")


class ToolCall(BaseModel):
    model_config = ConfigDict(extra="ignore")

    input: dict[str, Any] = Field(default_factory=dict)
    backend: str | None = None


class WorkflowCall(BaseModel):
    model_config = ConfigDict(extra="ignore")

    workflow: dict[str, Any] | None = None  # a workflow document, or
    name: str | None = None  # a saved workflow's name
    inputs: dict[str, Any] = Field(default_factory=dict)
    items: list[dict[str, Any]] = Field(default_factory=list)  # for a batch
    cache: bool = True
    stream: bool = True
    parallel: int = Field(default=2, ge=1, le=16)
    restart: bool = False


def _rows(request: Request) -> list[dict[str, Any]]:
    # The server's own files stay on the server: a row names a workflow, not where it lies.
    return [{k: v for k, v in row.items() if k != "path"} for row in tool_rows(context(request).settings)]


@router.get("/tools")
def tools(request: Request, owner_name: str | None = Depends(owner)) -> list[dict[str, Any]]:
    """Every specialist with its LLM-facing input schema, then every saved workflow with its inputs and outputs."""
    return _rows(request)


@router.post("/tools/{module}/invoke")
async def invoke(request: Request, module: str, body: ToolCall,
                 owner_name: str | None = Depends(owner)) -> dict[str, Any]:
    """Run one tool as a job on the server's executor: artifact fields by sha256, the rest as the tool takes them."""
    from tools import get_tool
    from tools.jobs import job_spec

    ctx = context(request)
    tool = get_tool(module)
    data = {field: ctx.artifact(owner_name, value, f"input.{field}") if field in ("image", "mask", "video", "masks")
            else value for field, value in body.input.items()}
    spec = job_spec(tool.name, data, ctx.store, backend=body.backend)
    result = await asyncio.to_thread(lambda: ctx.agent.executor.submit(spec).result())
    output = tool.output_model.model_validate(result.output)
    for ref in output.artifacts():
        ctx.runs.add_upload(owner_name, ref)  # what the key's owner made, the key's owner may read
    fields = output.model_dump(mode="json", exclude={"backend"}, exclude_none=True)
    return {"module": tool.name, "backend": result.backend, "seconds": round(result.seconds, 4),
            "output": {name: ctx.describe(ArtifactRef.model_validate(value), request)
                       if isinstance(value, dict) and "sha256" in value else value for name, value in fields.items()}}


def _workflow(ctx: ServerContext, owner_name: str | None, body: WorkflowCall) -> Any:
    """The workflow a request gives: a document (whose literal artifacts the owner may read), or a saved one's name
    (never a path: the server's files are not the client's to name)."""
    from workflows import Runtime, Workflow, saved_workflows

    runtime = Runtime(ctx.settings, store=ctx.store, executor=ctx.agent.executor, database=ctx.agent.memory.db)
    if body.workflow is not None:
        _check_literals(ctx, owner_name, body.workflow, "workflow")
        return Workflow(body.workflow, runtime=runtime)
    if body.name:
        known = saved_workflows(ctx.settings)
        if body.name not in known:
            raise InvalidInput(f"no saved workflow {body.name[:40]!r}", field="name",
                               fix=f"use one of {', '.join(known) or 'none (save one first)'}")
        return Workflow.load(known[body.name], settings=ctx.settings, runtime=runtime)
    raise InvalidInput("give a workflow document or a saved workflow's name", field="workflow",
                       fix='send {"workflow": {...}} or {"name": "product_cutout"}')


def _check_literals(ctx: ServerContext, owner_name: str | None, value: Any, where: str) -> None:
    """Every artifact a document names by sha256 must be one the owner may read."""
    if isinstance(value, dict):
        if isinstance(value.get("sha256"), str):
            ctx.artifact(owner_name, value, where)
        for key, item in value.items():
            _check_literals(ctx, owner_name, item, f"{where}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check_literals(ctx, owner_name, item, f"{where}[{index}]")


def _inputs(ctx: ServerContext, flow: Any, owner_name: str | None, given: dict[str, Any], where: str) -> dict:
    specs = flow.validate().inputs
    return {name: ctx.artifact(owner_name, value, f"{where}.{name}")
            if name in specs and specs[name].type in ARTIFACT_KINDS else value for name, value in given.items()}


@router.get("/workflows")
def saved(request: Request, owner_name: str | None = Depends(owner)) -> list[dict[str, Any]]:
    """The saved workflows (and the examples), with their inputs and outputs."""
    return [row for row in _rows(request) if row["kind"] == "workflow"]


@router.post("/workflows/validate")
def validate(request: Request, body: WorkflowCall, owner_name: str | None = Depends(owner)) -> dict[str, Any]:
    """Compile a workflow: 400 naming the step and field on a mistake."""
    with _workflow(context(request), owner_name, body) as flow:
        compiled = flow.validate()
    return {"ok": True, "steps": [s.name for s in compiled.steps]}


@router.post("/workflows/describe")
def describe(request: Request, body: WorkflowCall, owner_name: str | None = Depends(owner)) -> dict[str, Any]:
    with _workflow(context(request), owner_name, body) as flow:
        return flow.describe()


@router.post("/workflows/run", response_model=None)
async def run(request: Request, body: WorkflowCall, owner_name: str | None = Depends(owner)) -> Any:
    """Run a workflow once: its events as server-sent events, the last one `end` with the outputs' signed links
    (`"stream": false`: one JSON answer)."""
    ctx = context(request)
    flow = _workflow(ctx, owner_name, body)
    inputs = _inputs(ctx, flow, owner_name, body.inputs, "inputs")

    def finish(result: Any) -> dict[str, Any]:
        outputs = {}
        for name, value in result.outputs.items():
            if isinstance(value, ArtifactRef):
                ctx.runs.add_upload(owner_name, value)
                outputs[name] = ctx.describe(value, request)
            else:
                outputs[name] = value
        return {"ok": result.ok, "outputs": outputs, "failures": result.failures}

    if not body.stream:
        result = await asyncio.to_thread(flow.run, inputs, cache=body.cache)
        return finish(result)
    started = flow.start(inputs, cache=body.cache)

    async def events() -> Any:
        queue: asyncio.Queue[Any] = asyncio.Queue()
        loop = asyncio.get_running_loop()

        def pump() -> None:
            try:
                for event in started.events():
                    loop.call_soon_threadsafe(queue.put_nowait, event)
            except Exception as exc:  # the run could not start (its inputs): the stream says so and ends
                if not isinstance(exc, VitronError):
                    log.exception("a workflow run failed")
                loop.call_soon_threadsafe(queue.put_nowait, {"event": "error", **error_json(exc)})
            finally:
                loop.call_soon_threadsafe(queue.put_nowait, None)

        loop.run_in_executor(None, pump)
        number = 0
        while (event := await queue.get()) is not None:
            number += 1
            name = event.pop("event")
            data = finish(started.result()) if name == "end" else event
            yield ServerSentEvent(data=json.dumps(data), event=name, id=str(number))

    return EventSourceResponse(events(), ping=15)


@router.post("/workflows/batch")
async def batch(request: Request, body: WorkflowCall, owner_name: str | None = Depends(owner)) -> dict[str, Any]:
    """Run a workflow over `items` (each a mapping of inputs); items done before (the same batch) are not redone."""
    ctx = context(request)
    flow = _workflow(ctx, owner_name, body)
    items = [_inputs(ctx, flow, owner_name, item, f"items[{i}]") for i, item in enumerate(body.items)]
    result = await asyncio.to_thread(flow.batch, items, parallel=body.parallel, restart=body.restart,
                                     cache=body.cache)
    return {"batch_id": result.batch_id, "ran": result.ran, "succeeded": result.succeeded,
            "items": [_item(request, ctx, owner_name, item.to_dict()) for item in result.items]}


def _item(request: Request, ctx: ServerContext, owner_name: str | None, item: dict[str, Any]) -> dict[str, Any]:
    """A batch item as the API shows it: its outputs by signed link, never a path on the server."""
    outputs = {}
    for name, value in (item.get("outputs") or {}).items():
        if value.get("sha256"):
            ref = ArtifactRef(sha256=value["sha256"], kind=value["kind"], media_type=value["media_type"])
            ctx.runs.add_upload(owner_name, ref)
            outputs[name] = ctx.describe(ref, request)
        else:
            outputs[name] = value
    return {**item, "outputs": outputs}
