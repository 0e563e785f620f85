"""Threads and runs, after LangGraph's Agent Protocol, so its SDK and similar clients fit: a thread is a session; a
run is one turn, waited for, run in the background, or streamed as server-sent events (`Last-Event-ID` resumes)."""

from __future__ import annotations

import json
import re
from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sse_starlette.sse import EventSourceResponse, ServerSentEvent

from schemas import InvalidInput, Region, ScribbleRegion, StepNotFound

from .context import context, owner
from .runs import LiveRun, MultitaskStrategy, RunConflict, TurnRequest

router = APIRouter()

KEEP_ALIVE_S = 15  # a comment line this often while a long step runs, so proxies keep the stream open


class ThreadCreate(BaseModel):
    model_config = ConfigDict(extra="ignore")

    metadata: dict[str, Any] = Field(default_factory=dict)


class ThreadUpdate(BaseModel):
    model_config = ConfigDict(extra="ignore")

    metadata: dict[str, Any] = Field(default_factory=dict)


class ThreadSearch(BaseModel):
    model_config = ConfigDict(extra="ignore")

    limit: int = Field(default=20, ge=1, le=1000)
    offset: int = Field(default=0, ge=0)


class RunInput(BaseModel):
    """A new turn: its text and what it works on (artifacts by sha256 from `POST /artifacts`, or the thread's
    aliases `@img1`), or LangGraph-style messages whose last user message is the text."""

    model_config = ConfigDict(extra="ignore")

    text: str | None = None
    image: str | None = None
    video: str | None = None
    region: Region | None = None
    messages: list[dict[str, Any]] | None = None


class RunCreate(BaseModel):
    model_config = ConfigDict(extra="ignore")

    assistant_id: str | None = None
    input: RunInput | None = None
    command: dict[str, Any] | None = None  # {"resume": {"action": "approve" | "deny" | "edit", …}}
    multitask_strategy: Literal["reject", "enqueue"] = "reject"
    metadata: dict[str, Any] = Field(default_factory=dict)


def thread_json(request: Request, thread_id: str, owner_name: str | None) -> dict[str, Any]:
    ctx = context(request)
    info = ctx.thread(thread_id, owner_name)
    active = ctx.manager.active(thread_id)
    session = ctx.agent.session(thread_id, owner=owner_name)
    status = "busy" if active else "interrupted" if session.unfinished else "idle"
    return {"thread_id": info.id, "created_at": info.created_at.isoformat(), "updated_at": info.updated_at.isoformat(),
            "metadata": {"title": info.title, **({"owner": info.owner} if info.owner else {})}, "status": status,
            "turns": info.turns, "artifacts": info.artifacts}


@router.post("/threads")
def create_thread(request: Request, body: ThreadCreate | None = None,
                  owner_name: str | None = Depends(owner)) -> dict[str, Any]:
    body = body or ThreadCreate()
    title = str(body.metadata.get("title", ""))[:500]
    info = context(request).agent.memory.create_session(title, owner=owner_name)
    return thread_json(request, info.id, owner_name)


@router.get("/threads")
def list_threads(request: Request, limit: int = Query(20, ge=1, le=1000), offset: int = Query(0, ge=0),
                 owner_name: str | None = Depends(owner)) -> list[dict[str, Any]]:
    sessions = context(request).agent.memory.list_sessions(owner=owner_name, limit=limit, offset=offset)
    return [thread_json(request, s.id, owner_name) for s in sessions if s.owner == owner_name]


@router.post("/threads/search")
def search_threads(request: Request, body: ThreadSearch | None = None,
                   owner_name: str | None = Depends(owner)) -> list[dict[str, Any]]:
    body = body or ThreadSearch()
    return list_threads(request, body.limit, body.offset, owner_name)


@router.get("/threads/{thread_id}")
def get_thread(request: Request, thread_id: str, owner_name: str | None = Depends(owner)) -> dict[str, Any]:
    return thread_json(request, thread_id, owner_name)


@router.patch("/threads/{thread_id}")
def update_thread(request: Request, thread_id: str, body: ThreadUpdate,
                  owner_name: str | None = Depends(owner)) -> dict[str, Any]:
    """Rename a thread (`metadata.title`)."""
    ctx = context(request)
    ctx.thread(thread_id, owner_name)
    if "title" in body.metadata:
        ctx.agent.memory.rename_session(thread_id, str(body.metadata["title"])[:500])
    return thread_json(request, thread_id, owner_name)


