"""The runner: compiled steps as jobs on an executor (in this process, or Celery workers), with progress, cancel,
the step cache, and the events the agent emits:

    step_started  {position, step, module, job_id, command}
    progress      {position, step, module, fraction, message}
    cached        {position, step, module, signature}          the outputs came from the step cache
    step_finished {position, step, module, seconds, outputs, cached[, notes]}   notes: what the job told the user
    step_failed   {position, step, module, error}
    step_skipped  {position, step, module, reason}

A step's job spec is built from the compiled step's JSON without validating again (the compiler did; the job
function validates where the job runs). What a step's life writes, and where, is the recorder's business: the
agent records into session memory, a plain workflow run records nothing.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

from memory import ArtifactStore, CachedStep, StepCache
from schemas import (
    ArtifactRef,
    CompiledPlan,
    CompiledStep,
    JobCancelled,
    JobResult,
    JobSpec,
    ModelsFile,
    ToolOutput,
    VitronSettings,
    error_text,
    question_of,
)
from tools import get_tool
from tools.base import read_models_file
from tools.executors import Executor, JobHandle

from .rounds import blocked_by, ready
from .signature import step_signature

log = logging.getLogger("vitron.workflows")

Emit = Callable[[dict[str, Any]], None]
"""Where events go: a callable that takes each event (a dict with an `event` key) as it happens."""


def ignore(event: dict[str, Any]) -> None:
    """An event sink that drops every event."""
    return None


@dataclass(frozen=True)
class StepResult:
    """How a step ended: its status, its output fields as JSON (refs for artifacts), or its error."""

    status: str  # succeeded | failed | cancelled | skipped
    outputs: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    seconds: float = 0.0  # the tool's own time when it succeeded (0 from the cache); else the time waited
    cached: bool = False
    question: str | None = None  # a failed step's question to the user (which of several objects, `AmbiguousTarget`)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"status": self.status, "seconds": self.seconds}
        if self.outputs:
            data["outputs"] = self.outputs
        if self.error is not None:
            data["error"] = self.error
        if self.question is not None:
            data["question"] = self.question
        if self.cached:
            data["cached"] = True
        return data


class StepRecorder(Protocol):
    """Where a step's life is written. `progress` runs where the executor reports it (the job's own thread in
    this process); the others on the thread that waits for the step."""

    def started(self, step: CompiledStep, job_id: str) -> None:
        """The step's job was submitted."""

    def progress(self, step: CompiledStep, fraction: float, message: str) -> bool:
        """The job advanced; True when the step was cancelled from elsewhere (its job is then told to stop)."""

    def succeeded(self, step: CompiledStep, output: ToolOutput, *, cached: bool,
                  notes: Sequence[str] = ()) -> dict[str, Any]:
        """The step made `output` (its job noted `notes`); the output fields to keep (JSON), which later steps
        read."""

    def failed(self, step: CompiledStep, error: BaseException, *, cancelled: bool) -> None: ...

    def skipped(self, step: CompiledStep, reason: str) -> None: ...


class Unrecorded:
    """Records nothing: the step's output fields are kept as the tool gave them."""

    def started(self, step: CompiledStep, job_id: str) -> None:
        return None

    def progress(self, step: CompiledStep, fraction: float, message: str) -> bool:
        return False

    def succeeded(self, step: CompiledStep, output: ToolOutput, *, cached: bool,
                  notes: Sequence[str] = ()) -> dict[str, Any]:
        return output.model_dump(mode="json", exclude={"backend"}, exclude_none=True)

    def failed(self, step: CompiledStep, error: BaseException, *, cancelled: bool) -> None:
        return None

    def skipped(self, step: CompiledStep, reason: str) -> None:
        return None


UNRECORDED = Unrecorded()


