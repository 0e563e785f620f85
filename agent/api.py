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
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from langgraph.types import Command

from memory import ArtifactEntry, SessionMemory, StepRecord, open_checkpointer
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
        """An existing session (by id or a unique prefix), or a new one."""
        found = self.memory.resolve_session_id(id) if id is not None else self.memory.create_session(
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
               region: Region | dict | None = None) -> Iterator[dict[str, Any]]:
        """Run a turn (or, with no text, go on with the unfinished one), yielding its events as they happen:
        plan, step_started, progress, step_finished, step_failed, step_skipped, approval, message."""
        yield from self._run(self._start(text, image, video, region))

    def send(self, text: str | None = None, *, image: Upload | None = None, video: Upload | None = None,
             region: Region | dict | None = None) -> Reply:
        """Run a turn to its reply (or to an approval pause, see `Reply.approval`)."""
        for _ in self.stream(text, image=image, video=video, region=region):
            pass
        return self.reply()

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

    def resume(self) -> Reply:
        """Go on with a turn that a crash or an approval pause interrupted."""
        return self.send()

    def approve(self, action: str = "approve", invocations: list[Invocation | dict] | None = None) -> Reply:
        """Answer an approval pause: `approve`, `deny`, or `edit` with the invocations to run instead."""
        for _ in self.stream_answer(action, invocations):
            pass
        return self.reply()

    def stream_answer(self, action: str = "approve",
                      invocations: list[Invocation | dict] | None = None) -> Iterator[dict[str, Any]]:
        """`approve`, yielding the turn's events as it goes on (as `stream` does)."""
        if action not in ("approve", "deny", "edit"):
            raise InvalidInput(f"unknown answer {action!r}", field="action", fix="approve, deny or edit")
        if not self.unfinished:
            raise InvalidInput("no step is waiting for approval in this session", field="action")
        decision: dict[str, Any] = {"action": action}
        if action == "edit":
            decision["invocations"] = [Invocation.model_validate(i) for i in invocations or []]
        yield from self._run(Command(resume=decision))

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
        """The latest turn's reply as it stands now."""
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
        if self.unfinished:
            raise InvalidInput(f"session {self.id} has an unfinished turn", field="text",
                               fix="finish it first: resume it (no text), or answer its approval pause")
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
        if value is None or isinstance(value, ArtifactRef):
            return value
        if isinstance(value, np.ndarray):
            return store.put_image(value) if kind == "image" else store.put_video(value, fps=8.0)
        return store.import_image(value) if kind == "image" else store.import_video(value)

    def _run(self, graph_input: Any) -> Iterator[dict[str, Any]]:
        """Run the graph on a thread of its own and yield its events as they come.

        LangGraph runs a lone node in the calling thread unless a custom stream is read, which would cost a
        thread hop per superstep and a new thread pool per turn; so events come through a queue instead.
        Checkpoints are written before each next superstep (`durability="sync"`): a crash, or Ctrl-C (the
        thread is a daemon), loses at most the superstep under way, and `resume()` goes on from there. A reader
        that stops early leaves the turn running to its end."""
        events: queue.SimpleQueue[Any] = queue.SimpleQueue()
        config = {"configurable": {**self._config["configurable"], EVENTS: events.put}}

        def run() -> None:
            paused = False
            try:
                for update in self.agent.graph.stream(graph_input, config, stream_mode="updates",
                                                      durability="sync"):
                    paused = paused or "__interrupt__" in update
                events.put(_PAUSED if paused else _DONE)
            except BaseException as exc:  # the last item: the reader raises it
                events.put(exc)

        threading.Thread(target=run, name=f"vitron-turn-{self.id[:8]}", daemon=True).start()
        while (event := events.get()) not in (_DONE, _PAUSED):
            if isinstance(event, BaseException):
                raise event
            yield event
        if event is _PAUSED:  # say what waits for the user
            approval = self.reply().approval
            if approval and approval.get("type") == "approval":
                yield {"event": "approval", **approval}