@router.delete("/threads/{thread_id}")
def delete_thread(request: Request, thread_id: str, owner_name: str | None = Depends(owner)) -> dict[str, Any]:
    ctx = context(request)
    ctx.thread(thread_id, owner_name)
    if ctx.manager.active(thread_id):
        raise RunConflict(f"thread {thread_id[:8]} has a run in progress", field="thread_id",
                          fix="cancel the run first (POST /threads/{thread_id}/runs/{run_id}/cancel)")
    deleted = ctx.agent.memory.delete_session(thread_id)
    return {"thread_id": thread_id, "turns": deleted.turns, "steps": deleted.steps, "artifacts": deleted.artifacts}


@router.api_route("/threads/{thread_id}/history", methods=["GET", "POST"])
def thread_history(request: Request, thread_id: str, owner_name: str | None = Depends(owner)) -> dict[str, Any]:
    """The thread's turns, steps, and artifact table with lineage and signed links."""
    ctx = context(request)
    ctx.thread(thread_id, owner_name)
    memory = ctx.agent.memory
    table = memory.artifact_table(thread_id)
    return {"thread_id": thread_id, "turns": [t.to_dict() for t in memory.turns(thread_id)],
            "steps": [s.to_dict() for s in memory.steps(thread_id)],
            "artifacts": [{**a.to_dict(), "lineage": a.describe(), **({"url": ctx.url(a.ref, str(request.base_url))}
                                                                    if ctx.store.exists(a.ref) else {})}
                          for a in table],
            "runs": [{"run_id": r.id, "status": r.status, "created_at": r.created_at.isoformat()}
                     for r in ctx.runs.of_session(thread_id)]}


# -- runs --------------------------------------------------------------------------------------------


def _turn(request: Request, thread_id: str, owner_name: str | None, body: RunCreate) -> TurnRequest:
    ctx = context(request)
    if body.command and body.command.get("resume") is not None:
        resume = body.command["resume"]
        if not isinstance(resume, dict) or resume.get("action") not in ("approve", "deny", "edit"):
            raise InvalidInput("command.resume must be {action: approve | deny | edit, invocations: […]}",
                               field="command.resume", fix='send {"resume": {"action": "approve"}}')
        return TurnRequest(resume=resume)
    given = body.input or RunInput()
    text = given.text
    if text is None and given.messages:
        text = _last_user_text(given.messages)
    if not text:
        raise InvalidInput("a run needs the turn's text", field="input.text",
                           fix='send {"input": {"text": "segment the cup"}}, or messages, or command.resume')
    image = given.image and ctx.artifact(owner_name, given.image, "input.image", "image", thread_id)
    video = given.video and ctx.artifact(owner_name, given.video, "input.video", "video", thread_id)
    region = given.region
    if isinstance(region, ScribbleRegion):  # its mask must be one the owner uploaded, like the image
        mask = ctx.artifact(owner_name, region.mask.sha256, "input.region.mask", "mask", thread_id)
        region = region.model_copy(update={"mask": mask})
    return TurnRequest(text=text, image=image or None, video=video or None, region=region)


def _last_user_text(messages: list[dict[str, Any]]) -> str | None:
    """The text of the last user message: a string, or the text parts of a list of parts."""
    user = [m for m in messages if m.get("role", m.get("type")) in ("user", "human")]
    content = user[-1].get("content") if user else None
    if content is None or isinstance(content, str):
        return content or None
    if not isinstance(content, list):
        raise InvalidInput("a message's content must be text or a list of parts", field="input.messages",
                           fix='send {"role": "user", "content": "segment the cup"}')
    return " ".join(p["text"] for p in content
                    if isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str)) or None


def _start(request: Request, thread_id: str, owner_name: str | None, body: RunCreate) -> LiveRun:
    ctx = context(request)
    ctx.thread(thread_id, owner_name)
    turn = _turn(request, thread_id, owner_name, body)
    strategy: MultitaskStrategy = body.multitask_strategy
    return ctx.manager.start(thread_id, owner_name, turn, strategy=strategy,
                             raw=body.model_dump(mode="json", exclude_none=True),
                             agent=ctx.agent_for(body.assistant_id, "assistant_id"), base_url=str(request.base_url))


def run_json(run: LiveRun) -> dict[str, Any]:
    return {"run_id": run.id, "thread_id": run.thread_id, "status": run.status,
            **({"reply": run.reply} if run.reply else {})}


