"""Batches: one workflow over many items, each item's status, outputs or error recorded in SQL as it ends.

A batch is known by its workflow and its items as given, so running the same batch again (after a crash, a
kill -9, a Ctrl-C) finds its records and does only the items not done; a failing item is recorded with its error
and the batch goes on. Items come from a list of input mappings (`expand_items` makes them from globs, folders and
JSONL manifests). Items run `parallel` at a time; each item's steps run as any workflow's, cached by signature.
"""

from __future__ import annotations

import glob
import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from memory import BatchItem, BatchRecords
from schemas import ARTIFACT_KINDS, InputSpec, InvalidInput, VitronError, WorkflowDefinition, error_text

from .inputs import is_file

BATCH_VERSION = 1

ItemEvent = Callable[[dict[str, Any]], None]


class Batchable(Protocol):
    """What a batch runs: a workflow (`workflows.Workflow`)."""

    definition: WorkflowDefinition

    @property
    def name(self) -> str: ...

    @property
    def records(self) -> BatchRecords: ...

    def validate(self) -> Any: ...

    def run(self, inputs: Mapping[str, Any], *, cache: bool = True, on_event: ItemEvent | None = None) -> Any: ...


@dataclass(frozen=True)
class BatchResult:
    """Where a batch stands after a run: every item (done before or now), and how many this run did."""

    batch_id: str
    items: list[BatchItem]
    ran: int

    @property
    def failures(self) -> list[BatchItem]:
        return [i for i in self.items if i.status == "failed"]

    @property
    def succeeded(self) -> int:
        return sum(i.status == "succeeded" for i in self.items)


