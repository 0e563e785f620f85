"""The public API: `VitronAgent.from_settings()`, `agent.session(id)`, `session.send(text, image=…)`.

A session is a LangGraph thread (its id is the session id) over session memory: every turn, step and
artifact is remembered, and a turn interrupted by a crash or an approval pause goes on with `resume()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from langgraph.types import Command

from memory import ArtifactEntry, SessionMemory, StepRecord, TurnLeases, open_checkpointer
from schemas import ArtifactRef, InvalidInput, Invocation, Region, StepNotFound, VitronSettings, as_region
from tools.executors import Executor, make_executor

from .graph import EVENTS, Services, build_graph
from .planners.base import Planner

PLANNERS = ("mini", "explicit", "chat", "vitron")
_DONE, _PAUSED = object(), object()  # the end of a turn's events: answered, or paused for the user

Upload = str | Path | np.ndarray | ArtifactRef


def make_planner(name: str, settings: VitronSettings) -> Planner:
    """The planner called `name` (mini, explicit, chat or vitron), configured from settings."""
    if name == "mini":
        from .planners.mini import MiniPlanner

        return MiniPlanner()
    if name == "explicit":
        from .planners.explicit import ExplicitPlanner

        return ExplicitPlanner()
    if name == "chat":
        from .planners.chat import ChatModelPlanner

        return ChatModelPlanner.from_settings(settings)
    if name == "vitron":
        from .planners.vitron import VitronPlanner

        return VitronPlanner.from_settings(settings)
    raise InvalidInput(f"unknown planner {name!r}", field="VITRON_PLANNER", fix=f"use one of {', '.join(PLANNERS)}")


@dataclass(frozen=True)
class Reply:
    """What a turn gave back: the reply text, its steps and the artifacts they made (in step order), after what an
    undo brought back or a show showed. A question back to the user (what it means, or whether to run a guess) is
    an ordinary reply: `approval` is only for heavy steps waiting to run."""

    session_id: str
    text: str
    steps: tuple[StepRecord, ...]
    artifacts: tuple[ArtifactEntry, ...]
    approval: dict[str, Any] | None = None  # set while the turn waits for the user to approve heavy steps
    refused: str | None = None  # why no plan of the turn could run (after the planner's corrections)

    @property
    def waiting(self) -> bool:
        return self.approval is not None


_MARK_WAIT_S = 2.0  # how long `cancel` waits for a just-started step's job id to land in session memory


def cancel_job(memory: SessionMemory, job_id: str, executor: Executor | None = None, *,
               session_id: str | None = None, wait_s: float = 0.0) -> StepRecord:
    """Cancel a step's job, from any process: a queued job never starts, a running one stops at its next
    progress report, and the steps that need its output are skipped.

    The step is marked cancelled in session memory, which the agent running it reads as it reports progress;
    `executor` (the agent's own, or a Celery executor reaching the workers) is told too, so the job stops at
    once. With `session_id`, a job of another session is refused. `wait_s`: how long to wait for a step that
    has just started to record its job id (a `step_started` event can come first)."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            step = memory.step_for_job(job_id)
            break
        except StepNotFound:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.01)
    if session_id is not None and step.session_id != session_id:
        raise InvalidInput(f"job {job_id} belongs to session {step.session_id[:8]}, not {session_id[:8]}",
                           field="job_id", fix="cancel it from its own session, or with `vitron jobs cancel`")
    if step.status not in ("pending", "queued", "running"):
        raise InvalidInput(f"job {job_id} has already ended ({step.status})", field="job_id",
                           fix="see `vitron jobs list`")
    step = memory.update_step(step.id, status="cancelled", message="cancelled by the user")
    if executor is not None:
        executor.cancel(job_id)
    return step


