"""The use cases the skins share: what `vitron …` and the HTTP server both call, so neither holds logic of its own.

Each function takes settings (default: from the environment) and returns plain data (dicts, lists, typed
records); printing and HTTP shapes are the skins' business.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from memory import ArtifactEntry, ArtifactStore, SessionMemory, StepRecord
from schemas import BackendUnavailable, ModelsFile, Region, ToolOutput, VitronError, VitronSettings

CHECKS = {"cpu": "image_editing", "gpu": "image_generation"}  # one tool of each queue, for `check_queues`


# -- tools and models ------------------------------------------------------------------------------


def tool_rows(settings: VitronSettings | None = None) -> list[dict[str, Any]]:
    """Every specialist (letter, backends, LLM-facing input schema), then every saved workflow (its inputs and
    outputs, or why it does not compile)."""
    from tools import all_tools
    from workflows import saved_workflows

    from .toolkit import module_specs

    # What a calling model sends (`agent.langchain_tools`, `vitron mcp`): artifacts by alias, regions as boxes.
    schemas = {spec.name: spec.input_schema() for spec in module_specs()}
    rows = [{"kind": "tool", "code": t.code, "module": t.name, "title": t.title, "backends": list(t.backends),
             "heavy": t.heavy, "description": t.description, "input_schema": schemas[t.name]} for t in all_tools()]
    return rows + [{"kind": "workflow", "code": None, "module": name, "path": str(path), **_workflow_row(path)}
                   for name, path in saved_workflows(settings).items()]


def _workflow_row(path: Path) -> dict[str, Any]:
    from workflows import Workflow

    try:
        with Workflow.load(path) as flow:
            described = flow.describe()
    except VitronError as exc:
        return {"error": exc.message}
    return {"description": described["description"], "inputs": described["inputs"], "outputs": described["outputs"]}


def model_rows(settings: VitronSettings | None = None) -> tuple[str, list[dict[str, Any]]]:
    """(the models file's path, one row per module: backend, source, weights by role with their state, ready)."""
    from tools import all_tools

    settings = settings or VitronSettings()
    models = ModelsFile.load(settings.models_path)
    rows = []
    for tool in all_tools():
        spec = models.spec(tool.name)
        row: dict[str, Any] = {"code": tool.code, "module": tool.name, "backends": list(tool.backends)}
        if spec is None:
            try:
                embedded: str | None = tool.backend_name(None, models)
            except BackendUnavailable:
                embedded = None
            row.update(backend=embedded, source="embedded" if embedded else "none", weights={}, ready=bool(embedded))
            if not embedded:
                row["problem"] = f"no embedded backend: configure one of {list(tool.backends)} in the models file"
        else:
            weights = {role: {"path": str(path), "exists": path.exists()} for role, path in spec.weights.items()}
            row.update(backend=spec.backend, source="models file", weights=weights, variant=spec.variant,
                       device=spec.device, dtype=spec.dtype, cpu_offload=spec.cpu_offload)
            problems = [f"{role}: {w['path']} does not exist" for role, w in weights.items() if not w["exists"]]
            if spec.backend not in tool.backends:
                problems.insert(0, f"unknown backend {spec.backend!r}: use one of {list(tool.backends)}")
            if not weights:
                problems.append("no weights given")
            row["ready"] = not problems
            if problems:
                row["problem"] = "; ".join(problems)
        rows.append(row)
    return str(models.path or settings.models_path), rows


def invoke_tool(module: str, given: Mapping[str, Any], *, backend: str | None = None, weights: Path | None = None,
                settings: VitronSettings | None = None,
                progress: Callable[[float, str], None] | None = None) -> tuple[ArtifactStore, ToolOutput]:
    """Run one tool on files: `given` maps the tool's fields to values, where `image`, `video` and `mask` are file
    paths and `scribble` a mask file for the region. `weights` overrides the models file's for this call."""
    import dataclasses

    from schemas import InvalidInput, ScribbleRegion
    from tools import ToolContext, get_tool

    tool = get_tool(module)
    ctx = ToolContext.from_settings(settings, progress=progress)
    if weights is not None:  # this call only: the models file's entry for the module, overridden
        ctx = dataclasses.replace(ctx, models_file=ctx.models.with_override(tool.name, backend, weights))
    store = ctx.store
    importers = {"image": store.import_image, "video": store.import_video, "mask": store.import_mask}
    data: dict[str, Any] = {}
    fields = tool.input_model.model_fields
    for name, value in given.items():
        if value is None:
            continue
        if name == "scribble":
            name, value = "region", ScribbleRegion(mask=store.import_mask(value, field="scribble"))
        elif name in importers:
            value = importers[name](value)
        if name not in fields:
            takes = ", ".join(f for f in fields if f != "signal")
            raise InvalidInput(f"{tool.name} takes no {name}", field=name, fix=f"it takes {takes}")
        data[name] = value
    return store, tool.run(data, ctx, backend=backend)


# -- plans -----------------------------------------------------------------------------------------


def read_region(store: ArtifactStore, *, box: str | None = None, points: str | None = None,
                scribble: Path | None = None) -> Region | None:
    """The region a user gave as text or a file: a box "x1,y1,x2,y2", points "x,y,label;…", or a scribble (a mask
    image painted on the object, stored first); at most one of them."""
    from schemas import InvalidInput, ScribbleRegion, parse_box, parse_points

    if len([r for r in (box, points, scribble) if r is not None]) > 1:
        raise InvalidInput("more than one region was given", field="region", fix="give one: a box, points or a "
                           "scribble")
    if scribble is not None:
        return ScribbleRegion(mask=store.import_mask(scribble, field="scribble"))
    return parse_box(box) if box else parse_points(points) if points else None


def plan_request(text: str, *, image: Path | None = None, video: Path | None = None, region: Region | None = None,
                 planner: str | None = None, session: str | None = None,
                 settings: VitronSettings | None = None) -> dict[str, Any]:
    """The plan a planner makes for a request, without running anything: its reply and, per step, the module, the
    instruction, the inputs under the fields they fill (`@1` from a segmentation is the mask) and the region; its
    session operation (undo, show), and `confirm` when the reply asks whether to run the steps.
    With `session` (an id or a prefix), planned as a next turn of that session: its history and artifacts."""
    from memory import History
    from memory.sessions import ALIAS_PREFIXES
    from workflows import saved_workflows

    from .api import make_planner
    from .planners.base import PlanRequest

    settings = settings or VitronSettings()
    store = ArtifactStore.from_settings(settings)
    history, table = History("", (), 0, 0), []
    if session is not None:
        with SessionMemory.from_settings(settings) as memory:
            found = memory.resolve_session_id(session)
            history, table = memory.history(found), memory.artifact_table(found)
    taken = {entry.alias for entry in table}

    def upload_alias(kind: str) -> str:  # the alias the upload would get as the session's next artifact
        number = 1
        while f"{ALIAS_PREFIXES[kind]}{number}" in taken:
            number += 1
        return f"{ALIAS_PREFIXES[kind]}{number}"

    inputs = {}
    if image is not None:
        inputs[upload_alias("image")] = store.import_image(image)
    if video is not None:
        inputs[upload_alias("video")] = store.import_video(video)
    request = PlanRequest(text=text, history=history, artifacts=tuple(table), inputs=inputs, region=region,
                          store=store, workflows=tuple(saved_workflows(settings)))
    plan = make_planner(planner or settings.planner, settings).plan(request)
    modules = [s.invocation.module for s in plan.steps]
    steps = [{"module": s.invocation.module, "instruction": s.invocation.command,
              "inputs": _named_inputs(s.invocation, modules),
              "region": s.invocation.region.model_dump(mode="json") if s.invocation.region else None}
             for s in plan.steps]
    if session is not None:  # what the agent would fill in: the inputs a plan leaves out, from the session
        uploads = [ArtifactEntry(ref.model_copy(update={"alias": alias}), "upload") for alias, ref in inputs.items()]
        _fill_inputs(steps, [s.invocation for s in plan.steps], (*table, *uploads))
    return {"reply": plan.reply, "steps": steps, "confirm": plan.confirm,
            "operation": plan.operation.model_dump() if plan.operation else None}


def _fill_inputs(steps: list[dict[str, Any]], invocations: list[Any], table: tuple[Any, ...]) -> None:
    """Each step's inputs as the agent's resolver completes them (`@alias`, or `@N` for step N's output); where
    two artifacts fit equally, the question the agent would ask instead."""
    from schemas import StepOutput
    from workflows.resolve import Ambiguous, resolve_plan_inputs

    try:
        resolved = resolve_plan_inputs(invocations, table)
    except Ambiguous as question:
        steps[0]["question"] = question.question
        return
    except VitronError:
        return  # a plan the agent refuses: shown as written
    for step, found in zip(steps, resolved, strict=True):
        step["inputs"] = {field: f"@{v.step}" if isinstance(v, StepOutput) else f"@{v.alias}"
                          for field, v in found.values.items()}


def score_planner(path: Path, *, planner: str | None = None, settings: VitronSettings | None = None,
                  progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """A planner's figures on a file of hand-written conversations (`agent.planners.conversations`)."""
    from .api import make_planner
    from .planners.conversations import load_conversations, score_conversations

    settings = settings or VitronSettings()
    name = planner or settings.planner
    conversations = load_conversations(path)
    return {"planner": name, **score_conversations(make_planner(name, settings), conversations, progress)}


def _named_inputs(invocation: Any, modules: list[str]) -> dict[str, str]:
    """A tool step's inputs under the fields they will fill; a workflow call's as written."""
    from memory.sessions import ALIAS_PREFIXES
    from schemas import UnknownModule, step_number
    from workflows.resolve import output_kinds, tool_callee

    written = {key: value if isinstance(value, str) else "@" + (value.alias or value.sha256)
               for key, value in invocation.inputs.items()}
    try:
        fields = list(tool_callee(invocation.module).inputs)
    except UnknownModule:
        return written
    kinds_of_alias = {prefix: kind for kind, prefix in ALIAS_PREFIXES.items()}
    named: dict[str, str] = {}
    for key, text in written.items():
        if key in fields:
            named[key] = text
            continue
        if (number := step_number(text)) is not None and number <= len(modules):
            try:
                kinds = output_kinds(modules[number - 1])
            except UnknownModule:
                kinds = ()
        else:
            kinds = tuple(kind for prefix, kind in sorted(kinds_of_alias.items(), key=lambda p: -len(p[0]))
                          if text[1:].startswith(prefix))[:1]
        field = next((f for f in fields if f in kinds and f not in named), key)
        named[field] = text
    return named


# -- jobs ------------------------------------------------------------------------------------------


def list_jobs(*, session: str | None = None, include_finished: bool = False,
              settings: VitronSettings | None = None) -> list[dict[str, Any]]:
    """Jobs that are queued or running (with `include_finished`, every job), oldest first."""
    from memory.sessions import ANY_OWNER

    with SessionMemory.from_settings(settings) as memory:  # every owner's: `vitron jobs` is the operator's
        ids = ([memory.resolve_session_id(session, owner=ANY_OWNER)] if session
               else [s.id for s in memory.list_sessions(owner=ANY_OWNER, limit=1000)])
        steps = [st for sid in ids for st in memory.steps(sid) if st.job_id]
    if not include_finished:
        steps = [st for st in steps if st.status in ("queued", "running")]
    steps.sort(key=lambda st: st.created_at)
    return [{"job_id": st.job_id, "session": st.session_id, "step": st.id, "module": st.module,
             "status": st.status, "progress": st.progress, "message": st.message} for st in steps]


def cancel_job_anywhere(job_id: str, settings: VitronSettings | None = None) -> StepRecord:
    """Cancel a job from any process: the step is marked (its agent sees the mark at the next progress report) and,
    with a broker configured, the workers are told too."""
    from .api import cancel_job

    settings = settings or VitronSettings()
    executor = None
    if settings.broker_url:
        from tools.executors.celery import celery_executor

        executor = celery_executor(settings)
    with SessionMemory.from_settings(settings) as memory:
        return cancel_job(memory, job_id, executor)


def worker_rows(timeout: float = 1.0, settings: VitronSettings | None = None) -> list[dict[str, Any]]:
    """The workers that answer within `timeout`: queues, pool processes, jobs done, model cache counters."""
    from tools.celery_app import make_celery

    settings = settings or VitronSettings()
    if not settings.broker_url:
        raise BackendUnavailable("no job broker is configured, so there are no workers to ask",
                                 field="VITRON_BROKER_URL", fix="set VITRON_BROKER_URL to the workers' broker")
    inspect = make_celery(settings).control.inspect(timeout=timeout)
    stats, queues = inspect.stats() or {}, inspect.active_queues() or {}
    return [{"worker": name, "queues": sorted(q["name"] for q in queues.get(name, [])),
             "processes": info.get("pool", {}).get("processes", []),
             "jobs_done": sum(info.get("total", {}).values()),
             "models": info.get("models")} for name, info in sorted(stats.items())]


def check_queues(timeout: float = 10.0, settings: VitronSettings | None = None) -> list[dict[str, Any]]:
    """A dry run on each queue: a worker takes it, finds this machine's artifact in its store and imports the
    backend it would use, without running the tool (in-process when no broker is set). One row per queue."""
    import numpy as np

    from tools.executors import make_executor
    from tools.jobs import job_spec

    settings = settings or VitronSettings()
    store = ArtifactStore.from_settings(settings)
    # New content, written here and removed after: the worker finds it only if it sees this very store.
    image = store.put_image(np.random.default_rng().integers(0, 256, (8, 8, 3), np.uint8))
    inputs = {"image_editing": {"image": image, "command": "make it black and white"},
              "image_generation": {"command": "a check"}}
    executor = make_executor(settings, store)
    rows = []
    try:
        handles = {queue: executor.submit(job_spec(module, inputs[module], store, dry_run=True))
                   for queue, module in CHECKS.items()}
        for queue, handle in handles.items():
            row: dict[str, Any] = {"queue": queue, "module": CHECKS[queue], "ok": False, "backend": None,
                                   "problem": None, "no_worker": False}
            try:
                row.update(ok=True, backend=handle.result(timeout=timeout).backend)
            except TimeoutError:
                handle.cancel()  # so it never runs later, on a worker that starts after this check
                row.update(problem=f"no worker took the job within {timeout:g} s", no_worker=True)
            except VitronError as exc:
                row["problem"] = exc.message
            rows.append(row)
    finally:
        executor.close()
        store.delete(image)
    return rows
