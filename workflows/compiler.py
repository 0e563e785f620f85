"""The compiler: a plan's source in, a `CompiledPlan` out, every step checked against its tool's own schema before
anything runs. Two sources share it:

- a planner's invocations (`compile_invocations`): inputs left out or named by alias are resolved against the
  session's artifact table (`workflows.resolve`), `@N` becomes step N's output of the fitting kind;
- a workflow definition (`compile_workflow`): `$inputs.x` and `$steps.name.field` selectors, kinds checked
  against the tool contracts, a dependency order (cycles refused). Its inputs are bound later, per run
  (`CompiledWorkflow.bind`), without compiling again.

Every error is an `InvalidInput` that names the step and the field (`steps[1].mask: expected mask, got video from
$steps.track.video`) and says how to fix it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

from pydantic import TypeAdapter, ValidationError

from memory import ArtifactEntry, ArtifactStore
from schemas import (
    ARTIFACT_KINDS,
    ArtifactRef,
    BoxRegion,
    CompiledPlan,
    CompiledStep,
    InputName,
    InputSpec,
    InvalidInput,
    Invocation,
    Kind,
    StepOutput,
    StepSpec,
    UnknownModule,
    VitronError,
    WorkflowDefinition,
    a_or_an,
    is_reference,
    parse_reference,
    region_from_boxes,
    resolve_module,
)
from schemas.references import NAME
from tools import VisionTool, get_tool
from tools.base import invalid_input_from

from .inputs import typed_value
from .kinds import FieldInfo, input_fields, output_fields, output_of_kind
from .resolve import Callee, recorded_plan, resolve_plan_inputs, tool_callee
from .stored import stored_ref

_PLACEHOLDER_MEDIA = {"image": "image/png", "mask": "image/png", "video": "video/mp4", "masks": "video/x-matroska",
                      "embedding": "application/vnd.safetensors", "boxes": "application/json"}
_TYPE = re.compile(r"^(?P<module>.+?)(?:@v(?P<version>[0-9]+))?$")
# In a text field: `{name}` is a text or number input's value; `{{` and `}}` are braces.
_TEMPLATE = re.compile(rf"\{{\{{|\}}\}}|\{{({NAME})\}}")
_STEP_KEYS = ("name", "type", "backend", "options")


def placeholder(kind: str) -> ArtifactRef:
    """Stands for an artifact that does not exist yet (a step's output, a workflow input), so a tool's schema can
    check everything else."""
    return ArtifactRef(sha256="0" * 64, kind=kind, media_type=_PLACEHOLDER_MEDIA[kind])  # type: ignore[arg-type]


# -- a planner's plan ------------------------------------------------------------------------------


SavedWorkflows = Callable[[str], "CompiledWorkflow | None"]
"""Finds a saved workflow by name (None when there is none), for plans that call one like a module."""


def compile_invocations(invocations: Sequence[Invocation], table: Sequence[ArtifactEntry], store: ArtifactStore, *,
                        offset: int = 0, workflows: SavedWorkflows | None = None,
                        uploads: Sequence[ArtifactRef] = ()) -> CompiledPlan:
    """A planner's invocations as a compiled plan. Step N of the plan is named `offset + N` (`offset` steps ran in
    earlier rounds of the turn); a step that calls a saved workflow becomes that workflow's steps, named
    `offset + N.step`. Raises `InvalidInput` (or `Ambiguous`: two artifacts fit an input equally).

    Every plan the agent runs passes here, so here an artifact given by ref must be the session's: in `table`, or
    one of `uploads` (this turn's, not recorded yet: a drawn scribble). It becomes the ref recorded for it, its kind
    and shape the store's, never the plan's (`workflows.resolve.recorded_plan`)."""
    fresh = [stored_ref(store, ref, field="uploads") for ref in uploads]
    invocations = recorded_plan(invocations, table, fresh, store)
    flows: dict[str, CompiledWorkflow] = {}

    def callee(module: str) -> Callee:
        try:
            return tool_callee(module)
        except UnknownModule as exc:
            flow = workflows(module) if workflows is not None else None
            if flow is None:
                raise UnknownModule(f"unknown module or workflow {module!r}", field="module",
                                    fix=f"{exc.fix}, or a saved workflow's name") from None
            flows[module] = flow
            return workflow_callee(module, flow)

    resolved = resolve_plan_inputs(invocations, tuple(table), offset, callee, fresh, store)
    steps: list[CompiledStep] = []
    exported: dict[tuple[str, str], StepOutput] = {}  # (a workflow call's name, its output) → the step making it
    for number, (inv, inputs) in enumerate(zip(invocations, resolved, strict=True), start=1):
        name = str(offset + number)
        values = {f: exported.get((v.step, v.field or ""), v) if isinstance(v, StepOutput) else v
                  for f, v in inputs.values.items()}
        if inv.module in flows:
            expanded = _call_workflow(name, number, inv, flows[inv.module], values, offset + len(steps) + 1)
            exported.update({(name, out): StepOutput(step=f"{name}.{ref.step}", field=ref.field)
                             for out, ref in flows[inv.module].outputs.items()})
            steps.extend(expanded)
            continue
        tool = get_tool(inv.module)
        literal = {key: value for key in ("command", "region", "signal")
                   if (value := getattr(inv, key)) is not None and value != ""}
        params = {**inv.params, **inv.model_dump(mode="json", context={"store": store}, include=set(literal),
                                                 exclude_none=True)}
        if isinstance(values.get("region"), ArtifactRef):  # a remembered boxes artifact: its best box is the region
            literal["region"] = _boxes_region(values.pop("region"), store, f"step {number} ({tool.name})")
            params["region"] = literal["region"].model_dump(mode="json")
        _check_with_placeholders(tool, {**values, **inv.params, **literal}, f"step {number} ({tool.name})")
        steps.append(CompiledStep(name=name, position=offset + len(steps) + 1, module=tool.name,
                                  version=tool.version, params=params, inputs=values, heavy=tool.heavy))
    return CompiledPlan(steps=tuple(steps))


def _boxes_region(ref: ArtifactRef, store: ArtifactStore, where: str) -> BoxRegion:
    """The region a boxes artifact stands for (its best box, on its frame)."""
    name = f"@{ref.alias}" if ref.alias else f"boxes {ref.short}"
    region = region_from_boxes(store.get_json(ref), field="inputs")
    if region is None:
        raise InvalidInput(f"{where} reads its region from {name}, which holds no box", field="inputs",
                           fix="read the region from boxes that found something, or draw one")
    return region


def workflow_callee(name: str, flow: CompiledWorkflow) -> Callee:
    """A saved workflow as a plan's step sees it: its artifact inputs (required when they have no default) and
    artifact outputs, under the workflow's own names."""
    return Callee(name, {n: (s.type, s.required) for n, s in flow.inputs.items() if s.type in ARTIFACT_KINDS},
                  {n: k for n, k in flow.output_kinds().items() if k in ARTIFACT_KINDS})


def _call_workflow(name: str, number: int, inv: Invocation, flow: CompiledWorkflow,
                   artifacts: Mapping[str, ArtifactRef | StepOutput], first_position: int) -> list[CompiledStep]:
    """A plan's step that calls a saved workflow, as the workflow's own steps: its artifact inputs resolved like a
    tool's, the drawn region to its first region input, the instruction to its `command` input (or its only text
    input without a default; else the instruction only describes the call), value inputs named in `params`; the
    rest keep their defaults. A signal embedding is not passed on: the workflow's steps are specialists of their
    own, each with the fields its file gives it."""
    where = f"step {number} ({inv.module})"
    values: dict[str, Any] = dict(artifacts)
    regions = [n for n, s in flow.inputs.items() if s.type == "region"]
    if inv.region is not None and regions:
        values[regions[0]] = inv.region.model_dump(mode="json")
    texts = [n for n, s in flow.inputs.items() if s.type == "text"]
    open_texts = [n for n in texts if flow.inputs[n].required]
    command = "command" if "command" in texts else open_texts[0] if len(open_texts) == 1 else None
    if inv.command and command is not None:
        values[command] = inv.command
    for key, value in inv.params.items():  # an edited plan may set the workflow's other inputs by name
        if key not in flow.inputs or flow.inputs[key].type in ARTIFACT_KINDS:
            takes = ", ".join(n for n, s in flow.inputs.items() if s.type not in ARTIFACT_KINDS) or "none"
            raise InvalidInput(f"{where} sets {key!r}, which is not one of its value inputs", field="params",
                               fix=f"its value inputs are {takes}")
        values[key] = value
    missing = [n for n, s in flow.inputs.items() if s.required and n not in values]
    if missing:
        spec = flow.inputs[missing[0]]
        how = {"region": "draw a region", "text": "say it in the instruction"}.get(spec.type, f"give a {spec.type}")
        raise InvalidInput(f"{where} needs its input {missing[0]!r} ({spec.type})", field="inputs", fix=how)
    plan = flow.bind(values, where=where)
    inner = {step.name for step in plan.steps}

    def outer(ref: Any) -> Any:
        return StepOutput(step=f"{name}.{ref.step}", field=ref.field) if isinstance(ref, StepOutput) and \
            ref.step in inner else ref

    steps = []
    for position, step in enumerate(plan.steps, start=first_position):
        renamed = step.model_copy(update={"name": f"{name}.{step.name}", "position": position,
                                          "inputs": {f: outer(v) for f, v in step.inputs.items()}})
        tool = get_tool(step.module)
        _check_with_placeholders(tool, {**step.params, **renamed.inputs}, f"{where}, its step {step.name}")
        steps.append(renamed)
    return steps


def _check_with_placeholders(tool: VisionTool, data: Mapping[str, Any], where: str, *, prefix: str = "",
                             store: ArtifactStore | None = None) -> None:
    """A step's whole input against its tool's schema, with placeholders for the artifacts not made yet (the
    model's own checks: a region inside the image, a mask of its size). Fields fed by another step's region, text or
    number, or by a workflow input without a default, are left to the job, which checks them where it runs.
    `prefix` goes before the field an error names (`steps[1].`)."""
    fields = input_fields(tool.name)
    known: dict[str, Any] = {}
    for field, value in data.items():
        if isinstance(value, StepOutput | InputName):
            if fields[field].artifact:
                known[field] = placeholder(fields[field].kind)
            continue
        known[field] = value
    if any(f not in known for f, info in fields.items() if info.required):
        return
    try:
        tool.input_model.model_validate(known, context={"store": store} if store else None)
    except ValidationError as exc:
        err = invalid_input_from(exc, where)
        if not prefix:
            raise err from None
        raise InvalidInput(err.problem, field=f"{prefix}{err.field}", fix=err.fix) from None


# -- a workflow ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CompiledWorkflow:
    """A checked workflow, ready to be bound to inputs and run any number of times."""

    definition: WorkflowDefinition
    steps: tuple[CompiledStep, ...]  # in dependency order; `inputs` may hold `$inputs.x` until bound
    templates: Mapping[tuple[str, str], str]  # (step, field) → text with `{input}` placeholders
    outputs: Mapping[str, StepOutput]

    @property
    def inputs(self) -> dict[str, InputSpec]:
        return self.definition.inputs

    def output_kinds(self) -> dict[str, Kind]:
        modules = {s.name: s.module for s in self.steps}
        return {name: output_fields(modules[ref.step])[ref.field or ""].kind for name, ref in self.outputs.items()}

    def bind(self, values: Mapping[str, Any], *, where: str = "inputs") -> CompiledPlan:
        """The plan for one run: inputs (typed values: refs for artifacts, see `workflows.inputs`; or, where a
        plan calls the workflow, an earlier step's output) filled in, defaults for those left out. `InvalidInput`
        names a missing, unknown or wrongly typed input."""
        unknown = sorted(set(values) - set(self.inputs))
        if unknown:
            raise InvalidInput(f"the workflow has no input {unknown[0]!r}", field=f"{where}.{unknown[0]}",
                               fix=f"its inputs are {', '.join(self.inputs) or 'none'}")
        bound: dict[str, Any] = {}
        for name, spec in self.inputs.items():
            value = values.get(name, spec.default)
            if value is None:
                raise InvalidInput(f"the workflow needs its input {name!r} ({spec.type})", field=f"{where}.{name}",
                                   fix=f"give it, e.g. --input {name}=…")
            bound[name] = value if isinstance(value, StepOutput) else typed_value(spec.type, value,
                                                                                      f"{where}.{name}")
        steps = []
        for step in self.steps:
            params = dict(step.params)
            inputs: dict[str, ArtifactRef | StepOutput] = {}
            for field, source in step.inputs.items():
                if isinstance(source, InputName):
                    value = bound[source.name]
                    if isinstance(value, ArtifactRef | StepOutput):
                        inputs[field] = value
                    else:
                        params[field] = value
                else:
                    inputs[field] = source
            for (step_name, field), template in self.templates.items():
                if step_name == step.name:
                    params[field] = _fill(template, bound)
            steps.append(step.model_copy(update={"params": params, "inputs": inputs}))
        return CompiledPlan(steps=tuple(steps), outputs=dict(self.outputs))


def compile_workflow(source: WorkflowDefinition | Mapping[str, Any], store: ArtifactStore | None = None,
                     ) -> CompiledWorkflow:
    """Check a workflow document and compile it; `InvalidInput` naming the step and field for any mistake.

    `store` lets literal artifact refs (a signal embedding) be checked against their content."""
    definition = parse_definition(source)
    _check_names(definition)
    steps: dict[str, CompiledStep] = {}
    templates: dict[tuple[str, str], str] = {}
    specs = {spec.name: (index, spec) for index, spec in enumerate(definition.steps)}
    for index, spec in enumerate(definition.steps):
        step, step_templates = _compile_step(index, spec, definition, specs, store)
        steps[spec.name] = step
        templates.update({(spec.name, field): text for field, text in step_templates.items()})
    order = _dependency_order(definition, steps, specs)
    ordered = tuple(steps[name].model_copy(update={"position": position})
                    for position, name in enumerate(order, start=1))
    outputs = {name: _output(name, text, steps) for name, text in definition.outputs.items()}
    return CompiledWorkflow(definition, ordered, templates, outputs)


def parse_definition(source: WorkflowDefinition | Mapping[str, Any]) -> WorkflowDefinition:
    """The document as a `WorkflowDefinition`; its first problem as an `InvalidInput` with a path (`steps[0].name`)."""
    if isinstance(source, WorkflowDefinition):
        return source
    if not isinstance(source, Mapping):
        raise InvalidInput(f"a workflow is a mapping (version, inputs, steps, outputs), got {type(source).__name__}",
                           field="workflow", fix="see the format in the README's Workflows section")
    try:
        return WorkflowDefinition.model_validate(dict(source))
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        path = _path(err["loc"])
        more = f" (+{exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        fix = {"version": "write `version: 1`", "steps": "give at least one step"}.get(path)
        raise InvalidInput(err["msg"] + more, field=path or "workflow",
                           fix=fix or "see the format in the README's Workflows section") from None


def _path(loc: Sequence[Any]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _check_names(definition: WorkflowDefinition) -> None:
    seen: set[str] = set()
    for index, spec in enumerate(definition.steps):
        if spec.name in seen:
            raise InvalidInput(f"two steps are called {spec.name!r}", field=f"steps[{index}].name",
                               fix="give every step a name of its own")
        seen.add(spec.name)
    for name, spec in definition.inputs.items():
        if spec.default is not None:
            typed_value(spec.type, spec.default, f"inputs.{name}.default")
    for group in ("inputs", "outputs"):
        for name in getattr(definition, group):
            if not re.fullmatch(NAME, name):
                raise InvalidInput(f"{name!r} is not a name", field=f"{group}.{name}",
                                   fix="use letters, digits and _, starting with a letter")


def resolve_type(text: str, where: str) -> tuple[VisionTool, int]:
    """The tool and contract version a step's `type` names (`C`, `image_editing@v1`, `Image Editing@v1`)."""
    match = _TYPE.match(text.strip())
    assert match is not None  # it matches any text
    try:
        tool = get_tool(resolve_module(match.group("module")).name)
    except UnknownModule as exc:
        raise UnknownModule(exc.problem, field=where, fix=exc.fix) from None
    version = int(match.group("version")) if match.group("version") else tool.version
    if version != tool.version:
        raise InvalidInput(f"{tool.name}@v{version} is not a contract this installation has: it has "
                           f"{tool.name}@v{tool.version}", field=where,
                           fix=f"write {tool.name}@v{tool.version} and check the step's fields against its "
                               "contract, or install the vitron-agent that has that version")
    return tool, version


def _compile_step(index: int, spec: StepSpec, definition: WorkflowDefinition,
                  specs: Mapping[str, tuple[int, StepSpec]], store: ArtifactStore | None,
                  ) -> tuple[CompiledStep, dict[str, str]]:
    where = f"steps[{index}]"
    tool, version = resolve_type(spec.type, f"{where}.type")
    fields = input_fields(tool.name)
    if spec.backend is not None and spec.backend not in tool.backends:
        raise InvalidInput(f"{tool.name} has no backend {spec.backend!r}", field=f"{where}.backend",
                           fix=f"choose one of {sorted(tool.backends)}, or leave it out")
    params: dict[str, Any] = {}
    inputs: dict[str, ArtifactRef | StepOutput | InputName] = {}
    templates: dict[str, str] = {}
    known: dict[str, Any] = {}  # every field whose value is known now (placeholders for artifacts)
    for field, value in spec.fields.items():
        at = f"{where}.{field}"
        if field not in fields:
            takes = ", ".join(f for f in fields if f != "signal")
            raise InvalidInput(f"{tool.name}@v{version} has no field {field!r}", field=at, fix=f"it takes {takes}")
        info = fields[field]
        if is_reference(value):
            source = _reference(value, at, info, definition, specs, index)
            inputs[field] = source
            if isinstance(source, InputName):
                default = definition.inputs[source.name].default
                if default is not None:
                    known[field] = _check_field(tool, field, _as_python(info, default, at), at,
                                                f"the default of {source}")
                elif info.artifact:
                    known[field] = placeholder(info.kind)
            elif info.artifact:
                known[field] = placeholder(info.kind)
            continue
        if info.kind == "text" and isinstance(value, str):
            names = [m.group(1) for m in _TEMPLATE.finditer(value) if m.group(1)]
            for name in names:
                spec_of = definition.inputs.get(name)
                if spec_of is None or spec_of.type not in ("text", "number"):
                    what = "names no input of the workflow" if spec_of is None else f"is {a_or_an(spec_of.type)}"
                    raise InvalidInput(f"{{{name}}} {what}; only text and number inputs fill in text", field=at,
                                       fix=f"declare a text or number input {name}, or write {{{{{name}}}}} for "
                                           "braces")
            if names:
                templates[field] = value
                defaults = {n: definition.inputs[n].default for n in names}
                if None not in defaults.values():
                    known[field] = _check_field(tool, field, _fill(value, defaults), at, "with the inputs' defaults")
                continue
            value = _fill(value, {})  # `{{` and `}}` are braces
        python = _as_python(info, value, at)
        known[field] = _check_field(tool, field, python, at, store=store)
        if info.artifact:
            inputs[field] = python
        else:
            params[field] = value
    missing = [f for f, info in fields.items() if info.required and f not in spec.fields]
    if missing:
        info = fields[missing[0]]
        example = f"$inputs.NAME or $steps.NAME.{info.kind}" if info.artifact else f"a {info.kind}"
        raise InvalidInput(f"{tool.name} needs {missing[0]!r} ({info.kind})", field=f"{where}.{missing[0]}",
                           fix=f"give it: {example}")
    _check_with_placeholders(tool, known, tool.name, prefix=f"{where}.", store=store)
    step = CompiledStep(name=spec.name, position=index + 1, module=tool.name, version=version, params=params,
                        inputs=inputs, backend=spec.backend, options=spec.options, heavy=tool.heavy)
    return step, templates


def _reference(text: str, at: str, info: FieldInfo, definition: WorkflowDefinition,
               specs: Mapping[str, tuple[int, StepSpec]], index: int) -> StepOutput | InputName:
    """A selector in a step's field: it must name something that exists and is of the field's kind."""
    ref = parse_reference(text, where=at)
    if info.kind in ARTIFACT_KINDS and not info.artifact:
        raise InvalidInput(f"{info.name} is given whole, as the planner gives it, not by a selector", field=at,
                           fix=f"write the {info.name} literally, or leave it out")
    if text.startswith("@"):
        raise InvalidInput(f"{text} names a session's artifact or a planner's step; a workflow names its own",
                           field=at, fix="use $inputs.NAME or $steps.NAME.FIELD")
    if isinstance(ref, InputName):
        spec = definition.inputs.get(ref.name)
        if spec is None:
            raise InvalidInput(f"{text} names no input of the workflow", field=at,
                               fix=f"declare it under inputs ({', '.join(definition.inputs) or 'none yet'})")
        if spec.type != info.kind:
            raise InvalidInput(f"expected {info.kind}, got {spec.type} from {text}", field=at,
                               fix=f"give {a_or_an(info.kind)}")
        return ref
    if ref.step not in specs:
        raise InvalidInput(f"{text} names no step of the workflow", field=at,
                           fix=f"its steps are {', '.join(specs)}")
    producer_index, producer = specs[ref.step]
    if producer_index == index:
        raise InvalidInput(f"{text} is this step's own output", field=at, fix="read an earlier step's output")
    module = resolve_type(producer.type, f"steps[{producer_index}].type")[0].name
    outputs = output_fields(module)
    field = ref.field or output_of_kind(module, info.kind)
    if field is None or field not in outputs:
        made = ", ".join(f"{n} ({f.kind})" for n, f in outputs.items())
        what = f"no output {ref.field!r}" if ref.field else f"no {info.kind} output"
        raise InvalidInput(f"{module} has {what}", field=at, fix=f"it makes {made}")
    if outputs[field].kind != info.kind:
        raise InvalidInput(f"expected {info.kind}, got {outputs[field].kind} from {text}", field=at,
                           fix=f"give {a_or_an(info.kind)}")
    return StepOutput(step=ref.step, field=field)


def _as_python(info: FieldInfo, value: Any, at: str) -> Any:
    """A literal as the tool's field takes it: an artifact must be given as a ref (`{sha256, kind, …}`)."""
    kind = info.kind
    if info.artifact:
        try:
            ref = ArtifactRef.model_validate(value)
        except ValidationError:
            raise InvalidInput(f"a {kind} is given by a reference, not {value!r}", field=at,
                               fix=f"use $inputs.NAME (declared as {kind}) or $steps.NAME.FIELD") from None
        if ref.kind != kind:
            raise InvalidInput(f"expected {kind}, got {ref.kind}", field=at, fix=f"give a {kind} ref")
        return ref
    return value


@cache
def _adapter(tool_name: str, field: str) -> TypeAdapter[Any]:
    from typing import Annotated

    info = get_tool(tool_name).input_model.model_fields[field]
    annotation = Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation
    return TypeAdapter(annotation)


def _check_field(tool: VisionTool, field: str, value: Any, at: str, what: str | None = None,
                 store: ArtifactStore | None = None) -> Any:
    """One field's value against the tool's own type and constraints (tensor refs read from `store`)."""
    try:
        return _adapter(tool.name, field).validate_python(value, context={"store": store} if store else None)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        original = (err.get("ctx") or {}).get("error")
        problem = original.problem if isinstance(original, VitronError) else err["msg"].removeprefix("Value error, ")
        raise InvalidInput(f"{what}: {problem}" if what else problem, field=at,
                           fix=f"see {tool.name}'s fields") from None


def _fill(template: str, values: Mapping[str, Any]) -> str:
    """A text field's template with its inputs' values in; `{{` and `}}` become braces."""
    def one(match: re.Match[str]) -> str:
        token = match.group(0)
        return "{" if token == "{{" else "}" if token == "}}" else str(values[match.group(1)])

    return _TEMPLATE.sub(one, template)


def _dependency_order(definition: WorkflowDefinition, steps: Mapping[str, CompiledStep],
                      specs: Mapping[str, tuple[int, StepSpec]]) -> list[str]:
    """Steps ordered so that each comes after every step it reads (the file's order where free); a cycle is
    refused, naming its steps."""
    waiting = {name: set(step.depends_on()) for name, step in steps.items()}
    order: list[str] = []
    while waiting:
        ready = [name for name in (s.name for s in definition.steps) if name in waiting and not waiting[name]]
        if not ready:
            cycle = _a_cycle(waiting)
            first = specs[cycle[0]][0]
            raise InvalidInput("the steps read each other in a circle: " + " → ".join([*cycle, cycle[0]]),
                               field=f"steps[{first}]", fix="a step can only read steps that do not read it")
        for name in ready:
            order.append(name)
            del waiting[name]
        for deps in waiting.values():
            deps.difference_update(ready)
    return order


def _a_cycle(waiting: Mapping[str, set[str]]) -> list[str]:
    path: list[str] = []
    node = next(iter(waiting))
    while node not in path:
        path.append(node)
        node = next(iter(sorted(waiting[node])))
    return path[path.index(node):]


def _output(name: str, text: str, steps: Mapping[str, CompiledStep]) -> StepOutput:
    at = f"outputs.{name}"
    ref = parse_reference(text, where=at) if is_reference(text) else None
    if not isinstance(ref, StepOutput) or text.startswith("@"):
        raise InvalidInput(f"{text!r} is not a step's output", field=at, fix="write $steps.NAME.FIELD")
    if ref.step not in steps:
        raise InvalidInput(f"{text} names no step of the workflow", field=at, fix=f"its steps are {', '.join(steps)}")
    outputs = output_fields(steps[ref.step].module)
    field = ref.field or next((n for n, f in outputs.items() if f.artifact), None)
    if field not in outputs:
        made = ", ".join(f"{n} ({f.kind})" for n, f in outputs.items())
        raise InvalidInput(f"{steps[ref.step].module} has no output {ref.field!r}", field=at, fix=f"it makes {made}")
    return StepOutput(step=ref.step, field=field)