class VitronAgent:
    """The planner, the tools and session memory behind one object. Close it (or use `with`) when done."""

    def __init__(self, memory: SessionMemory, planner: Planner, settings: VitronSettings, checkpointer: Any,
                 resources: ExitStack | None = None, executor: Executor | None = None) -> None:
        self.memory = memory
        self.planner = planner
        self.settings = settings
        self._resources = resources or ExitStack()
        if executor is None:
            executor = make_executor(settings, memory.store)
            self._resources.callback(executor.close)
        self.executor = executor
        self.checkpointer = checkpointer
        self.leases = TurnLeases(memory.db, settings.turn_lease_s)
        self.services = Services(memory, planner, settings, executor)
        self.graph = build_graph(self.services, checkpointer)

    def with_planner(self, planner: Planner | str) -> VitronAgent:
        """Another agent over this one's memory, checkpointer and executor, planning with `planner` (closing it
        closes nothing of theirs)."""
        chosen = planner if not isinstance(planner, str) else make_planner(planner, self.settings)
        return VitronAgent(self.memory, chosen, self.settings, self.checkpointer, executor=self.executor)

    @classmethod
    def from_settings(cls, settings: VitronSettings | None = None, *, planner: Planner | str | None = None,
                      ) -> VitronAgent:
        settings = settings or VitronSettings()
        resources = ExitStack()
        try:
            memory = resources.enter_context(SessionMemory.from_settings(settings))
            checkpointer = resources.enter_context(open_checkpointer(memory.db))
            chosen = planner if planner is not None and not isinstance(planner, str) else make_planner(
                planner or settings.planner, settings)
            return cls(memory, chosen, settings, checkpointer, resources)
        except BaseException:
            resources.close()
            raise

    def session(self, id: str | None = None, *, title: str = "", owner: str | None = None) -> AgentSession:
        """An existing session of `owner`'s (by id or a unique prefix), or a new one of theirs. `owner` None is the
        local user, whose sessions are those with no owner: another owner's id or prefix is no session at all."""
        found = self.memory.resolve_session_id(id, owner=owner) if id is not None else self.memory.create_session(
            title, owner=owner).id
        return AgentSession(self, found)

    def close(self) -> None:
        self._resources.close()

    def __enter__(self) -> VitronAgent:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AgentSession:
    """One conversation: send turns, stream their events, resume an interrupted turn."""

    def __init__(self, agent: VitronAgent, session_id: str) -> None:
        self.agent = agent
        self.id = session_id
        self._config = {"configurable": {"thread_id": session_id}}

    @property
    def unfinished(self) -> bool:
        """Whether a turn stopped before its reply (a crash, or a pause for approval)."""
        return bool(self.agent.graph.get_state(self._config).next)

    def stream(self, text: str | None = None, *, image: Upload | None = None, video: Upload | None = None,
               region: Region | dict | None = None, wait_s: float = 0.0) -> TurnStream:
        """Run a turn (or, with no text, go on with the unfinished one), yielding its events as they happen:
        plan, step_started, progress, step_finished, step_failed, step_skipped, approval, message.

        One turn runs at a time per session, across processes: while another runs, this one is refused
        (`SessionBusy`), or waits up to `wait_s` seconds for it to end. After the events, `.reply` is the turn's
        own reply."""
        return TurnStream(self, lambda: self._start(text, image, video, region), wait_s)

    def send(self, text: str | None = None, *, image: Upload | None = None, video: Upload | None = None,
             region: Region | dict | None = None, wait_s: float = 0.0) -> Reply:
        """Run a turn to its reply (or to an approval pause, see `Reply.approval`): this turn's own reply, even when
        another process sends the next turn the moment this one ends."""
        turn = self.stream(text, image=image, video=video, region=region, wait_s=wait_s)
        for _ in turn:
            pass
        return turn.reply

    async def asend(self, text: str | None = None, **kwargs: Any) -> Reply:
        return await asyncio.to_thread(self.send, text, **kwargs)

    async def astream(self, text: str | None = None, **kwargs: Any) -> AsyncIterator[dict[str, Any]]:
        """`stream` as an async iterator, for servers: the turn runs on a thread of its own, its events reach the
        event loop as they happen. The same arguments as `stream`; its errors are raised here."""
        loop = asyncio.get_running_loop()
        events: asyncio.Queue[Any] = asyncio.Queue()

        def pump() -> None:
            try:
                for event in self.stream(text, **kwargs):
                    loop.call_soon_threadsafe(events.put_nowait, event)
                loop.call_soon_threadsafe(events.put_nowait, _DONE)
            except BaseException as exc:  # handed to the async reader
                loop.call_soon_threadsafe(events.put_nowait, exc)

        threading.Thread(target=pump, name=f"vitron-astream-{self.id[:8]}", daemon=True).start()
        while (event := await events.get()) is not _DONE:
            if isinstance(event, BaseException):
                raise event
            yield event

    def resume(self, *, wait_s: float = 0.0) -> Reply:
        """Go on with a turn that a crash or an approval pause interrupted (not one another process is running: its
        lease must have ended, or its process be gone)."""
        return self.send(wait_s=wait_s)

    def approve(self, action: str = "approve", invocations: list[Invocation | dict] | None = None) -> Reply:
        """Answer an approval pause: `approve`, `deny`, or `edit` with the invocations to run instead."""
        turn = self.stream_answer(action, invocations)
        for _ in turn:
            pass
        return turn.reply

    def stream_answer(self, action: str = "approve",
                      invocations: list[Invocation | dict] | None = None) -> TurnStream:
        """`approve`, yielding the turn's events as it goes on (as `stream` does)."""
        return TurnStream(self, lambda: self._answer(action, invocations), 0.0)

    def _answer(self, action: str, invocations: list[Invocation | dict] | None) -> Command:
        if action not in ("approve", "deny", "edit"):
            raise InvalidInput(f"unknown answer {action!r}", field="action", fix="approve, deny or edit")
        if not self.unfinished:
            raise InvalidInput("no step is waiting for approval in this session", field="action")
        decision: dict[str, Any] = {"action": action}
        if action == "edit":
            decision["invocations"] = [Invocation.model_validate(i) for i in invocations or []]
        return Command(resume=decision)

    def cancel_turn(self) -> None:
        """Stop the turn under way: its running steps stop at their jobs' next progress reports, its steps not
        started are skipped; the turn then answers with what was made."""
        self.agent.services.control(self.id).cancel()
        for step in self.agent.memory.steps(self.id):
            if step.status in ("queued", "running") and step.job_id:
                with contextlib.suppress(InvalidInput, StepNotFound):
                    cancel_job(self.agent.memory, step.job_id, self.agent.executor)

    def cancel(self, job_id: str) -> StepRecord:
        """Cancel one of this session's jobs (a `step_started` event's `job_id`, or a step's): a queued job never
        starts, a running one stops at its next progress report, the steps that need its output are skipped."""
        return cancel_job(self.agent.memory, job_id, self.agent.executor, session_id=self.id, wait_s=_MARK_WAIT_S)

    def reply(self) -> Reply:
        """The latest turn's reply as it stands now (another process's turn, if one has run since)."""
        state = self.agent.graph.get_state(self._config)
        values = state.values or {}
        memory = self.agent.memory
        turn_id = values.get("turn_id")
        steps = tuple(s for s in memory.steps(self.id) if turn_id is not None and s.turn_id == turn_id)
        table = {e.alias: e for e in memory.artifact_table(self.id)}
        made = [table[alias] for alias in values.get("shown", []) if alias in table]  # an undo's or a show's
        for step in values.get("steps", []):
            result = values.get("results", {}).get(step["name"], {})
            made += [table[r["alias"]] for r in result.get("outputs", {}).values()
                     if isinstance(r, dict) and r.get("alias") in table]
        approval = None
        if state.next:
            pending = [i.value for task in state.tasks for i in task.interrupts]
            approval = pending[0] if pending else {"type": "interrupted"}
        return Reply(self.id, values.get("final") or "", steps, tuple(made), approval, values.get("refused"))

    # -- internals -----------------------------------------------------------------------------

    def _start(self, text: str | None, image: Upload | None, video: Upload | None,
               region: Region | dict | None) -> Any:
        if text is None:
            if image is not None or video is not None or region is not None:
                raise InvalidInput("an image, video or region needs a turn's text", field="text")
            if not self.unfinished:
                raise InvalidInput(f"session {self.id} has no unfinished turn to resume", field="text",
                                   fix="send a new turn's text")
            return None  # LangGraph goes on from the last checkpoint
        limit = self.agent.settings.max_turn_chars
        if isinstance(text, str) and len(text) > limit:
            raise InvalidInput(f"the turn's text has {len(text):,} characters, more than the {limit:,} allowed",
                               field="text", fix="send a shorter turn, or raise VITRON_MAX_TURN_CHARS")
        if isinstance(text, str) and not text.isascii():
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:  # lone surrogates: bytes that were not UTF-8, which no database can take
                raise InvalidInput("the turn's text is not valid UTF-8", field="text",
                                   fix="send the text as UTF-8") from None
        if self.unfinished:
            raise InvalidInput(f"session {self.id} has an unfinished turn", field="text",
                               fix="finish it first: resume it (no text), or answer its approval pause")
        self.agent.executor.check()  # a dead broker refuses the turn at once, naming its setting
        memory = self.agent.memory
        self.agent.services.new_turn(self.id)
        uploads = [u for u in (self._upload(image, "image"), self._upload(video, "video")) if u is not None]
        turn = memory.append_turn(self.id, "user", text, attachments=uploads)
        inputs = {r.alias: r.model_dump(mode="json") for r in turn.artifacts if r.alias}
        region_json = None
        if region is not None:
            region_json = as_region(region).model_dump(mode="json")
        # `pending` is left as the last turn left it: a guess the planner asked about waits for this turn's answer.
        return {"session_id": self.id, "turn_id": turn.id, "text": text, "inputs": inputs, "region": region_json,
                "round": 1, "attempt": 1, "feedback": None, "proposal": [], "steps": [], "step_ids": {},
                "round_start": 0, "results": None, "approved": [], "replies": [], "final": None, "shown": [],
                "refused": None}

    def _upload(self, value: Upload | None, kind: str) -> ArtifactRef | None:
        store = self.agent.memory.store
        if value is None:
            return None
        if isinstance(value, ArtifactRef):  # its kind and shape as stored, not as the caller says
            from workflows.stored import stored_ref

            if value.kind != kind:
                raise InvalidInput(f"the {kind} given is {value.kind} {value.short}", field=kind,
                                   fix=f"give {'an image' if kind == 'image' else 'a video'}")
            return stored_ref(store, value, field=kind)
        if isinstance(value, np.ndarray):
            return store.put_image(value) if kind == "image" else store.put_video(value, fps=8.0)
        return store.import_image(value) if kind == "image" else store.import_video(value)

    def upload(self, value: Upload, *, kind: str = "image") -> ArtifactEntry:
        """An image or video (a path, an array, a stored ref) or a mask, given the session's next alias (`@img1`) with
        no turn: for a tool-calling agent that names it in its next call (`agent.langchain_tools`, `vitron mcp`)."""
        if kind == "mask":
            store = self.agent.memory.store
            ref = store.put_mask(np.asarray(value) > 0) if isinstance(value, np.ndarray) else store.import_mask(value)
        elif kind in ("image", "video"):
            ref = self._upload(value, kind)
        else:
            raise InvalidInput(f"cannot upload {kind!r}", field="kind", fix="upload an image, a mask or a video")
        return self.agent.memory.record_artifact(self.id, ref)

    def langchain_tool(self, name: str) -> Any:
        """This session's LangChain tool for a module or saved workflow (see `agent.langchain_tools`)."""
        from .langchain_adapter import langchain_tool

        return langchain_tool(self, name)


