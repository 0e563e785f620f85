"""`Workflow`: a workflow file you load, check, describe, run (or stream, or cancel) and run over many inputs.

    with Workflow.load("cutout.yaml") as flow:
        flow.validate()                                  # InvalidInput naming the step and field
        result = flow.run({"photo": "cup.png", "colour": "green"}).raise_for_status()
        print(result.outputs["result"])                  # an ArtifactRef in the store
        summary = flow.batch([{"photo": p} for p in paths])
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from memory import ArtifactStore, BatchRecords, Database, StepCache
from schemas import (
    ARTIFACT_KINDS,
    ArtifactRef,
    InvalidInput,
    Kind,
    VitronSettings,
    WorkflowDefinition,
    WorkflowFailed,
)
from tools.executors import Executor, make_executor

from .batch import BatchResult, run_batch
from .compiler import CompiledWorkflow, compile_workflow, parse_definition
from .inputs import coerce_inputs
from .runner import Emit, RunControl, StepResult, StepRunner, ignore

_END = object()


class Runtime:
    """What runs need, made on first use and shared by a workflow's runs: the artifact store, the executor the
    settings choose (in-process, or Celery workers), the step cache and batch records on the session database."""

    def __init__(self, settings: VitronSettings | None = None, *, store: ArtifactStore | None = None,
                 executor: Executor | None = None, database: Database | None = None) -> None:
        self.settings = settings or VitronSettings()
        self.store = store or ArtifactStore.from_settings(self.settings)
        self._executor, self._database = executor, database
        self._owned: list[Any] = []
        self._lock = threading.Lock()

    @property
    def executor(self) -> Executor:
        with self._lock:
            if self._executor is None:
                self._executor = make_executor(self.settings, self.store)
                self._owned.append(self._executor)
            return self._executor

    @property
    def database(self) -> Database:
        with self._lock:
            if self._database is None:
                self._database = Database.from_settings(self.settings)
                self._owned.append(self._database)
            return self._database

    @cached_property
    def cache(self) -> StepCache:
        return StepCache(self.database)

    @cached_property
    def batches(self) -> BatchRecords:
        return BatchRecords(self.database)

    @cached_property
    def runner(self) -> StepRunner:
        return StepRunner(self.executor, self.store, self.settings, cache=self.cache)

    def close(self) -> None:
        for owned in reversed(self._owned):
            owned.close()
        self._owned.clear()


@dataclass(frozen=True)
class WorkflowResult:
    """A run's outputs by name (artifact refs, or JSON values for regions, numbers and text) and every step's
    result. An output whose step did not succeed is missing; `raise_for_status()` raises for the first failure."""

    outputs: dict[str, Any]
    steps: dict[str, StepResult]
    kinds: dict[str, Kind] = field(default_factory=dict)
    store: ArtifactStore | None = field(default=None, repr=False, compare=False)  # where the artifacts are

    @property
    def ok(self) -> bool:
        return all(r.status == "succeeded" for r in self.steps.values())

    @property
    def failures(self) -> dict[str, str]:
        """Each step that did not succeed: its status and why."""
        return {name: f"{r.status}: {r.error}" for name, r in self.steps.items() if r.status != "succeeded"}

    def raise_for_status(self) -> WorkflowResult:
        """The result itself when every step succeeded; else `WorkflowFailed` for the first step that failed or was
        cancelled (or skipped, when nothing failed: a run cancelled before those steps started)."""
        unsuccessful = [(n, r) for n, r in self.steps.items() if r.status != "succeeded"]
        if unsuccessful:
            name, result = next(((n, r) for n, r in unsuccessful if r.status != "skipped"), unsuccessful[0])
            raise WorkflowFailed(f"step {name} {result.status}: {result.error}", field=f"steps.{name}",
                                 fix="see the step's error")
        return self

    def to_json(self) -> dict[str, Any]:
        """Outputs as `{kind, path, sha256, media_type}` (artifacts) or `{kind, value}`; steps with status, error,
        cached."""
        outputs: dict[str, Any] = {}
        for name, value in self.outputs.items():
            if isinstance(value, ArtifactRef):
                path = str(self.store.path(value)) if self.store is not None else None
                outputs[name] = {"kind": value.kind, "path": path, "sha256": value.sha256,
                                 "media_type": value.media_type}
            else:
                outputs[name] = {"kind": self.kinds.get(name), "value": value}
        steps = {name: {k: v for k, v in {"status": r.status, "error": r.error, "cached": r.cached,
                                           "seconds": round(r.seconds, 4)}.items() if v is not None}
                 for name, r in self.steps.items()}
        return {"ok": self.ok, "outputs": outputs, "steps": steps}


class WorkflowRun:
    """A run going on in the background: its events as they happen, cancel (one step or all), its result."""

    def __init__(self, workflow: Workflow, inputs: Mapping[str, Any], cache: bool) -> None:
        self.control = RunControl()
        self._events: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._result: WorkflowResult | BaseException | None = None
        self._thread = threading.Thread(target=self._work, args=(workflow, inputs, cache), daemon=True,
                                        name="vitron-workflow")
        self._thread.start()

    def _work(self, workflow: Workflow, inputs: Mapping[str, Any], cache: bool) -> None:
        try:
            self._result = workflow.run(inputs, cache=cache, on_event=self._events.put, control=self.control)
        except BaseException as exc:  # handed to the reader
            self._result = exc
        self._events.put(_END)

    def events(self) -> Iterator[dict[str, Any]]:
        """The run's events until it ends (step_started, progress, cached, step_finished, step_failed…); the last
        one is `end`, with the outputs' refs. An error that stopped the run before any step is raised here."""
        while (event := self._events.get()) is not _END:
            yield event
        result = self.result()
        yield {"event": "end", "ok": result.ok,
               "outputs": {k: v.model_dump(mode="json") if isinstance(v, ArtifactRef) else v
                           for k, v in result.outputs.items()}}

    def cancel(self, step: str | None = None) -> None:
        """Cancel one step by name, or the whole run."""
        self.control.cancel(step)

    def result(self, timeout: float | None = None) -> WorkflowResult:
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise TimeoutError(f"the workflow did not finish within {timeout} s")
        if isinstance(self._result, BaseException):
            raise self._result
        assert self._result is not None
        return self._result