def _run(request: Request, thread_id: str, run_id: str, owner_name: str | None) -> LiveRun:
    ctx = context(request)
    ctx.thread(thread_id, owner_name)
    run = ctx.manager.get(run_id) or ctx.manager.from_records(run_id)
    if run is None or run.thread_id != thread_id:
        raise StepNotFound(f"no run {run_id!r} in this thread", field="run_id", fix="use a run id this thread gave")
    return run


@router.post("/threads/{thread_id}/runs")
def create_run(request: Request, thread_id: str, body: RunCreate,
               owner_name: str | None = Depends(owner)) -> dict[str, Any]:
    """Start a run in the background: follow it with its stream, join it, or get it."""
    return run_json(_start(request, thread_id, owner_name, body))


@router.post("/threads/{thread_id}/runs/wait")
async def wait_run(request: Request, thread_id: str, body: RunCreate,
                   owner_name: str | None = Depends(owner)) -> dict[str, Any]:
    """Start a run and answer when it ends (or pauses for an approval)."""
    run = _start(request, thread_id, owner_name, body)
    await run.wait()
    return run_json(run)


@router.post("/threads/{thread_id}/runs/stream")
def stream_run(request: Request, thread_id: str, body: RunCreate,
               owner_name: str | None = Depends(owner)) -> EventSourceResponse:
    """Start a run and stream its events: metadata, plan, step_started, progress, step_finished, step_failed,
    step_skipped, approval, message, error, end. Each event's id is its number in the run."""
    run = _start(request, thread_id, owner_name, body)
    return _event_stream(run, 0, headers={"Content-Location": f"/threads/{thread_id}/runs/{run.id}"})


@router.get("/threads/{thread_id}/runs/{run_id}")
def get_run(request: Request, thread_id: str, run_id: str, owner_name: str | None = Depends(owner)) -> dict[str, Any]:
    return run_json(_run(request, thread_id, run_id, owner_name))


@router.get("/threads/{thread_id}/runs/{run_id}/stream")
def join_stream(request: Request, thread_id: str, run_id: str,
                owner_name: str | None = Depends(owner)) -> EventSourceResponse:
    """A run's events from the one after `Last-Event-ID` (all of them without it), then the live ones."""
    run = _run(request, thread_id, run_id, owner_name)
    last = request.headers.get("last-event-id", "0")
    if not re.fullmatch(r"[0-9]{1,9}", last):
        raise InvalidInput(f"Last-Event-ID {last!r} is not an event number", field="Last-Event-ID",
                           fix="send the id of the last event received")
    return _event_stream(run, int(last))


@router.get("/threads/{thread_id}/runs/{run_id}/join")
async def join_run(request: Request, thread_id: str, run_id: str,
                   owner_name: str | None = Depends(owner)) -> dict[str, Any]:
    run = _run(request, thread_id, run_id, owner_name)
    await run.wait()
    return run_json(run)


@router.post("/threads/{thread_id}/runs/{run_id}/cancel")
def cancel_run(request: Request, thread_id: str, run_id: str,
               owner_name: str | None = Depends(owner)) -> JSONResponse:
    run = _run(request, thread_id, run_id, owner_name)
    if not run.done.is_set():
        context(request).manager.cancel(run)
    return JSONResponse(run_json(run), status_code=202)


@router.post("/threads/{thread_id}/jobs/{job_id}/cancel")
def cancel_job(request: Request, thread_id: str, job_id: str,
               owner_name: str | None = Depends(owner)) -> JSONResponse:
    """Cancel one step of a running turn (a `step_started` event's `job_id`): it stops at its job's next progress
    report and the steps that need its output are skipped; the turn's other steps go on."""
    ctx = context(request)
    ctx.thread(thread_id, owner_name)
    step = ctx.agent.session(thread_id, owner=owner_name).cancel(job_id)
    return JSONResponse({"job_id": job_id, "position": step.position, "module": step.module, "status": step.status},
                        status_code=202)


def _event_stream(run: LiveRun, after: int, headers: dict[str, str] | None = None) -> EventSourceResponse:
    async def events() -> Any:
        async for seq, name, data in run.follow(after):
            yield ServerSentEvent(data=json.dumps(data), event=name, id=str(seq))

    return EventSourceResponse(events(), ping=KEEP_ALIVE_S, headers=headers)
