"""Which artifacts a step reads: named aliases, `@N` (an earlier step's output), and what is left implicit.

A planner often leaves inputs out ("make it green"), as people do. The rule: an input left out is the most
recent artifact of the fitting kind — an earlier step of this plan first, then the session's artifact
table (where an undo's row stands for the artifact it brought back). Explicit aliases always win. When the
newest candidates fit equally (two uploads of one turn, or two outputs of independent steps: neither made from
the other), the agent asks instead of guessing. An optional input (a mask for an edit) is filled only when it
was made from the same source as the image being edited. A tool that reads one of several inputs (H: an image or a
video) gets the newest artifact of any of their kinds.

A step that takes a region may read it from an earlier step (`<input name="region">@1</input>`, or `@1` alone
where step 1 makes no artifact the step takes): that step's region output (H's best box, B's mask box); or from a
remembered boxes artifact (`@boxes1`), whose best box the compiler reads.

A plan may also give an artifact by ref (`{sha256, kind, …}`: a chat model's JSON, an edited plan, a workflow's
input). Such a ref must be the session's own, in its artifact table, or one of this turn's uploads; it is replaced by
the ref recorded for that content (`recorded_plan`), so its kind and shape are never the plan's word. Content of
another session is refused as if it did not exist.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

from pydantic import ValidationError

from memory import ArtifactEntry, ArtifactStore, restored
from memory.sessions import ALIAS_PREFIXES
from schemas import (
    ArtifactRef,
    InvalidInput,
    Invocation,
    ScribbleRegion,
    StepOutput,
    VitronError,
    a_or_an,
    step_number,
)
from tools import get_tool

from .kinds import artifact_inputs, artifact_outputs, input_fields, output_of_kind

_UNNAMED = re.compile(r"^input\d*$")


class Ambiguous(VitronError):
    """Two artifacts fit an input equally well: the agent asks the user which one is meant."""

    def __init__(self, question: str, candidates: list[str]) -> None:
        super().__init__(question, field="inputs", fix="name the one you mean, e.g. " + f"@{candidates[0]}")
        self.question = question
        self.candidates = candidates


@dataclass(frozen=True)
class Callee:
    """What a plan's step calls, as the resolver sees it: a tool or a saved workflow, with its artifact inputs
    (field → kind, required) and artifact outputs (field → kind). A tool's fields are named by their kinds."""

    name: str
    inputs: dict[str, tuple[str, bool]]
    outputs: dict[str, str]
    one_of: tuple[str, ...] = ()  # inputs of which exactly one is given (`VisionTool.one_of`)
    takes_region: bool = False  # it has a `region` field a region or a boxes artifact can fill
    region_output: str | None = None  # its output field of kind region (H's `region`, B's `box`)

    @property
    def output_kinds(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(self.outputs.values()))

    def output_of_kind(self, kind: str) -> str | None:
        return next((f for f, k in self.outputs.items() if k == kind), None)


@cache
def tool_callee(module: str) -> Callee:
    """A tool as a callee (any spelling of its module)."""
    tool = get_tool(module)
    region = input_fields(tool.name).get("region")
    return Callee(tool.name, {f: (f, required) for f, required in artifact_inputs(tool.name).items()},
                  dict(artifact_outputs(tool.name)), one_of=tool.one_of,
                  takes_region=region is not None and region.kind == "region",
                  region_output=output_of_kind(tool.name, "region"))


def output_kinds(tool_name: str) -> tuple[str, ...]:
    """The kinds of artifact a tool's output holds."""
    return tool_callee(tool_name).output_kinds


Callees = Callable[[str], Callee]
"""Finds what a step's `module` names (a tool, else a saved workflow); raises `InvalidInput` for neither."""


@dataclass(frozen=True)
class StepInputs:
    """A step's artifact inputs after resolution: a ref known now, or the output of the turn's step P
    (`StepOutput(step="P", field=…)`, its output field of the kind this field takes)."""

    values: dict[str, ArtifactRef | StepOutput]

    def to_json(self) -> dict[str, Any]:
        """As session memory records a step's inputs: refs as JSON, a step's output as `@P`."""
        return {k: f"@{v.step}" if isinstance(v, StepOutput) else v.model_dump(mode="json")
                for k, v in self.values.items()}


