"""Runs: a thread's turns asked for over HTTP, run in the background, their events numbered, kept in SQL and
streamed to whoever listens, and again from any event on to a client that reconnects (`Last-Event-ID`).

One run of a thread runs at a time: a second one is refused (`multitask_strategy="reject"`) or waits its turn
(`"enqueue"`, at most `MAX_QUEUED` per thread). A run ends `success`, `error`, `cancelled`, or `interrupted` when the
turn waits for an approval (a later run with `command.resume` answers it). The run's own thread does no SQL: a saver
thread records the run, its events every `FLUSH_EVERY_S` and its end.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal

from memory import RunRecords
from schemas import InvalidInput, Region, VitronError

from ..api import AgentSession, TurnStream, VitronAgent

log = logging.getLogger("vitron.server")

MultitaskStrategy = Literal["reject", "enqueue"]
"""What a run asked for while another run of its thread is active does: refused (409), or waits its turn."""

FLUSH_EVERY_S = 0.5  # events reach SQL at least this often (always once the run ends); live readers read memory
SAVE_TRIES = 5  # a failing write is tried this many times (backing off) once the run has ended
KEPT_RUNS = 512  # ended runs whose events stay in memory for quick replay; older ones replay from SQL
MAX_QUEUED = 16  # runs waiting behind a thread's active run
FINISHED = frozenset({"success", "error", "cancelled", "interrupted"})


class RunConflict(InvalidInput):
    """A run was asked for while another run of the thread is active, with `multitask_strategy="reject"`."""


class RunFailed(VitronError):
    """A run ended in an error, told to a caller who waited for it; `kind` is the error's own type (its status)."""

    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(error.get("problem") or "the run ended without a reply", field=error.get("field"),
                         fix=error.get("fix"))
        self.kind = error.get("type") or "InternalError"


def error_json(exc: BaseException) -> dict[str, Any]:
    """An error as the API shows it: ours with its field and fix; anything else as a fault, its details logged."""
    if isinstance(exc, VitronError):
        return {"type": type(exc).__name__, "field": exc.field, "problem": exc.problem, "fix": exc.fix,
                "message": exc.message}
    return {"type": "InternalError", "field": None, "problem": "the server failed on this request",
            "fix": "this is a fault of the server; its log has the details", "message": "internal error"}


@dataclass
class TurnRequest:
    """What a run does: a new turn (text, uploads, region), or the answer to an approval pause (`resume`)."""

    text: str | None = None
    image: Any = None  # an ArtifactRef the owner may read
    video: Any = None
    region: Region | None = None
    resume: dict[str, Any] | None = None  # {"action": "approve" | "deny" | "edit", "invocations": […]}


@dataclass
class LiveRun:
    """A run in this process: its events, in order, and who waits for more."""

    id: str
    thread_id: str
    owner: str | None
    agent: Any = None  # the agent (its planner) the run goes through
    base_url: str = ""  # the address the request that started the run came to: its links point there
    status: str = "pending"
    cancel_requested: bool = False
    error: dict[str, Any] | None = None
    reply: dict[str, Any] | None = None
    saver: threading.Thread | None = None  # writes the run and its events to SQL, off the run's own thread
    events: list[tuple[int, str, dict[str, Any]]] = field(default_factory=list)
    done: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _listeners: list[tuple[asyncio.AbstractEventLoop, asyncio.Queue[Any]]] = field(default_factory=list)
    _unsaved: list[tuple[int, str, dict[str, Any]]] = field(default_factory=list)

    def add(self, name: str, data: dict[str, Any]) -> None:
        with self._lock:
            event = (len(self.events) + 1, name, data)
            self.events.append(event)
            self._unsaved.append(event)
            listeners = list(self._listeners)
        for listener in listeners:
            self._tell(listener, event)

    def _tell(self, listener: tuple[asyncio.AbstractEventLoop, asyncio.Queue[Any]], item: Any) -> None:
        loop, queue = listener
        try:
            loop.call_soon_threadsafe(queue.put_nowait, item)
        except RuntimeError:  # its event loop has closed (the server stops): nobody to tell
            with self._lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)

    def take_unsaved(self) -> list[tuple[int, str, dict[str, Any]]]:
        with self._lock:
            unsaved, self._unsaved = self._unsaved, []
        return unsaved

    def keep_unsaved(self, events: list[tuple[int, str, dict[str, Any]]]) -> None:
        """Events whose saving failed, to be saved with the next ones."""
        with self._lock:
            self._unsaved = events + self._unsaved

    async def follow(self, after: int) -> AsyncIterator[tuple[int, str, dict[str, Any]]]:
        """The events after number `after`, then each new one until the run ends."""
        listener: tuple[asyncio.AbstractEventLoop, asyncio.Queue[Any]] = (asyncio.get_running_loop(),
                                                                           asyncio.Queue())
        with self._lock:
            backlog = [e for e in self.events if e[0] > after]
            ended = self.done.is_set()
            if not ended:
                self._listeners.append(listener)
        try:
            for event in backlog:
                yield event
                after = event[0]
            while not ended:
                event = await listener[1].get()
                if event is None:
                    return
                if event[0] > after:
                    after = event[0]
                    yield event
        finally:
            with self._lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)

    async def wait(self) -> None:
        """Until the run ends, holding no thread while it runs."""
        async for _ in self.follow(len(self.events)):
            pass

    def close(self) -> None:
        with self._lock:
            listeners, self._listeners = list(self._listeners), []
            self.done.set()
        for listener in listeners:
            self._tell(listener, None)


