"""From a conversation to a workflow: the steps a session ran, written as a workflow that does the same again.

Its inputs are what the steps read that no exported step made (the turn's uploads, named by their aliases, with
the session's own files as defaults); each step keeps its module, command, region, signal and the backend that
ran it; its outputs are everything the steps made, named by alias. Run on the same inputs it gives the same files.
"""

from __future__ import annotations

from typing import Any

from memory import ArtifactEntry, SessionMemory, StepRecord
from schemas import InvalidInput, step_number
from tools import get_tool

from .kinds import output_of_kind


def export_session(memory: SessionMemory, session_id: str, *, turn: int | None = None) -> dict[str, Any]:
    """The workflow document (a dict, for YAML or JSON) reproducing a session's succeeded steps, or one turn's
    (`turn`: the turn's number, as `vitron sessions show` lists them)."""
    info = memory.get_session(session_id)
    turns = memory.turns(session_id)
    wanted: int | None = None
    if turn is not None:
        asked = next((t for t in turns if t.seq == turn), None)
        if asked is None:
            raise InvalidInput(f"session {session_id[:8]} has no turn {turn}", field="turn",
                               fix=f"give one of 1…{len(turns)}" if turns else "the session has no turns yet")
        users = [t for t in turns if t.role == "user" and t.seq <= turn]
        wanted = users[-1].id if users else None
    steps = [s for s in memory.steps(session_id) if s.status == "succeeded" and (wanted is None or s.turn_id == wanted)]
    if not steps:
        where = f"turn {turn}" if turn is not None else "it"
        raise InvalidInput(f"session {session_id[:8]} has no step that succeeded in {where}", field="turn",
                           fix="export a turn whose steps ran")
    table = memory.artifact_table(session_id)
    made_by_step: dict[int, list[ArtifactEntry]] = {}
    for entry in table:
        if entry.step_id is not None:
            made_by_step.setdefault(entry.step_id, []).append(entry)
    names = {step.id: f"step{number}" for number, step in enumerate(steps, start=1)}
    producer = {entry.ref.sha256: (names[step.id], entry.ref.kind) for step in steps
                for entry in made_by_step.get(step.id, [])}
    by_sha = {entry.ref.sha256: entry for entry in reversed(table)}  # a content's first row, not an undo's
    inputs: dict[str, Any] = {}
    written = []
    for step in steps:
        written.append(_step(step, names[step.id], steps, names, producer, by_sha, inputs))
    outputs = {entry.alias: f"$steps.{names[step.id]}.{_output_field(step.module, entry.ref.kind)}"
               for step in steps for entry in made_by_step.get(step.id, [])}
    title = info.title or session_id[:8]
    which = f", turn {turn}" if turn is not None else ""
    return {"version": 1, "name": f"session {title}{which}",
            "description": f"Exported from session {session_id}{which} ({len(turns)} turns).",
            "inputs": inputs, "steps": written, "outputs": outputs}


def _step(step: StepRecord, name: str, steps: list[StepRecord], names: dict[int, str],
          producer: dict[str, tuple[str, str]], by_sha: dict[str, ArtifactEntry],
          inputs: dict[str, Any]) -> dict[str, Any]:
    tool = get_tool(step.module)
    invocation = step.invocation
    written: dict[str, Any] = {"name": name, "type": f"{tool.name}@v{tool.version}"}
    if step.backend:
        written["backend"] = step.backend
    for field, value in invocation.get("inputs", {}).items():
        if isinstance(value, str) and (number := step_number(value)) is not None:
            earlier = next(s for s in steps if s.turn_id == step.turn_id and s.position == number)
            written[field] = f"$steps.{names[earlier.id]}.{_output_field(earlier.module, field)}"
        elif isinstance(value, dict) and value.get("sha256") in producer:
            source, kind = producer[value["sha256"]]
            written[field] = f"$steps.{source}.{_output_field(_module_of(source, steps, names), kind)}"
        elif isinstance(value, dict):
            entry = by_sha.get(value["sha256"])
            alias = entry.alias if entry is not None else f"{field}{len(inputs) + 1}"
            default = _without_aliases(value)
            inputs[alias] = {"type": value["kind"], "default": default,
                             "description": entry.describe() if entry is not None else ""}
            written[field] = f"$inputs.{alias}"
    for key in ("command", "region", "signal"):
        if invocation.get(key) not in (None, ""):
            written[key] = _without_aliases(invocation[key])
    written.update(invocation.get("params") or {})  # frames, fps, seeds… of steps a workflow ran
    return written


def _without_aliases(value: Any) -> Any:
    """A session's names for artifacts mean nothing to a workflow."""
    if isinstance(value, dict):
        return {k: _without_aliases(v) for k, v in value.items() if k != "alias"}
    if isinstance(value, list):
        return [_without_aliases(v) for v in value]
    return value


def _module_of(name: str, steps: list[StepRecord], names: dict[int, str]) -> str:
    return next(s.module for s in steps if names[s.id] == name)


def _output_field(module: str, kind: str) -> str:
    return output_of_kind(module, kind) or kind