class Workflow:
    """A workflow definition with what it takes to run it. Close it (or use `with`) when done."""

    def __init__(self, definition: WorkflowDefinition | Mapping[str, Any], *, source: Path | None = None,
                 settings: VitronSettings | None = None, runtime: Runtime | None = None) -> None:
        self.definition = parse_definition(definition)
        self.source = source
        self._runtime = runtime
        self._owns_runtime = runtime is None
        self._settings = settings

    @classmethod
    def load(cls, path: str | Path, **kwargs: Any) -> Workflow:
        """Read a workflow file (YAML or JSON)."""
        path = Path(path).expanduser()
        try:
            text = path.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise InvalidInput(f"cannot read the workflow file {path}: {exc}", field="workflow",
                               fix="give the path of a YAML or JSON workflow file") from None
        return cls.parse(text, source=path, **kwargs)

    @classmethod
    def parse(cls, text: str, **kwargs: Any) -> Workflow:
        """A workflow from YAML or JSON text (JSON is YAML too)."""
        import yaml

        try:
            document = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            where = getattr(exc, "problem_mark", None)
            at = f" at line {where.line + 1}, column {where.column + 1}" if where is not None else ""
            raise InvalidInput(f"the workflow is not valid YAML or JSON{at}: {getattr(exc, 'problem', exc)}",
                               field="workflow", fix="check the file's indentation and quoting") from None
        return cls(document, **kwargs)

    @property
    def name(self) -> str:
        return self.definition.name or (self.source.stem if self.source else "workflow")

    @property
    def runtime(self) -> Runtime:
        if self._runtime is None:
            self._runtime = Runtime(self._settings)
        return self._runtime

    @cached_property
    def compiled(self) -> CompiledWorkflow:
        return compile_workflow(self.definition, self.runtime.store)

    def validate(self) -> CompiledWorkflow:
        """Compile the workflow: every module, selector, kind and default checked; `InvalidInput` if not."""
        return self.compiled

    def describe(self) -> dict[str, Any]:
        """Inputs and outputs with their kinds, and the steps in the order they run."""
        compiled = self.compiled
        return {
            "name": self.name, "description": self.definition.description,
            "inputs": {n: {"kind": s.type, "required": s.required, **({"default": s.default} if not s.required
                                                                         else {}), "description": s.description}
                       for n, s in compiled.inputs.items()},
            "outputs": {n: {"kind": k, "from": str(compiled.outputs[n])} for n, k in compiled.output_kinds().items()},
            "steps": [{"name": s.name, "type": f"{s.module}@v{s.version}", "after": list(s.depends_on())}
                      for s in compiled.steps],
        }

    def run(self, inputs: Mapping[str, Any] | None = None, *, cache: bool = True, on_event: Emit | None = None,
            control: RunControl | None = None) -> WorkflowResult:
        """Run once on `inputs` (paths, arrays or refs for artifacts; values for the rest) and wait for the end.
        Independent steps run in parallel; a failing step skips what reads it (see `WorkflowResult`)."""
        runtime = self.runtime
        plan = self.compiled.bind(coerce_inputs(self.compiled.inputs, dict(inputs or {}), runtime.store))
        results = runtime.runner.run_plan(plan, emit=on_event or ignore, use_cache=cache, control=control)
        return self._result(results)

    def start(self, inputs: Mapping[str, Any] | None = None, *, cache: bool = True) -> WorkflowRun:
        """Run in the background: read its events, cancel it, wait for its result."""
        self.compiled  # noqa: B018 -- a workflow that does not compile fails here, not on the run's thread
        return WorkflowRun(self, dict(inputs or {}), cache)

    def stream(self, inputs: Mapping[str, Any] | None = None, *, cache: bool = True) -> Iterator[dict[str, Any]]:
        """Run, yielding the events as they happen; the last is `end` with the outputs."""
        yield from self.start(inputs, cache=cache).events()

    @property
    def records(self) -> BatchRecords:
        """Where this workflow's batches are recorded."""
        return self.runtime.batches

    def batch(self, items: Sequence[Mapping[str, Any]], **kwargs: Any) -> BatchResult:
        """Run over many items, recorded so that a stopped batch goes on where it stopped (`run_batch`)."""
        return run_batch(self, items, **kwargs)

    def _result(self, results: dict[str, StepResult]) -> WorkflowResult:
        compiled = self.compiled
        kinds = compiled.output_kinds()
        outputs: dict[str, Any] = {}
        for name, ref in compiled.outputs.items():
            result = results.get(ref.step)
            if result is None or result.status != "succeeded" or ref.field not in result.outputs:
                continue
            value = result.outputs[ref.field]
            outputs[name] = ArtifactRef.model_validate(value) if kinds[name] in ARTIFACT_KINDS else value
        return WorkflowResult(outputs, results, kinds, self.runtime.store)

    def close(self) -> None:
        if self._runtime is not None and self._owns_runtime:
            self._runtime.close()

    def __enter__(self) -> Workflow:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