class Relay:
    """A job's progress callback that drops reports until the one who waits for the job attaches its own."""

    def __init__(self) -> None:
        self._target: Callable[[float, str], None] | None = None

    def attach(self, target: Callable[[float, str], None]) -> None:
        self._target = target

    def __call__(self, fraction: float, message: str) -> None:
        if self._target is not None:
            self._target(fraction, message)


@dataclass
class StartedStep:
    """A step whose job was submitted (or whose outputs the cache holds), not yet waited for."""

    step: CompiledStep
    spec: JobSpec
    inputs: dict[str, str]  # input field → sha256 of the artifact it was started on
    relay: Relay
    handle: JobHandle | None = None  # None when the outputs came from the cache
    signature: str | None = None
    cached: CachedStep | None = None

    def cancel(self) -> None:
        if self.handle is not None:
            self.handle.cancel()


class StepRunner:
    """Runs compiled steps: one at a time (`start`, then `finish`: the agent starts a step's job ahead of its node),
    or a whole plan with independent steps in parallel (`run_plan`)."""

    def __init__(self, executor: Executor, store: ArtifactStore, settings: VitronSettings | None = None, *,
                 cache: StepCache | None = None, models: ModelsFile | None = None) -> None:
        self.executor = executor
        self.store = store
        self.settings = settings or VitronSettings()
        self.cache = cache
        self._models = models

    @property
    def models(self) -> ModelsFile:
        return self._models or read_models_file(self.settings.models_path)

    # -- one step ----------------------------------------------------------------------------------

    def spec(self, step: CompiledStep, outputs: Mapping[str, Mapping[str, Any]], *,
             session_id: str | None = None) -> JobSpec:
        """The step's job, with every input it reads filled in from earlier steps' `outputs` (name → fields)."""
        tool = get_tool(step.module)
        return JobSpec(module=tool.name, backend=step.backend, options=step.options,
                       input=step.tool_input(outputs), queue=tool.queue, session_id=session_id)

    def start(self, step: CompiledStep, outputs: Mapping[str, Mapping[str, Any]], *, session_id: str | None = None,
              use_cache: bool = True) -> StartedStep:
        """Submit the step's job, or find its outputs in the step cache. Raises what building the job raises."""
        spec = self.spec(step, outputs, session_id=session_id)
        started = StartedStep(step, spec, input_hashes(spec.input), Relay())
        if self.cache is not None and use_cache:
            models = self.models
            backend = get_tool(step.module).backend_name(step.backend, models)
            started.signature = step_signature(step.module, spec.input, backend, models, step.options)
            if started.signature is not None:
                started.cached = self._cached(started.signature)
                if started.cached is not None:
                    return started
        started.handle = self.executor.submit(spec, started.relay)
        return started

    def _cached(self, signature: str) -> CachedStep | None:
        assert self.cache is not None
        hit = self.cache.get(signature)
        if hit is None:
            return None
        refs = [ArtifactRef.model_validate(v) for v in hit.output.values() if isinstance(v, dict) and "sha256" in v]
        if all(self.store.exists(ref) for ref in refs):
            return hit
        self.cache.forget(signature)  # its artifacts left the store: run the step again
        return None

    def finish(self, started: StartedStep, *, recorder: StepRecorder = UNRECORDED, emit: Emit = ignore,
               on_success: Callable[[dict[str, Any]], None] | None = None) -> StepResult:
        """Wait for a started step and record how it ended. A failing step never raises: its result says why.

        `on_success(outputs)` runs as soon as the job's outputs are known, before they are recorded (the agent
        starts the next step's job there)."""
        step, tool = started.step, get_tool(started.step.module)
        where = {"position": step.position, "step": step.name, "module": tool.name}
        began = time.perf_counter()
        try:
            if started.cached is not None:
                emit({"event": "cached", **where, "signature": started.signature})
                output = tool.output_model.model_validate(started.cached.output)
                outputs = recorder.succeeded(step, output, cached=True)
                emit({"event": "step_finished", **where, "seconds": 0.0, "outputs": _names(outputs), "cached": True})
                return StepResult("succeeded", outputs, cached=True)
            handle = started.handle
            assert handle is not None
            recorder.started(step, started.spec.job_id)
            emit({"event": "step_started", **where, "job_id": started.spec.job_id, "command": step.command})

            def progress(fraction: float, message: str) -> None:
                emit({"event": "progress", **where, "fraction": fraction, "message": message})
                if recorder.progress(step, fraction, message):
                    handle.cancel()

            started.relay.attach(progress)
            result = handle.result()
            output = tool.output_model.model_validate(result.output)
            if on_success is not None:
                on_success(output.model_dump(mode="json", exclude={"backend"}, exclude_none=True))
            if started.signature is not None and self.cache is not None and not result.notes:
                # remembered before the success is recorded: a turn killed between the two and resumed finds the
                # step in the cache instead of running it again. A result with notes (a signal left out) is not:
                # a hit would repeat it without them, and after `vitron planner align` the step should run again.
                self._remember(started.signature, tool.name, result)
            outputs = recorder.succeeded(step, output, cached=False, notes=result.notes)
        except Exception as exc:  # a failing step must not end the run: the steps that read it are skipped instead
            cancelled = isinstance(exc, JobCancelled)
            recorder.failed(step, exc, cancelled=cancelled)
            emit({"event": "step_failed", **where, "error": error_text(exc)})
            return StepResult("cancelled" if cancelled else "failed", error=error_text(exc),
                              seconds=time.perf_counter() - began, question=question_of(exc))
        emit({"event": "step_finished", **where, "seconds": round(result.seconds, 3), "outputs": _names(outputs),
              "cached": False, **({"notes": result.notes} if result.notes else {})})
        return StepResult("succeeded", outputs, seconds=result.seconds)

    def _remember(self, signature: str, module: str, result: JobResult) -> None:
        """Record a step's outputs under its signature. A cache that cannot be written costs a rerun later, never
        the step that succeeded."""
        assert self.cache is not None
        try:
            self.cache.put(signature, module=module, backend=result.backend, output=result.output,
                           seconds=result.seconds)
        except Exception:
            log.warning("the step cache could not record %s", signature[:12], exc_info=True)

    def skip(self, step: CompiledStep, reason: str, *, recorder: StepRecorder = UNRECORDED,
             emit: Emit = ignore) -> StepResult:
        recorder.skipped(step, reason)
        emit({"event": "step_skipped", "position": step.position, "step": step.name, "module": step.module,
              "reason": reason})
        return StepResult("skipped", error=reason)

    def run(self, step: CompiledStep, outputs: Mapping[str, Mapping[str, Any]], *,
            recorder: StepRecorder = UNRECORDED, emit: Emit = ignore, session_id: str | None = None,
            use_cache: bool = True, control: RunControl | None = None) -> StepResult:
        """Run one step to its end; `control` can cancel it from another thread."""
        try:
            started = self.start(step, outputs, session_id=session_id, use_cache=use_cache)
        except Exception as exc:  # the job could not even be built or submitted
            recorder.failed(step, exc, cancelled=False)
            emit({"event": "step_failed", "position": step.position, "step": step.name, "module": step.module,
                  "error": error_text(exc)})
            return StepResult("failed", error=error_text(exc))
        with (control or RunControl()).running(step.name, started):
            return self.finish(started, recorder=recorder, emit=emit)

    # -- a whole plan ------------------------------------------------------------------------------

    def run_plan(self, plan: CompiledPlan, *, recorder: StepRecorder = UNRECORDED, emit: Emit = ignore,
                 session_id: str | None = None, use_cache: bool = True,
                 control: RunControl | None = None) -> dict[str, StepResult]:
        """Run every step, each as soon as the steps it reads have succeeded (independent steps in parallel); a step
        whose input failed is skipped. Returns each step's result by name."""
        control = control or RunControl()
        try:
            return self._run_plan(plan, recorder, emit, session_id, use_cache, control)
        except BaseException:  # Ctrl-C, or a fault of ours: the steps still running are told to stop
            control.cancel()
            raise

    def _run_plan(self, plan: CompiledPlan, recorder: StepRecorder, emit: Emit, session_id: str | None,
                  use_cache: bool, control: RunControl) -> dict[str, StepResult]:
        results: dict[str, StepResult] = {}
        status: dict[str, str] = {}
        running: dict[Future[StepResult], str] = {}
        pool = _waiters()
        while True:
            for step in plan.steps:
                if step.name in status:
                    continue
                reason = control.skip_reason(step.name)
                if reason is None and (failed := blocked_by(step, status)) is not None:
                    reason = f"step {failed} did not succeed"
                if reason is not None:
                    results[step.name] = self.skip(step, reason, recorder=recorder, emit=emit)
                    status[step.name] = "skipped"
            now = ready(plan.steps, status)
            outputs = {n: r.outputs for n, r in results.items() if r.status == "succeeded"}
            if len(now) == 1 and not running:  # a chain: its steps run on this thread, one after the other
                (step,) = now
                results[step.name] = self.run(step, outputs, recorder=recorder, emit=emit, session_id=session_id,
                                              use_cache=use_cache, control=control)
                status[step.name] = results[step.name].status
                continue
            for step in now:
                status[step.name] = "running"
                running[pool.submit(self.run, step, outputs, recorder=recorder, emit=emit,
                                    session_id=session_id, use_cache=use_cache, control=control)] = step.name
            if not running:
                return {s.name: results[s.name] for s in plan.steps}
            done, _ = wait(list(running), return_when=FIRST_COMPLETED)
            for future in done:
                name = running.pop(future)
                results[name] = future.result()
                status[name] = results[name].status