class _Table:
    """The session's artifact table, newest first, with each artifact's ancestry for the tie rule; and this turn's
    uploads not recorded yet (a drawn scribble), which a plan may give by ref too."""

    def __init__(self, entries: tuple[ArtifactEntry, ...], uploads: Iterable[ArtifactRef] = (),
                 store: ArtifactStore | None = None) -> None:
        self.entries = entries
        self.by_alias = {e.alias: e for e in entries}
        self.by_sha: dict[str, ArtifactEntry] = {}
        for entry in entries:  # a content's own row comes before an undo's rows of it
            self.by_sha.setdefault(entry.ref.sha256, entry)
        self.uploads = {ref.sha256: ref for ref in uploads}
        self.store = store
        self._read: dict[str, ArtifactRef] = {}

    def recorded(self, ref: ArtifactRef, where: str, field: str) -> ArtifactRef:
        """The session's own ref for content a plan gives by ref (the row its alias names, else the content's
        own row; else this turn's upload of it): kind, media type, shape and alias as recorded, never as given.
        `InvalidInput` naming `field` for content the session does not hold."""
        entry = self.by_alias.get(ref.alias or "")
        if entry is None or entry.ref.sha256 != ref.sha256:
            entry = self.by_sha.get(ref.sha256)
        found = entry.ref if entry is not None else self.uploads.get(ref.sha256)
        if found is None:
            alias = next((e.alias for e in reversed(self.entries) if e.ref.kind == ref.kind),
                         f"{ALIAS_PREFIXES[ref.kind]}1")
            raise InvalidInput(f"{where} gives {ref.kind} {ref.short} by ref, which is not an artifact of this "
                               "session", field=field, fix=f"name it by its alias (@{alias}), or upload it in this "
                                                           "session")
        if found.shape or found.kind in ("boxes", "text") or self.store is None:
            return found
        if found.sha256 not in self._read:  # recorded without its shape: read from the object's header
            from .stored import stored_ref

            self._read[found.sha256] = stored_ref(self.store, found, field=field)
        return self._read[found.sha256]

    def ancestors(self, alias: str) -> set[str]:
        seen: set[str] = set()
        stack = list(self.by_alias[alias].parents) if alias in self.by_alias else []
        while stack:
            parent = stack.pop()
            if parent not in seen:
                seen.add(parent)
                stack.extend(self.by_alias[parent].parents if parent in self.by_alias else ())
        return seen

    def sources(self, alias: str) -> set[str]:
        """The uploads (or whatever has no parents) an artifact comes from; itself when it is one."""
        lineage = self.ancestors(alias) | {alias}
        return {a for a in lineage if a not in self.by_alias or not self.by_alias[a].parents}

    def newest(self, *kinds: str) -> list[ArtifactEntry]:
        """The newest artifacts of the kinds that fit equally: same turn, same origin, neither made from the other."""
        of_kind = [e for e in reversed(self.entries) if e.ref.kind in kinds]
        if not of_kind:
            return []
        first = of_kind[0]
        ties = [first]
        for other in of_kind[1:]:
            if (other.turn_seq != first.turn_seq or (other.step_id is None) != (first.step_id is None)
                    or other.alias in self.ancestors(first.alias)):
                continue
            ties.append(other)
        return ties

    def resolve(self, alias: str) -> ArtifactEntry:
        name = alias.lstrip("@")
        if name not in self.by_alias:
            known = ", ".join("@" + e.alias for e in self.entries[-12:]) or "none yet"
            raise InvalidInput(f"there is no artifact @{name} in this session", field="inputs",
                               fix=f"use one of the session's artifacts ({known})")
        return self.by_alias[name]


def recorded_plan(steps: Sequence[Invocation], table: Sequence[ArtifactEntry], uploads: Iterable[ArtifactRef] = (),
                  store: ArtifactStore | None = None) -> list[Invocation]:
    """The plan with every artifact it gives by ref (an input, a scribble's mask, a ref anywhere in `params`)
    replaced by the session's own ref for that content (`table`, else `uploads`: this turn's uploads not recorded
    yet, their shapes read from the store). `InvalidInput` naming the step and the field for content that is
    neither: another session's artifacts are not this plan's to read. `store` reads a shape not recorded."""
    known = _Table(tuple(table), uploads, store)
    return [_recorded_step(index, inv, known) for index, inv in enumerate(steps, start=1)]