class TurnStream(Iterator[dict[str, Any]]):
    """A turn's events as they happen (iterate it), then `reply`: the turn's own reply.

    The turn starts at the first `next()`: it takes the session's lease, then prepares the graph's input under it
    (the unfinished-turn check and the user's turn are recorded by the lease's holder only), and runs on a thread
    of its own that keeps the lease until the reply is read. LangGraph runs a lone node in the calling thread
    unless a custom stream is read, which would cost a thread hop per superstep and a new thread pool per turn; so
    events come through a queue instead. Checkpoints are written before each next superstep (`durability="sync"`):
    a crash, or Ctrl-C (the thread is a daemon), loses at most the superstep under way, and `resume()` goes on from
    there. A reader that stops early leaves the turn running to its end, still holding the lease."""

    def __init__(self, session: AgentSession, prepare: Callable[[], Any], wait_s: float) -> None:
        self.session, self._prepare, self._wait_s = session, prepare, wait_s
        self._reply: Reply | None = None
        self._events: Iterator[dict[str, Any]] | None = None

    @property
    def reply(self) -> Reply:
        if self._reply is None:
            raise RuntimeError("the turn has not ended: read its events to the end first")
        return self._reply

    def __next__(self) -> dict[str, Any]:
        if self._events is None:
            self._events = self._run()
        return next(self._events)

    def _run(self) -> Iterator[dict[str, Any]]:
        session = self.session
        leases = session.agent.leases
        lease = leases.acquire(session.id, wait_s=self._wait_s)
        try:
            graph_input = self._prepare()
        except BaseException:
            leases.release(lease)
            raise
        events: queue.SimpleQueue[Any] = queue.SimpleQueue()
        config = {"configurable": {**session._config["configurable"], EVENTS: events.put}}

        def run() -> None:
            paused = False
            try:
                with leases.kept(lease):
                    for update in session.agent.graph.stream(graph_input, config, stream_mode="updates",
                                                             durability="sync"):
                        paused = paused or "__interrupt__" in update
                    self._reply = session.reply()  # under the lease: this turn's, not a later one's
                events.put(_PAUSED if paused else _DONE)
            except BaseException as exc:  # the last item: the reader raises it
                events.put(exc)

        threading.Thread(target=run, name=f"vitron-turn-{session.id[:8]}", daemon=True).start()
        while (event := events.get()) not in (_DONE, _PAUSED):
            if isinstance(event, BaseException):
                raise event
            yield event
        approval = self.reply.approval
        if event is _PAUSED and approval and approval.get("type") == "approval":  # say what waits for the user
            yield {"event": "approval", **approval}