def batch_id(workflow: Mapping[str, Any], items: Sequence[Mapping[str, Any]]) -> str:
    """The batch's identity: its workflow and its items as given."""
    doc = {"v": BATCH_VERSION, "workflow": workflow, "items": list(items)}
    return hashlib.sha256(json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def run_batch(workflow: Batchable, items: Sequence[Mapping[str, Any]], *, name: str | None = None,
              restart: bool = False, parallel: int = 2, cache: bool = True,
              on_event: ItemEvent | None = None) -> BatchResult:
    """Run `workflow` over `items` (each a mapping of inputs, as `Workflow.run` takes them). Items this batch
    finished before are not done again (`restart=True`: every item afresh). Events: `batch_started` (items, todo),
    `item_started` and `item_finished` (position, status, outputs or error), and each step's events with the item's
    position as `item`."""
    specs = workflow.validate().inputs  # a workflow that does not compile fails before any item
    given = [_as_given(item, specs, f"items[{index}]") for index, item in enumerate(items)]
    definition = workflow.definition.model_dump(mode="json")
    identity = batch_id(definition, given)
    records = workflow.records
    records.open(identity, name=name or workflow.name, workflow=definition, items=given)
    if restart:
        records.reset(identity)
    todo = records.items(identity, status=("pending", "failed"))
    emit = on_event or (lambda event: None)
    emit({"event": "batch_started", "batch_id": identity, "items": len(given), "todo": len(todo)})

    def one(item: BatchItem) -> None:
        started = datetime.now(UTC)
        emit({"event": "item_started", "position": item.position, "inputs": item.inputs})

        def step_event(event: dict[str, Any]) -> None:
            emit({**event, "item": item.position})

        try:
            result = workflow.run(item.inputs, cache=cache, on_event=step_event)
        except Exception as exc:  # the item's own inputs (a missing file, a wrong value), or a fault: recorded
            error = exc.to_dict() if isinstance(exc, VitronError) else {
                "error": type(exc).__name__, "field": None, "problem": error_text(exc), "fix": None}
        else:
            if result.ok:
                outputs = result.to_json()["outputs"]
                records.succeed(identity, item.position, outputs, started=started)
                emit({"event": "item_finished", "position": item.position, "status": "succeeded", "outputs": outputs})
                return
            step, reason = next(iter(result.failures.items()))
            error = {"error": "WorkflowFailed", "field": f"steps.{step}", "problem": f"step {step} {reason}",
                     "fix": None}
        records.fail(identity, item.position, error, started=started)
        emit({"event": "item_finished", "position": item.position, "status": "failed", "error": error})

    pool = ThreadPoolExecutor(max_workers=max(1, parallel), thread_name_prefix="vitron-item")
    try:
        for future in [pool.submit(one, item) for item in todo]:
            future.result()
    except BaseException:  # Ctrl-C: the items not started never start; what ended is recorded
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()
    return BatchResult(identity, records.items(identity), len(todo))


def _as_given(item: Mapping[str, Any], specs: Mapping[str, InputSpec], where: str) -> dict[str, Any]:
    """An item's inputs as recorded: JSON, with an artifact input's file path made absolute (the same files named
    from another folder are the same item). Arrays cannot be recorded: store them and give their refs."""
    given: dict[str, Any] = {}
    for key, value in item.items():
        spec = specs.get(key)
        if hasattr(value, "model_dump"):
            value = value.model_dump(mode="json")
        elif spec is not None and spec.type in ARTIFACT_KINDS and isinstance(value, str | Path):
            value = str(Path(value).expanduser().absolute())
        try:
            json.dumps(value)
        except (TypeError, ValueError):
            raise InvalidInput(f"a batch item's {key} is {type(value).__name__}, which cannot be recorded",
                               field=f"{where}.{key}", fix="give a file path, an artifact ref or a JSON value; "
                                                          "put an array in the store first (store.put_image)") from None
        given[key] = value
    return given


def expand_items(specs: Mapping[str, InputSpec], inputs: Mapping[str, str], manifests: Sequence[str | Path] = (),
                 ) -> list[dict[str, Any]]:
    """Items from the command line: each artifact input given as a glob or a folder becomes one item per file
    (sorted; several such inputs pair up in order, and must match in number); other inputs apply to every item.
    A JSONL manifest gives one JSON object of inputs per line, merged over those."""
    listed: dict[str, list[str]] = {}
    shared: dict[str, Any] = {}
    for name, value in inputs.items():
        spec = specs.get(name)
        if spec is not None and spec.type in ARTIFACT_KINDS and not is_file(Path(value).expanduser()):
            listed[name] = _files(value, f"inputs.{name}")
        else:
            shared[name] = value
    lengths = {name: len(files) for name, files in listed.items()}
    if len(set(lengths.values())) > 1:
        raise InvalidInput(f"the listed inputs have different numbers of files: {lengths}", field="inputs",
                           fix="give each listed input the same number of files, or one manifest")
    items = [{**shared, **{name: files[i] for name, files in listed.items()}}
             for i in range(next(iter(lengths.values()), 1 if shared and not manifests else 0))]
    for manifest in manifests:
        items += [{**shared, **line} for line in read_manifest(manifest)]
    if not items:
        raise InvalidInput("the batch has no items", field="inputs",
                           fix="give an input as a glob ('photos/*.jpg'), a folder or a JSONL manifest")
    return items


def _files(pattern: str, where: str) -> list[str]:
    path = Path(pattern).expanduser()
    found = sorted(str(p) for p in path.iterdir() if p.is_file()) if path.is_dir() else sorted(
        p for p in glob.glob(str(path)) if Path(p).is_file())
    if not found:
        raise InvalidInput(f"no file matches {pattern!r}", field=where, fix="give a file, a folder or a glob")
    return found


def read_manifest(path: str | Path) -> list[dict[str, Any]]:
    """The items of a JSONL manifest: one JSON object of inputs per line (blank lines skipped). Relative paths in it
    are read from the manifest's folder."""
    path = Path(path).expanduser()
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"cannot read the manifest {path}: {exc}", field="inputs",
                           fix="give a JSONL file: one JSON object of inputs per line") from None
    items = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InvalidInput(f"line {number} of {path.name} is not JSON: {exc.msg}", field="inputs",
                               fix="one JSON object per line") from None
        if not isinstance(item, dict):
            raise InvalidInput(f"line {number} of {path.name} is not a JSON object", field="inputs",
                               fix='write {"photo": "cat.png"} per line')
        items.append({k: str(path.parent / v) if isinstance(v, str) and is_file(path.parent / v) else v
                      for k, v in item.items()})
    return items