def _recorded_step(index: int, inv: Invocation, table: _Table) -> Invocation:
    where = f"step {index} ({inv.module})"
    update: dict[str, Any] = {}
    if any(isinstance(v, ArtifactRef) for v in inv.inputs.values()):
        update["inputs"] = {k: table.recorded(v, where, f"inputs.{k}") if isinstance(v, ArtifactRef) else v
                            for k, v in inv.inputs.items()}
    if isinstance(inv.region, ScribbleRegion):
        mask = table.recorded(inv.region.mask, where, "region.mask")
        if mask.kind != "mask":
            raise InvalidInput(f"{where} scribbles with {_show(mask)}, which is {a_or_an(mask.kind)}, not a mask",
                               field="region.mask", fix="scribble with a mask")
        update["region"] = inv.region.model_copy(update={"mask": mask})
    if inv.params:
        update["params"] = {k: _recorded_json(v, where, f"params.{k}", table) for k, v in inv.params.items()}
    return inv.model_copy(update=update) if update else inv


def _recorded_json(value: Any, where: str, field: str, table: _Table) -> Any:
    """A plan's JSON parameter with every artifact ref in it (a region's scribble, a workflow's input) the
    session's own."""
    if isinstance(value, Mapping):
        if "sha256" in value:
            try:
                ref = ArtifactRef.model_validate(dict(value))
            except ValidationError:
                return value  # no artifact ref: the tool's own schema refuses it where it should be one
            return table.recorded(ref, where, field).model_dump(mode="json", exclude_none=True)
        return {k: _recorded_json(v, where, f"{field}.{k}", table) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_recorded_json(v, where, f"{field}[{i}]", table) for i, v in enumerate(value)]
    return value


def resolve_plan_inputs(steps: Sequence[Invocation], table: tuple[ArtifactEntry, ...], offset: int = 0,
                        callees: Callees = tool_callee, uploads: Iterable[ArtifactRef] = (),
                        store: ArtifactStore | None = None) -> list[StepInputs]:
    """Every step's artifact inputs: explicit ones checked, missing ones filled (or `Ambiguous` raised). An input
    given by ref must be the session's (or one of `uploads`, this turn's not recorded yet), and becomes the ref
    recorded for it (see `recorded_plan`, which also checks a plan's other refs; `store` reads a shape not
    recorded).

    `offset` is how many steps earlier rounds of this turn ran: `@N` in this plan becomes `@{offset + N}`.
    """
    known = _Table(table, uploads, store)
    plan = _Plan(steps, [callees(inv.module) for inv in steps], offset)
    resolved: list[StepInputs] = []
    for index in range(1, len(steps) + 1):
        resolved.append(_resolve_step(index, plan, resolved, known))
    return resolved


@dataclass(frozen=True)
class _Plan:
    steps: Sequence[Invocation]
    callees: list[Callee]
    offset: int

    def earlier(self, number: int, spelled: str, index: int) -> Callee:
        """What the plan's step `number` calls, which step `index` reads as `spelled`: it must come before."""
        if not 1 <= number < index:
            earlier = f"name one of @1…@{index - 1}" if index > 1 else "the first step can read no step's output"
            raise InvalidInput(f"step {index} reads {spelled}, but only a step before it can be read",
                               field="inputs", fix=earlier)
        return self.callees[number - 1]