class RunManager:
    """Starts runs on threads of their own, one run of a thread at a time, and keeps their events."""

    def __init__(self, agent: VitronAgent, records: RunRecords, describe: Any) -> None:
        self.agent = agent
        self.records = records
        self._describe = describe  # (ArtifactRef, base URL) → the API's description of it (a signed link)
        self._lock = threading.Condition()
        self._runs: OrderedDict[str, LiveRun] = OrderedDict()
        self._active: dict[str, list[str]] = {}  # thread id → its runs not ended, the first one running

    def start(self, thread_id: str, owner: str | None, request: TurnRequest, *,
              strategy: MultitaskStrategy = "reject", raw: dict[str, Any] | None = None,
              agent: VitronAgent | None = None, base_url: str = "") -> LiveRun:
        """Start a run (or queue it behind the thread's active run) through `agent` (default the server's);
        `RunConflict` when the thread is busy and the strategy is `reject`, or its queue is full."""
        run = LiveRun(uuid.uuid4().hex, thread_id, owner, agent=agent or self.agent, base_url=base_url)
        with self._lock:
            active = self._active.setdefault(thread_id, [])
            if active and (strategy == "reject" or len(active) > MAX_QUEUED):
                if not active:
                    del self._active[thread_id]
                raise RunConflict(f"thread {thread_id[:8]} has a run in progress ({active[0]})"
                                  + (f" and {len(active) - 1} waiting" if len(active) > 1 else ""),
                                  field="multitask_strategy",
                                  fix="wait for it (join), cancel it, or send multitask_strategy=enqueue"
                                  if strategy == "reject" else "wait for the queued runs to end")
            active.append(run.id)
            self._runs[run.id] = run
            self._evict()
        run.add("metadata", {"run_id": run.id, "thread_id": thread_id})
        try:
            run.saver = threading.Thread(target=self._save, args=(run, raw or {}),
                                         name=f"vitron-save-{run.id[:8]}", daemon=True)
            run.saver.start()
            threading.Thread(target=self._work, args=(run, request), name=f"vitron-run-{run.id[:8]}",
                             daemon=True).start()
        except RuntimeError:  # no thread could start: the run never began, the thread is not left busy
            self._end(run, "error", error_json(RuntimeError()))
            raise
        return run

    def _evict(self) -> None:
        """Forget the oldest ended runs (their record is in SQL) beyond KEPT_RUNS; live ones stay."""
        ended = [rid for rid, r in self._runs.items() if r.done.is_set() and not (r.saver and r.saver.is_alive())]
        for rid in ended[:max(0, len(self._runs) - KEPT_RUNS)]:
            del self._runs[rid]

    def get(self, run_id: str) -> LiveRun | None:
        return self._runs.get(run_id)

    def from_records(self, run_id: str) -> LiveRun | None:
        """A run no longer held here (an earlier server process, or long ended), from SQL: its status and all its
        events, as ended. A run SQL says is still going was cut off with its process."""
        record = self.records.get(run_id)
        if record is None:
            return None
        run = LiveRun(record.id, record.session_id, record.owner,
                      status=record.status if record.status in FINISHED else "error")
        run.events = self.records.events(run_id)
        end = next((data for _, name, data in reversed(run.events) if name == "end"), None)
        run.reply = end.get("reply") if end else None
        run.done.set()
        return run

    def active(self, thread_id: str) -> list[str]:
        with self._lock:
            return list(self._active.get(thread_id, []))

    def cancel(self, run: LiveRun) -> None:
        """Stop a run: a queued one never starts (it ends now); a running one's steps stop at their jobs' next
        progress reports, the rest are skipped."""
        with self._lock:
            run.cancel_requested = True
            queued = run.status == "pending" and self._active.get(run.thread_id, [None])[0] != run.id
        if queued:
            self._end(run, "cancelled", {"problem": "cancelled before it started"})
        elif run.status == "running":
            run.agent.session(run.thread_id, owner=run.owner).cancel_turn()

    def close(self, wait_s: float = 10.0) -> None:
        """Wait (at most `wait_s` in all) for every run's record to be written, as the server stops."""
        deadline = time.monotonic() + wait_s
        for run in list(self._runs.values()):
            if run.saver is not None:
                run.saver.join(timeout=max(0.0, deadline - time.monotonic()))

    # -- the run's own thread ------------------------------------------------------------------

    def _work(self, run: LiveRun, request: TurnRequest) -> None:
        try:
            with self._lock:
                while self._active[run.thread_id][0] != run.id:  # queued behind another run of the thread
                    if run.done.is_set():
                        return  # cancelled while it waited
                    self._lock.wait()
                if run.cancel_requested:
                    starting = False
                else:
                    run.status, starting = "running", True
            if not starting:
                self._end(run, "cancelled", {"problem": "cancelled before it started"})
                return
            session = AgentSession(run.agent, run.thread_id)  # the route checked the thread and its owner
            told = False
            turn = self._events(session, request)
            for event in turn:
                if run.cancel_requested and not told:  # a cancel that came before the turn began reaches it now
                    session.cancel_turn()
                    told = True
                run.add(event.pop("event"), event)
            reply = turn.reply
            made = [self._describe(a.ref, run.base_url) for a in reply.artifacts]
            run.reply = {"text": reply.text, "artifacts": made,
                         "steps": [{"position": s.position, "module": s.module, "status": s.status}
                                   for s in reply.steps]}
            status = "interrupted" if reply.waiting else "cancelled" if run.cancel_requested else "success"
            self._end(run, status, None)
        except Exception as exc:  # ours (a bad plan) or a fault: the run says so; the server goes on
            if not isinstance(exc, VitronError):
                log.exception("run %s failed", run.id)
            run.add("error", error_json(exc))
            self._end(run, "error", error_json(exc))

    def _events(self, session: AgentSession, request: TurnRequest) -> TurnStream:
        if request.resume is not None:
            return session.stream_answer(request.resume.get("action", "approve"), request.resume.get("invocations"))
        return session.stream(request.text, image=request.image, video=request.video, region=request.region)

    def _end(self, run: LiveRun, status: str, error: dict[str, Any] | None) -> None:
        with self._lock:
            if run.done.is_set():
                return
            run.status, run.error = status, error
            active = self._active.get(run.thread_id, [])
            if run.id in active:
                active.remove(run.id)
            if not active:
                self._active.pop(run.thread_id, None)
            self._lock.notify_all()  # the next run of the thread may start
        run.add("end", {"run_id": run.id, "status": status, **({"reply": run.reply} if run.reply else {}),
                        **({"error": error} if error else {})})
        run.close()  # the saver writes what is left, and the status

    def _save(self, run: LiveRun, request: dict[str, Any]) -> None:
        """The run's record in SQL, its events every FLUSH_EVERY_S, and its end: none of it on the run's path."""
        try:
            self.records.create(run.id, run.thread_id, owner=run.owner, request=request)
        except Exception:  # the run goes on in memory; only a later process's replay misses it
            log.exception("could not record run %s", run.id)
            return
        failures = 0
        while True:
            ended = run.done.wait(FLUSH_EVERY_S)
            events = run.take_unsaved()
            try:
                self.records.add_events(run.id, events)
                if ended:
                    self.records.set_status(run.id, run.status, run.error)
                    return
            except Exception:  # kept in memory; tried again, a few times once the run has ended
                run.keep_unsaved(events)
                failures += 1
                log.warning("could not save run %s's events yet", run.id, exc_info=True)
                if ended:
                    if failures >= SAVE_TRIES:
                        log.error("gave up saving run %s: its replay from SQL will be short", run.id)
                        return
                    time.sleep(0.2 * 2 ** failures)
