"""Session memory as the runner's recorder: a turn's steps write their life (job, progress, outputs with their
aliases, errors) into the session, where `vitron sessions show` and `vitron jobs` read it."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from memory import SessionMemory
from schemas import CompiledStep, ToolOutput

_PROGRESS_EVERY_S = 0.5  # how often a running step's progress is written to the database

_bookkeeping: ThreadPoolExecutor | None = None


def _background(work: Callable[[], Any]) -> Future:
    """Run bookkeeping off the step's thread (a pool made on first use, never at import)."""
    global _bookkeeping
    if _bookkeeping is None:
        _bookkeeping = ThreadPoolExecutor(max_workers=4, thread_name_prefix="vitron-bookkeeping")
    return _bookkeeping.submit(work)


class SessionRecorder:
    """Records one turn's steps; `step_ids` maps each step's name to its row."""

    def __init__(self, memory: SessionMemory, step_ids: Mapping[str, int]) -> None:
        self.memory = memory
        self.step_ids = step_ids
        self._marking: dict[str, Future] = {}
        self._last_write: dict[str, float] = {}

    def started(self, step: CompiledStep, job_id: str) -> None:
        # The job id and the "running" mark are written while the job starts; they only have to land before the
        # step's end (and before anyone can ask to cancel the job by its id).
        step_id = self.step_ids[step.name]
        self._last_write[step.name] = time.monotonic()
        self._marking[step.name] = _background(
            lambda: self.memory.update_step(step_id, status="running", progress=0.0, job_id=job_id))

    def progress(self, step: CompiledStep, fraction: float, message: str) -> bool:
        """The database hears of progress only when a step runs a while; a `cancelled` row (`vitron jobs cancel`,
        from any process) stops the job."""
        now = time.monotonic()
        if now - self._last_write.get(step.name, 0.0) < _PROGRESS_EVERY_S:
            return False
        self._last_write[step.name] = now
        row = self.memory.update_step(self.step_ids[step.name], progress=min(1.0, max(0.0, fraction)),
                                      message=message)
        return row.status == "cancelled"

    def succeeded(self, step: CompiledStep, output: ToolOutput, *, cached: bool,
                  notes: Sequence[str] = ()) -> dict[str, Any]:
        """The output's fields, its artifacts as recorded (with their aliases; a tool's artifact fields are named by
        their kinds): a workflow's later steps may read a region or a number too. The job's notes become the
        step's message."""
        self._settle(step)
        if notes:
            self.memory.update_step(self.step_ids[step.name], message=" ".join(notes))
        refs = self.memory.finish_step(self.step_ids[step.name], output.artifacts(), backend=output.backend)
        fields = output.model_dump(mode="json", exclude={"backend"}, exclude_none=True)
        return {**fields, **{ref.kind: ref.model_dump(mode="json") for ref in refs}}

    def failed(self, step: CompiledStep, error: BaseException, *, cancelled: bool) -> None:
        self._settle(step)
        self.memory.update_step(self.step_ids[step.name], status="cancelled" if cancelled else "failed", error=error)

    def skipped(self, step: CompiledStep, reason: str) -> None:
        self.memory.update_step(self.step_ids[step.name], status="skipped", message=reason)

    def _settle(self, step: CompiledStep) -> None:
        marking = self._marking.pop(step.name, None)
        if marking is not None:
            marking.result()