def _resolve_step(index: int, plan: _Plan, done: list[StepInputs], table: _Table) -> StepInputs:
    inv, callee = plan.steps[index - 1], plan.callees[index - 1]
    fields = callee.inputs
    where = f"step {index} ({callee.name})"
    values: dict[str, ArtifactRef | StepOutput] = {}
    unnamed: list[ArtifactRef | str] = []
    for key, value in inv.inputs.items():
        if isinstance(value, ArtifactRef):  # the session's own content, as recorded
            value = table.recorded(value, where, f"inputs.{key}")
        if _UNNAMED.match(key):
            unnamed.append(value)
        elif key == "region" and key not in fields and callee.takes_region:
            values[key] = _region_input(value, where, index, plan, table, inv)
        elif key not in fields:
            takes = ", ".join(fields) or "no artifacts"
            raise InvalidInput(f"{where} has an input {key!r}, but {callee.name} takes {takes}", field="inputs",
                               fix=f"name one of: {takes}")
        else:
            values[key] = _check(key, fields[key][0], value, where, index, plan, table)
    for value in unnamed:
        kinds = _kinds_of(value, index, plan, table)
        free = [f for f, (kind, _) in fields.items() if kind in kinds and f not in values]
        if not free and callee.takes_region and "region" not in values and _gives_region(value, index, plan, table):
            values["region"] = _region_input(value, where, index, plan, table, inv)
            continue
        if not free:
            raise InvalidInput(f"{where} reads {_show(value)}, a {' or '.join(kinds)}, but {callee.name} takes "
                               f"{', '.join(fields) or 'no artifacts'}", field="inputs",
                               fix="give each input to a step that takes its kind")
        values[free[0]] = _check(free[0], fields[free[0]][0], value, where, index, plan, table)
    if callee.one_of and not any(f in values for f in callee.one_of):
        field, found = _implicit_one_of(callee, where, index, plan, table)
        values[field] = found
    for field, (kind, required) in fields.items():
        if field not in values and field not in callee.one_of:
            found = _implicit(kind, required, _main(values, fields), index, plan, done, table)
            if found is not None:
                values[field] = found
            elif required:
                named = field if field == kind else f"{field} ({kind})"
                raise InvalidInput(f"{where} needs an input {named}, and the session has no {kind} yet",
                                   field="inputs", fix=f"attach {a_or_an(kind)}, or run a step that makes one first")
    return StepInputs({f: values[f] for f in (*fields, "region") if f in values})  # in the callee's field order


def _gives_region(value: ArtifactRef | str, index: int, plan: _Plan, table: _Table) -> bool:
    """Whether an input can stand for a region: a boxes artifact, or a step that makes a region."""
    if isinstance(value, ArtifactRef):
        return value.kind == "boxes"
    if (number := step_number(value)) is not None:
        return plan.earlier(number, value, index).region_output is not None
    return table.resolve(value).ref.kind == "boxes"


def _region_input(value: ArtifactRef | str, where: str, index: int, plan: _Plan, table: _Table,
                  inv: Invocation) -> ArtifactRef | StepOutput:
    """A step's region read from an earlier step (its region output) or a boxes artifact (the compiler reads its
    best box)."""
    if inv.region is not None:
        raise InvalidInput(f"{where} has a region and reads another from {_show(value)}", field="region",
                           fix="give the region once: drawn, or read from a step or a boxes artifact")
    if not _gives_region(value, index, plan, table):
        raise InvalidInput(f"{where} reads its region from {_show(value)}, which is no box", field="inputs",
                           fix="read the region from a step that finds boxes (visual_understanding, "
                               "image_segmentation) or from a boxes artifact such as @boxes1")
    if isinstance(value, ArtifactRef):
        return value
    if (number := step_number(value)) is not None:
        producer = plan.earlier(number, value, index)
        return StepOutput(step=str(plan.offset + number), field=producer.region_output)
    return table.resolve(value).ref


def _implicit_one_of(callee: Callee, where: str, index: int, plan: _Plan,
                     table: _Table) -> tuple[str, ArtifactRef | StepOutput]:
    """The input a step that reads one of several (an image or a video) gets when it names none: the latest earlier
    step making one of their kinds, else the newest such artifact."""
    kinds = {callee.inputs[f][0]: f for f in callee.one_of}
    for earlier in range(index - 1, 0, -1):
        producer = plan.callees[earlier - 1]
        for kind, field in kinds.items():
            if (made := producer.output_of_kind(kind)) is not None:
                return field, StepOutput(step=str(plan.offset + earlier), field=made)
    candidates = table.newest(*kinds)
    what = " or ".join(a_or_an(k) for k in kinds)
    if not candidates:
        raise InvalidInput(f"{where} needs {what}, and the session has none yet", field="inputs",
                           fix=f"attach {what}, or run a step that makes one first")
    if len(candidates) > 1:
        raise _which(kinds, candidates)
    chosen = restored(table.entries, candidates[0])
    return kinds[chosen.ref.kind], chosen.ref


