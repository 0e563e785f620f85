"""Runs: a thread's turns asked for over HTTP, run in the background, their events numbered, kept in SQL and
streamed to whoever listens, and again from any event on to a client that reconnects (`Last-Event-ID`).

One run of a thread runs at a time: a second one is refused (`multitask_strategy="reject"`) or waits its turn
(`"enqueue"`). A run ends `success`, `error`, `cancelled`, or `interrupted` when the turn waits for an approval (a
later run with `command.resume` answers it).
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
from schemas import InvalidInput, Region, VitronError, error_text

from ..api import AgentSession, VitronAgent

log = logging.getLogger("vitron.server")

MultitaskStrategy = Literal["reject", "enqueue"]
"""What a run asked for while another run of its thread is active does: refused (409), or waits its turn."""

FLUSH_EVERY_S = 0.5  # events reach SQL at least this often (always before the run ends); live readers read memory
KEPT_RUNS = 512  # finished runs whose events stay in memory for quick replay; older ones replay from SQL
FINISHED = frozenset({"success", "error", "cancelled", "interrupted"})


class RunConflict(InvalidInput):
    """A run was asked for while another run of the thread is active, with `multitask_strategy="reject"`."""


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
    status: str = "pending"
    agent: Any = None  # the agent (its planner) the run goes through
    cancel_requested: bool = False
    error: dict[str, Any] | None = None
    saver: threading.Thread | None = None  # writes the run and its events to SQL, off the run's own thread
    events: list[tuple[int, str, dict[str, Any]]] = field(default_factory=list)
    reply: dict[str, Any] | None = None
    done: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _listeners: list[tuple[asyncio.AbstractEventLoop, asyncio.Queue[Any]]] = field(default_factory=list)
    _unsaved: list[tuple[int, str, dict[str, Any]]] = field(default_factory=list)

    def add(self, name: str, data: dict[str, Any]) -> tuple[int, str, dict[str, Any]]:
        with self._lock:
            event = (len(self.events) + 1, name, data)
            self.events.append(event)
            self._unsaved.append(event)
            listeners = list(self._listeners)
        for loop, queue in listeners:
            loop.call_soon_threadsafe(queue.put_nowait, event)
        return event

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
        loop, queue = asyncio.get_running_loop(), asyncio.Queue()
        with self._lock:
            backlog = [e for e in self.events if e[0] > after]
            finished = self.done.is_set()
            if not finished:
                self._listeners.append((loop, queue))
        try:
            for event in backlog:
                yield event
                after = event[0]
            if finished:
                return
            while True:
                event = await queue.get()
                if event is None:
                    return
                if event[0] > after:
                    after = event[0]
                    yield event
        finally:
            with self._lock:
                if (loop, queue) in self._listeners:
                    self._listeners.remove((loop, queue))

    def close(self) -> None:
        with self._lock:
            listeners, self._listeners = list(self._listeners), []
            self.done.set()
        for loop, queue in listeners:
            loop.call_soon_threadsafe(queue.put_nowait, None)


class RunManager:
    """Starts runs on threads of their own, one run of a thread at a time, and keeps their events."""

    def __init__(self, agent: VitronAgent, records: RunRecords, describe: Any) -> None:
        self.agent = agent
        self.records = records
        self._describe = describe  # ArtifactRef → the API's description of it (a signed link)
        self._lock = threading.Lock()
        self._runs: OrderedDict[str, LiveRun] = OrderedDict()
        self._active: dict[str, list[str]] = {}  # thread id → its runs not ended, the first one running

    def start(self, thread_id: str, owner: str | None, request: TurnRequest, *,
              strategy: MultitaskStrategy = "reject", raw: dict[str, Any] | None = None,
              agent: VitronAgent | None = None) -> LiveRun:
        """Start a run (or queue it behind the thread's active run) through `agent` (default the server's);
        `RunConflict` when the thread is busy and the strategy is `reject`."""
        run = LiveRun(uuid.uuid4().hex, thread_id, owner, agent=agent or self.agent)
        with self._lock:
            active = self._active.setdefault(thread_id, [])
            if active and strategy == "reject":
                raise RunConflict(f"thread {thread_id[:8]} has a run in progress ({active[0]})",
                                  field="multitask_strategy",
                                  fix="wait for it (join), cancel it, or send multitask_strategy=enqueue")
            active.append(run.id)
            self._runs[run.id] = run
            while len(self._runs) > KEPT_RUNS:
                oldest = next(iter(self._runs))
                if not self._runs[oldest].done.is_set():
                    break
                self._runs.pop(oldest)
        run.add("metadata", {"run_id": run.id, "thread_id": thread_id})
        run.saver = threading.Thread(target=self._save, args=(run, raw or {}), name=f"vitron-save-{run.id[:8]}",
                                     daemon=True)
        run.saver.start()
        threading.Thread(target=self._work, args=(run, request), name=f"vitron-run-{run.id[:8]}", daemon=True).start()
        return run

    def close(self) -> None:
        """Wait (a while) for every run's record to be written, as the server stops."""
        for run in list(self._runs.values()):
            if run.saver is not None:
                run.saver.join(timeout=10)

    def get(self, run_id: str) -> LiveRun | None:
        return self._runs.get(run_id)

    def from_records(self, run_id: str) -> LiveRun | None:
        """A run no longer held here (an earlier server process, or long finished), from SQL: its status and all
        its events, as ended. A run SQL says is still going was cut off with its process."""
        record = self.records.get(run_id)
        if record is None:
            return None
        run = LiveRun(record.id, record.session_id, record.owner,
                      record.status if record.status in FINISHED else "error")
        run.events = self.records.events(run_id)
        end = next((data for _, name, data in reversed(run.events) if name == "end"), None)
        run.reply = end.get("reply") if end else None
        run.done.set()
        return run

    def active(self, thread_id: str) -> list[str]:
        return list(self._active.get(thread_id, []))

    def cancel(self, run: LiveRun) -> None:
        """Stop a run: its running steps stop at their jobs' next progress reports, the rest are skipped; a run
        still queued never starts."""
        run.cancel_requested = True
        if run.status == "pending":
            return  # it never starts: its thread sees the request when its turn comes
        run.agent.session(run.thread_id).cancel_turn()

    # -- the run's own thread ------------------------------------------------------------------

    def _work(self, run: LiveRun, request: TurnRequest) -> None:
        try:
            self._wait_turn(run)
            if run.cancel_requested:
                self._end(run, "cancelled", {"problem": "cancelled before it started"})
                return
            run.status = "running"
            session = AgentSession(run.agent, run.thread_id)  # the route checked the thread and its owner
            for event in self._events(session, request):
                run.add(event.pop("event"), event)
            reply = session.reply()
            run.reply = {"text": reply.text, "artifacts": [self._describe(a.ref) for a in reply.artifacts],
                         "steps": [{"position": s.position, "module": s.module, "status": s.status}
                                   for s in reply.steps]}
            status = "interrupted" if reply.waiting else "cancelled" if run.cancel_requested else "success"
            self._end(run, status, None)
        except VitronError as exc:
            run.add("error", exc.to_dict())
            self._end(run, "error", exc.to_dict())
        except Exception as exc:  # a fault of ours: the run says so and the server goes on
            log.exception("run %s failed", run.id)
            error = {"error": type(exc).__name__, "field": None, "problem": error_text(exc), "fix": None}
            run.add("error", error)
            self._end(run, "error", error)

    def _events(self, session: AgentSession, request: TurnRequest) -> Any:
        if request.resume is not None:
            return session.stream_answer(request.resume.get("action", "approve"), request.resume.get("invocations"))
        return session.stream(request.text, image=request.image, video=request.video, region=request.region)

    def _wait_turn(self, run: LiveRun) -> None:
        while True:
            with self._lock:
                if self._active[run.thread_id][0] == run.id:
                    return
            time.sleep(0.02)  # queued behind another run of the thread

    def _end(self, run: LiveRun, status: str, error: dict[str, Any] | None) -> None:
        run.status, run.error = status, error
        run.add("end", {"run_id": run.id, "status": status, **({"reply": run.reply} if run.reply else {}),
                        **({"error": error} if error else {})})
        with self._lock:
            self._active[run.thread_id].remove(run.id)
            if not self._active[run.thread_id]:
                del self._active[run.thread_id]
        run.close()  # the saver writes what is left, and the status

    def _save(self, run: LiveRun, request: dict[str, Any]) -> None:
        """The run's record in SQL, its events every FLUSH_EVERY_S, and its end: none of it on the run's path."""
        try:
            self.records.create(run.id, run.thread_id, owner=run.owner, request=request)
            while True:
                ended = run.done.wait(FLUSH_EVERY_S)
                events = run.take_unsaved()
                try:
                    self.records.add_events(run.id, events)
                except Exception:  # kept in memory; the next flush tries again
                    run.keep_unsaved(events)
                    log.warning("could not save run %s's events yet", run.id, exc_info=True)
                    continue
                if ended:
                    self.records.set_status(run.id, run.status, run.error)
                    return
        except Exception:  # the run goes on in memory; only a later process's replay misses it
            log.exception("could not record run %s", run.id)