_WAITERS: ThreadPoolExecutor | None = None
_WAITERS_LOCK = threading.Lock()


def _waiters() -> ThreadPoolExecutor:
    """The threads that wait for running steps' jobs (the jobs themselves run on the executor), shared by every
    plan: a thread each costs more than a cached step."""
    global _WAITERS
    with _WAITERS_LOCK:
        if _WAITERS is None:
            _WAITERS = ThreadPoolExecutor(max_workers=64, thread_name_prefix="vitron-step")
        return _WAITERS


class RunControl:
    """Cancels a run's steps from another thread: one step by name, or the whole run. A running step stops at its
    job's next progress report; a step not started yet is skipped when its turn comes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._live: dict[str, StartedStep] = {}
        self._cancelled: set[str] = set()
        self._all = False

    def cancel(self, step: str | None = None) -> None:
        """Cancel one step by name, or every step (None)."""
        with self._lock:
            if step is None:
                self._all = True
            else:
                self._cancelled.add(step)
            live = [s for n, s in self._live.items() if step is None or n == step]
        for started in live:
            started.cancel()

    def skip_reason(self, step: str) -> str | None:
        return "cancelled by the user" if self._all or step in self._cancelled else None

    @contextmanager
    def running(self, step: str, started: StartedStep) -> Iterator[None]:
        """While a started step is waited for, a cancel reaches its job."""
        with self._lock:
            self._live[step] = started
            cancel_now = self._all or step in self._cancelled
        if cancel_now:
            started.cancel()
        try:
            yield
        finally:
            with self._lock:
                self._live.pop(step, None)


def input_hashes(data: Mapping[str, Any]) -> dict[str, str]:
    """Field → content hash of the artifacts a tool input names directly (what a head-started job was started on)."""
    return {f: v["sha256"] for f, v in data.items() if isinstance(v, dict) and "sha256" in v}


def _names(outputs: Mapping[str, Any]) -> dict[str, str]:
    """How an event names a step's artifacts: by alias when recorded, else by a short content hash."""
    return {k: v.get("alias") or v["sha256"][:12] for k, v in outputs.items() if isinstance(v, dict) and "sha256" in v}