def _which(kinds: Iterable[str], candidates: Sequence[ArtifactEntry]) -> Ambiguous:
    """The question to ask when several artifacts fit an input the step left out."""
    listing = " or ".join(f"@{c.alias} ({c.describe().split(': ', 1)[1]})" for c in candidates)
    return Ambiguous(f"Which {' or '.join(kinds)} do you mean: {listing}?", [c.alias for c in candidates])


def _main(values: dict[str, ArtifactRef | StepOutput], fields: dict[str, tuple[str, bool]],
          ) -> ArtifactRef | StepOutput | None:
    """The image or video a step works on (a mask or masks belong to it)."""
    return next((v for f, v in values.items() if f in fields and fields[f][0] in ("image", "video")), None)


def _show(value: ArtifactRef | str) -> str:
    return value if isinstance(value, str) else f"{value.kind} {value.short}"


def _kinds_of(value: ArtifactRef | str, index: int, plan: _Plan, table: _Table) -> tuple[str, ...]:
    if isinstance(value, ArtifactRef):
        return (value.kind,)
    if (number := step_number(value)) is not None:
        return plan.earlier(number, value, index).output_kinds
    return (table.resolve(value).ref.kind,)


def _check(field: str, kind: str, value: ArtifactRef | str, where: str, index: int, plan: _Plan,
           table: _Table) -> ArtifactRef | StepOutput:
    """An explicit input: the kind must fit the field; aliases become refs, `@N` the turn's step number."""
    if isinstance(value, ArtifactRef):
        kinds: tuple[str, ...] = (value.kind,)
        result: ArtifactRef | StepOutput = value
    elif (number := step_number(value)) is not None:
        producer = plan.earlier(number, value, index)
        kinds = producer.output_kinds
        result = StepOutput(step=str(plan.offset + number), field=producer.output_of_kind(kind))
    else:
        entry = table.resolve(value)
        kinds, result = (entry.ref.kind,), entry.ref
    if kind not in kinds:
        raise InvalidInput(f"{where} reads {_show(value)} as its {field}, but that is a {' or '.join(kinds)}",
                           field="inputs", fix=f"give it {a_or_an(kind)}")
    return result


def _implicit(kind: str, required: bool, main: ArtifactRef | StepOutput | None, index: int, plan: _Plan,
              done: list[StepInputs], table: _Table) -> ArtifactRef | StepOutput | None:
    """The input a step left out: the latest earlier step making that kind, else the newest such artifact."""
    for earlier in range(index - 1, 0, -1):
        producer = plan.callees[earlier - 1]
        made = producer.output_of_kind(kind)
        its_main = _main(done[earlier - 1].values, producer.inputs)
        if made is not None and (required or _same_source(its_main, main, table)):
            return StepOutput(step=str(plan.offset + earlier), field=made)
    candidates = table.newest(kind)
    if not candidates:
        return None
    if len(candidates) > 1:
        if not required:
            return None  # an optional input is never guessed
        raise _which([kind], candidates)
    chosen = restored(table.entries, candidates[0])  # after an undo: what it brought back, by its own alias
    if not required and not _same_source(chosen.ref, main, table):
        return None
    return chosen.ref


def _same_source(a: ArtifactRef | StepOutput | None, b: ArtifactRef | StepOutput | None, table: _Table) -> bool:
    """Whether two inputs come from the same upload (so a mask belongs to the image it is used with)."""
    if a is None or b is None:
        return False
    if isinstance(a, StepOutput) or isinstance(b, StepOutput):
        return a == b
    alias_a, alias_b = _alias_of(a, table), _alias_of(b, table)
    if alias_a is None or alias_b is None:
        return a.sha256 == b.sha256
    return bool(table.sources(alias_a) & table.sources(alias_b))


def _alias_of(ref: ArtifactRef, table: _Table) -> str | None:
    if ref.alias and ref.alias in table.by_alias:
        return ref.alias
    return next((e.alias for e in table.entries if e.ref.sha256 == ref.sha256), None)
