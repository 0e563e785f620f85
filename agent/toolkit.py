"""The specialists and saved workflows as calls another agent makes: a LangChain or LangGraph agent
(`agent.langchain_tools`) or an MCP client (`agent.mcp_server`). One module for what both share: the tools' LLM-facing
arguments, artifacts named by alias, each call run as a turn of the session, and the short text that tells the
calling model what was made.

- A call names its artifacts by alias from the session's artifact table (`@img1`, `img1`, `@mask2`), by the newest of
  the field's kind ("latest", "the image", "the mask"), or by a full sha256 already in the session. Kinds and sizes
  come from the table (the store's own), never from the caller.
- A call runs as a turn of the session whose plan is the call itself: the agent's graph compiles it against the
  session's artifacts, records its steps, runs them on the agent's executor and remembers the outputs under new
  aliases, as for any turn (history, `vitron sessions show`, undo, the step cache rules). An input a call leaves out
  follows the agent's rule: the newest of its kind; an optional one (an edit's mask) only when made from the same
  picture.
- A bad call raises nothing: its `CallResult` says what is wrong, on which field, and the fix (a bad alias lists the
  aliases there are; a box outside the image says the image's size). It is checked before anything is recorded, so a
  refused call leaves no turn behind.
"""

from __future__ import annotations

import re
import threading
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, ValidationError, create_model
from pydantic.fields import FieldInfo

from memory import ArtifactEntry, SessionMemory
from schemas import (
    ARTIFACT_KINDS,
    AliasNotFound,
    ArtifactRef,
    InvalidInput,
    Invocation,
    Plan,
    PlanStep,
    ScribbleRegion,
    SessionNotFound,
    UnknownModule,
    VitronError,
    a_or_an,
    region_from_boxes,
    resolve_module,
)
from tools import all_tools, get_tool
from tools.base import read_models_file
from tools.fields import frame_size
from workflows import CompiledWorkflow, compile_invocations, saved_workflow, saved_workflows
from workflows.kinds import artifact_inputs

from .planners.chat import BoxArg, PointsArg

# `agent.api`'s VitronAgent, AgentSession and Reply, by duck typing: the API's sessions make their LangChain tools
# through this module, which must not import the API back (docs/ARCHITECTURE.md: no module imports itself back).
VitronAgent = AgentSession = Reply = Any

Emit = Callable[[dict[str, Any]], None]
"""Where a call's events go as they happen (the agent's turn events: step_started, progress, step_finished…)."""

ALIAS_HELP = ("by alias from the session's artifacts, like @{prefix}1 (or {prefix}1); 'latest' for the newest "
              "{kind}")

_PREFIX = {"image": "img", "mask": "mask", "video": "video", "masks": "masks", "boxes": "boxes", "text": "text",
           "embedding": "emb"}
_KIND_WORDS = {"image": "image", "images": "image", "picture": "image", "photo": "image", "img": "image",
               "mask": "mask", "video": "video", "clip": "video", "movie": "video", "masks": "masks",
               "boxes": "boxes", "text": "text"}
_LATEST_WORDS = frozenset({"the", "latest", "last", "newest", "most", "recent", "current", "this", "that", "it",
                           "one", "my", "new", "edited", "uploaded"})
_SHA = re.compile(r"^[0-9a-f]{64}$")
_STEP = re.compile(r"^@?\d+$")


# -- the arguments a model writes ------------------------------------------------------------------------------


class ScribbleArg(BaseModel):
    """A mask painted over the object, by its alias."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["scribble"] = "scribble"
    mask: str = Field(description="The scribble mask, " + ALIAS_HELP.format(prefix="mask", kind="mask") + ".")


class BoxesArg(BaseModel):
    """The best box of a boxes artifact (what visual_understanding found), by its alias."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["boxes"] = "boxes"
    boxes: str = Field(description="The boxes, " + ALIAS_HELP.format(prefix="boxes", kind="boxes") + ".")


def _region_kind(value: Any) -> str | None:
    # Models often leave "kind" out: the other keys say which region they meant.
    if isinstance(value, Mapping):
        return value.get("kind") or next((kind for key, kind in (("box", "box"), ("points", "points"),
                                                                  ("mask", "scribble"), ("boxes", "boxes"))
                                          if key in value), None)
    return getattr(value, "kind", None)


RegionArg = Annotated[
    Annotated[BoxArg, Tag("box")] | Annotated[PointsArg, Tag("points")] | Annotated[ScribbleArg, Tag("scribble")]
    | Annotated[BoxesArg, Tag("boxes")],
    Discriminator(_region_kind, custom_error_type="region_kind",
                  custom_error_message='a region is {"kind": "box", "box": [x1, y1, x2, y2]}, {"kind": "points", '
                                       '"points": [[x, y]], "labels": [1]}, {"kind": "scribble", "mask": "@mask1"} '
                                       'or {"kind": "boxes", "boxes": "@boxes1"}'),
]
"""A region as a model writes it: a box or points in the picture's pixels, a scribble or found boxes by alias."""

REGION_HELP = ("Where the object is, in the pixels of the picture's own size: a box [x1, y1, x2, y2], points, a "
               "scribble mask by alias, or the best box of a boxes artifact by alias.")


class _Args(BaseModel):
    model_config = ConfigDict(extra="forbid")


@dataclass(frozen=True)
class ToolSpec:
    """One callable: a module (named as `vitron tools` names it) or a saved workflow, with its LLM-facing arguments."""

    name: str
    description: str
    args: type[BaseModel]
    artifacts: dict[str, str]  # field → the kind of artifact it takes
    regions: tuple[str, ...]  # fields that take a region
    workflow: bool = False

    def input_schema(self) -> dict[str, Any]:
        return self.args.model_json_schema()


@cache
def module_specs() -> tuple[ToolSpec, ...]:
    """One spec per specialist: artifact fields as aliases, the region as `RegionArg`, its other fields (command,
    area, frames, fps, sizes, seed) as the tool has them; the planner's signal left out."""
    specs = []
    for tool in all_tools():
        takes = artifact_inputs(tool.name)
        fields: dict[str, Any] = {}
        for name, info in tool.input_model.model_fields.items():
            if name == "signal":
                continue
            if name in takes:
                what = (info.description or f"The {name}.").rstrip(".")
                description = f"{what}: {ALIAS_HELP.format(prefix=_PREFIX[name], kind=name)}."
                fields[name] = ((str, Field(description=description)) if takes[name]
                                else (str | None, Field(default=None, description=description)))
            elif name == "region":
                fields[name] = (RegionArg | None, Field(default=None, description=REGION_HELP))
            else:
                fields[name] = (info.annotation, FieldInfo.merge_field_infos(info))
        description = (f"{tool.description} Name artifacts by alias (@img1); the result names what was made by alias "
                       "for the next call.")
        specs.append(ToolSpec(tool.name, description, create_model(tool.name, __base__=_Args, __doc__=description,
                                                                     **fields),
                              {name: name for name in takes}, ("region",) if "region" in fields else ()))
    return tuple(specs)


def workflow_spec(name: str, flow: CompiledWorkflow) -> ToolSpec:
    """A saved workflow as a tool: every input under its own name (artifacts by alias, regions as `RegionArg`, text
    and numbers as values, with their defaults)."""
    fields: dict[str, Any] = {}
    artifacts, regions = {}, []
    for field_name, spec in flow.inputs.items():
        description = spec.description or spec.type
        if spec.type in ARTIFACT_KINDS:
            artifacts[field_name] = spec.type
            kind_help = ALIAS_HELP.format(prefix=_PREFIX.get(spec.type, spec.type), kind=spec.type)
            annotation: Any = str
            description = f"{description.rstrip('.')}: {kind_help}."
        elif spec.type == "region":
            regions.append(field_name)
            annotation = RegionArg
            description = f"{description.rstrip('.')}. {REGION_HELP}"
        elif spec.type == "number":
            annotation = float
        else:
            annotation = str
        fields[field_name] = ((annotation, Field(description=description)) if spec.required
                              else (annotation | None, Field(default=spec.default, description=description)))
    outputs = ", ".join(f"{n} ({k})" for n, k in flow.output_kinds().items())
    description = (f"{flow.definition.description or f'The saved workflow {name}.'} Makes {outputs}. A saved "
                   "workflow: name artifacts by alias (@img1); the result names what was made by alias.")
    return ToolSpec(name, description, create_model(name, __base__=_Args, __doc__=description, **fields),
                    artifacts, tuple(regions), workflow=True)


# -- what a call gives back ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CallResult:
    """How a call ended: the text for the calling model, what it made (with aliases), the tool's other output values
    (a box, an area, an answer), or the error that stopped it (`error`: field, problem and fix)."""

    thread: str
    tool: str
    text: str
    made: tuple[ArtifactEntry, ...] = ()
    values: dict[str, Any] = field(default_factory=dict)
    error: VitronError | None = None
    reply: Reply | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def refs(self) -> list[dict[str, Any]]:
        """The made artifacts' refs as JSON (alias, kind, sha256, media_type, shape): `ArtifactRef.model_validate`
        reads each back, `ArtifactStore.path` finds its file."""
        return [entry.ref.model_dump(mode="json") for entry in self.made]


class CallFailed(VitronError):
    """A call that ran but did not succeed: a step failed, was cancelled, or asked which object it means."""


# -- the toolkit -----------------------------------------------------------------------------------------------


class _Given:
    """A planner whose plan is the call itself: the turn runs exactly what the calling model asked for."""

    name = "tool-call"
    replans = False
    corrects = False  # a refused call goes back to the caller, who corrects it

    def __init__(self, plan: Plan) -> None:
        self._plan = plan

    def plan(self, request: Any) -> Plan:
        return self._plan if request.round == 1 else Plan()


_TOOLKITS: weakref.WeakKeyDictionary[Any, Toolkit] = weakref.WeakKeyDictionary()
_TOOLKITS_LOCK = threading.Lock()


class Toolkit:
    """The tools of one agent, called by name on a session (a thread): `call`, `upload`, `run_turn`, `cancel`."""

    def __init__(self, agent: VitronAgent) -> None:
        self.agent = agent
        self._lock = threading.Lock()
        self._running: dict[str, AgentSession] = {}  # the session object of each thread's call under way
        # Calls on one thread run one after another (a model's parallel tool calls would otherwise meet the thread's
        # turn under way and be refused); (lock, callers holding or waiting) by thread, dropped when idle.
        self._turns: dict[str, tuple[threading.Lock, int]] = {}

    @classmethod
    def of(cls, agent: VitronAgent) -> Toolkit:
        """The agent's toolkit, made once: its calls on one thread then run one after another."""
        with _TOOLKITS_LOCK:
            found = _TOOLKITS.get(agent)
            if found is None:
                found = _TOOLKITS[agent] = cls(agent)
            return found

    @property
    def memory(self) -> SessionMemory:
        return self.agent.memory

    # -- what there is -------------------------------------------------------------------------------------

    def specs(self) -> dict[str, ToolSpec]:
        """The specialists, then the saved workflows that compile (one that does not is left out, not fatal)."""
        found = {spec.name: spec for spec in module_specs()}
        for name in saved_workflows(self.agent.settings):
            try:
                flow = saved_workflow(name, self.agent.settings, self.memory.store)
            except VitronError:
                continue
            if flow is not None:
                found[name] = workflow_spec(name, flow)
        return found

    def spec(self, name: str) -> ToolSpec:
        specs = self.specs()
        if name in specs:
            return specs[name]
        try:
            return specs[resolve_module(name).name]
        except UnknownModule:
            raise UnknownModule(f"there is no tool {name!r}", field="tool",
                                fix=f"call one of {', '.join(specs)}") from None

    # -- threads -------------------------------------------------------------------------------------------

    def open_thread(self, thread: str | None, owner: str | None = None, title: str = "") -> str:
        """The id of `owner`'s thread `thread` (its id or a unique prefix), or of a new one when None. Another
        owner's thread is answered as if there were none."""
        if thread is None or not thread.strip():
            return self.memory.create_session(title, owner=owner).id
        try:
            info = self.memory.get_session(self.memory.resolve_session_id(thread, owner=owner))
        except SessionNotFound:
            info = None
        if info is None or info.owner != owner:
            raise SessionNotFound(f"no thread {thread.strip()[:40]!r}", field="thread",
                                  fix="leave `thread` out to start a new one, or give the id a call returned")
        return info.id

    def session(self, thread: str, agent: VitronAgent | None = None) -> AgentSession:
        """The thread's session on this toolkit's agent (or on `agent`, one sharing its memory)."""
        owner = self.memory.get_session(thread).owner
        return (agent or self.agent).session(thread, owner=owner)

    def artifacts(self, thread: str) -> list[ArtifactEntry]:
        return self.memory.artifact_table(thread)

    def artifact(self, thread: str, alias: str) -> ArtifactEntry:
        """The artifact `@alias` of the thread (`AliasNotFound`, listing its aliases, if none)."""
        name = alias.strip().lstrip("@")
        found = next((e for e in reversed(self.artifacts(thread)) if e.alias == name), None)
        if found is None:
            raise _missing(self.artifacts(thread), f"@{name}", "alias", None)
        return found

    # -- calls ---------------------------------------------------------------------------------------------

    def upload(self, thread: str, value: Any, *, kind: str = "image") -> CallResult:
        """Store an image, mask or video (a path, an array, or a ref the store holds) in the thread: its alias comes
        back."""
        if isinstance(value, ArtifactRef):  # stored already (and checked: `agent.server.artifacts.store_upload`)
            entry = self.memory.record_artifact(thread, value)
        else:
            entry = self.session(thread).upload(value, kind=kind)
        return CallResult(thread, "upload", f"Uploaded {describe(entry)}. Name it @{entry.alias} in the next call.",
                          made=(entry,))

    def call(self, thread: str, name: str, args: Mapping[str, Any] | BaseModel, *,
             on_event: Emit | None = None) -> CallResult:
        """Run one tool or saved workflow on the thread, its artifacts named by alias. Never raises a `VitronError`:
        a bad call, a failed step or a question comes back as the result's `error`."""
        with self._one_at_a_time(thread):
            try:
                spec = self.spec(name)
                invocation = self.invocation(thread, spec, args)
            except VitronError as exc:
                return CallResult(thread, name, f"{name}: {exc.message}", error=exc)
            return self._run(thread, spec.name, invocation, on_event)

    def invocation(self, thread: str, spec: ToolSpec, args: Mapping[str, Any] | BaseModel) -> Invocation:
        """The call as a plan's step, checked against the thread's artifacts and the tool's own schema (a box inside
        the picture, a mask of its size), before anything is recorded. `InvalidInput` naming the field and the
        fix."""
        data = args.model_dump() if isinstance(args, BaseModel) else dict(args)
        try:
            parsed = spec.args.model_validate(data)
        except ValidationError as exc:
            raise invalid_arguments(exc, spec.args) from None
        table = self.artifacts(thread)
        inputs: dict[str, ArtifactRef] = {}
        for field_name, kind in spec.artifacts.items():
            value = getattr(parsed, field_name)
            if value is not None:
                inputs[field_name] = resolve(table, value, kind, field_name).ref
        # What the call says, not the defaults: a field left out keeps the tool's (or the workflow's) own default.
        fields = spec.args.model_fields
        values = {k: v for k, v in parsed.model_dump(exclude_none=True, exclude_unset=True).items()
                  if k not in spec.artifacts and k not in spec.regions and v != fields[k].default}
        regions = {n: self._region(table, getattr(parsed, n), n) for n in spec.regions
                   if getattr(parsed, n) is not None}
        store = self.memory.store
        if spec.workflow:
            params = {**values, **{n: r.model_dump(mode="json") for n, r in regions.items()}}
            invocation = Invocation(module=spec.name, command="", inputs=inputs, params=params)
        else:
            command = values.pop("command", "")
            invocation = Invocation(module=spec.name, command=command, region=regions.get("region"), inputs=inputs,
                                    params=values)
        _checked(invocation, table, store, self.agent.settings)
        return invocation

    def _region(self, table: Sequence[ArtifactEntry], arg: Any, field_name: str) -> Any:
        if isinstance(arg, ScribbleArg):
            return ScribbleRegion(mask=resolve(table, arg.mask, "mask", f"{field_name}.mask").ref)
        if isinstance(arg, BoxesArg):
            entry = resolve(table, arg.boxes, "boxes", f"{field_name}.boxes")
            found = region_from_boxes(self.memory.store.get_json(entry.ref), field=field_name)
            if found is None:
                raise InvalidInput(f"@{entry.alias} holds no box", field=f"{field_name}.boxes",
                                   fix="give a box yourself, or boxes that found something")
            return found
        return arg.region()

    def _run(self, thread: str, name: str, invocation: Invocation, on_event: Emit | None) -> CallResult:
        """The call as a turn of the session, planned by the call itself."""
        given = self.agent.with_planner(_Given(Plan(steps=[PlanStep(invocation=invocation)])))
        session = self.session(thread, given)
        try:
            with self._under_way(thread, session):
                reply = self._drive(session, session.stream(call_text(name, invocation)), on_event)
                while reply.waiting and (reply.approval or {}).get("type") == "approval":
                    # The caller named the module itself: the call is the user's yes (an MCP client asks its own).
                    reply = self._drive(session, session.stream_answer("approve"), on_event)
        except VitronError as exc:  # the thread has an unfinished turn, or the database is away
            return CallResult(thread, name, f"{name}: {exc.message}", error=exc)
        state = given.graph.get_state({"configurable": {"thread_id": thread}})
        results = (state.values or {}).get("results") or {}
        return _result(thread, name, reply, results)

    def run_turn(self, thread: str, text: str | None, *, approve: bool | None = None,
                 on_event: Emit | None = None) -> CallResult:
        """A whole turn in plain English, planned by the agent's own planner; `approve` answers an approval pause
        (then `text` is left out)."""
        session = self.session(thread)
        try:
            with self._one_at_a_time(thread), self._under_way(thread, session):
                turn = session.stream_answer("approve" if approve else "deny") if approve is not None \
                    else session.stream(text)
                reply = self._drive(session, turn, on_event)
        except VitronError as exc:
            return CallResult(thread, "run_turn", f"run_turn: {exc.message}", error=exc)
        made = ", ".join(describe(e) for e in reply.artifacts)
        text_back = reply.text + (f"\n\nArtifacts: {made}." if made else "")
        if reply.waiting:
            steps = "; ".join(f"{s['module']}: {s['command']}" for s in (reply.approval or {}).get("steps", []))
            text_back = (f"Waiting for approval to run {steps or 'the next steps'}: call run_turn on this thread with "
                         "approve: true (or false to skip them).")
        return CallResult(thread, "run_turn", text_back, made=reply.artifacts, reply=reply)

    def cancel(self, thread: str) -> bool:
        """Stop the call or turn under way on the thread (its running step stops at its next progress report, the
        rest are skipped). False when none is."""
        with self._lock:
            session = self._running.get(thread)
        if session is None:
            return False
        session.cancel_turn()
        return True

    @contextmanager
    def _under_way(self, thread: str, session: AgentSession) -> Iterator[None]:
        with self._lock:
            self._running[thread] = session
        try:
            yield
        finally:
            with self._lock:
                if self._running.get(thread) is session:
                    del self._running[thread]

    @contextmanager
    def _one_at_a_time(self, thread: str) -> Iterator[None]:
        with self._lock:
            lock, users = self._turns.get(thread, (threading.Lock(), 0))
            self._turns[thread] = (lock, users + 1)
        try:
            with lock:
                yield
        finally:
            with self._lock:
                lock, users = self._turns[thread]
                if users == 1:
                    del self._turns[thread]
                else:
                    self._turns[thread] = (lock, users - 1)

    @staticmethod
    def _drive(session: AgentSession, turn: Any, on_event: Emit | None) -> Reply:
        """Read a turn's events (an `agent.api.TurnStream`) to its end; its own reply."""
        for event in turn:
            if on_event is not None:
                on_event(event)
        return turn.reply  # the turn's own, even if another process's turn follows at once


# -- aliases ---------------------------------------------------------------------------------------------------


def resolve(table: Sequence[ArtifactEntry], text: str, kind: str, field_name: str) -> ArtifactEntry:
    """The artifact a call names for a field of `kind`: `@img1` or `img1`, the newest of the kind ("latest", "the
    image", "it"), or a full sha256 already in the session. `AliasNotFound` lists the session's artifacts of the
    kind; `InvalidInput` says when the one named is of another kind."""
    spelled = str(text).strip()
    name = spelled.lstrip("@").strip()
    lowered = name.lower()
    found = next((e for e in reversed(table) if e.alias == lowered), None)
    if found is None and _SHA.match(lowered):
        found = next((e for e in reversed(table) if e.ref.sha256 == lowered), None)
    if found is None and _STEP.match(spelled):
        raise InvalidInput(f"{spelled} names a step of a plan; a call names an artifact", field=field_name,
                           fix=_choices(table, kind, f"give {a_or_an(kind)} by alias"))
    if found is None:
        words = re.findall(r"[a-z0-9_]+", lowered)  # "img9" is a missing alias, not "the image"
        named = {_KIND_WORDS[w] for w in words if w in _KIND_WORDS}
        if words and all(w in _LATEST_WORDS or w in _KIND_WORDS for w in words):
            wanted = named.pop() if len(named) == 1 else kind
            found = next((e for e in reversed(table) if e.ref.kind == wanted), None)
            if found is None:
                raise _missing(table, spelled, field_name, wanted)
    if found is None:
        raise _missing(table, spelled, field_name, kind)
    if found.ref.kind != kind:
        raise InvalidInput(f"@{found.alias} is {a_or_an(found.ref.kind)}, not {a_or_an(kind)}", field=field_name,
                           fix=_choices(table, kind, f"give {a_or_an(kind)}"))
    return found


def _choices(table: Sequence[ArtifactEntry], kind: str | None, lead: str) -> str:
    of_kind = [e for e in table if kind is None or e.ref.kind == kind]
    if of_kind:
        return f"{lead}: " + ", ".join(f"@{e.alias}" for e in of_kind[-12:])
    what = f"no {kind}" if kind else "no artifacts"
    return f"{lead}; the session has {what} yet: upload one or make one first"


def _missing(table: Sequence[ArtifactEntry], spelled: str, field_name: str, kind: str | None) -> AliasNotFound:
    what = f"{kind}s" if kind else "artifacts"
    known = [e for e in table if kind is None or e.ref.kind == kind]
    fix = (f"use one of its {what}: " + ", ".join(f"@{e.alias}" for e in known[-12:]) if known else
           f"the session has no {kind or 'artifact'} yet: upload one, or make one with a tool first")
    return AliasNotFound(f"the session has no {kind or 'artifact'} {spelled!r}", field=field_name, fix=fix)


# -- checks ----------------------------------------------------------------------------------------------------


def invalid_arguments(exc: ValidationError, args: type[BaseModel] | None = None) -> InvalidInput:
    """A model's arguments that do not fit the tool's schema: every problem with its field (the first's is the
    error's field), and what the tool takes."""
    problems = []
    errors = exc.errors(include_url=False)
    for index, err in enumerate(errors):
        where = ".".join(str(p) for p in err["loc"]) or "arguments"
        message = str(err["msg"]).removeprefix("Value error, ")
        got = f" (got {err['input']!r:.60})" if err["type"] not in ("missing", "extra_forbidden") else ""
        problems.append(f"{where + ': ' if index else ''}{message}{got}")
    fix = "correct the arguments and call again"
    if args is not None:
        takes = ", ".join(f"{n} (required)" if f.is_required() else n for n, f in args.model_fields.items())
        fix = f"{args.__name__} takes {takes}"
    return InvalidInput("; ".join(problems), field=".".join(str(p) for p in errors[0]["loc"]) or "arguments",
                        fix=fix)


def _checked(invocation: Invocation, table: Sequence[ArtifactEntry], store: Any, settings: Any) -> None:
    """Compile the call as the agent will (the tool's own checks with the real refs: a region inside the picture, a
    mask of its size; a workflow's wiring), without recording or running anything."""
    try:
        plan = compile_invocations([invocation], tuple(table), store,
                                   workflows=lambda name: saved_workflow(name, settings, store))
    except VitronError as exc:
        # The compiler speaks of plans ("step 1 (image_editing): …"); a call is one step.
        problem = re.sub(r"^step 1 \([a-z_]+\):? ", "", exc.problem)
        raise InvalidInput(problem, field=exc.field, fix=exc.fix) from None
    models = read_models_file(settings.models_path)
    for step in plan.steps:  # a module with no backend here (generation without weights) is refused now, not run
        get_tool(step.module).backend_name(step.backend, models)


# -- text for the calling model --------------------------------------------------------------------------------


def size_text(ref: ArtifactRef) -> str:
    """`480x360`, `320x240, 24 frames`, or '' when the ref's shape says nothing."""
    size = frame_size(ref)
    if size is None:
        return ""
    frames = f", {ref.shape[0]} frames" if ref.kind in ("video", "masks") and ref.shape else ""
    return f"{size[0]}x{size[1]}{frames}"


def describe(entry: ArtifactEntry) -> str:
    """`@mask1 (mask, 480x360) from image_segmentation of @img1`."""
    size = size_text(entry.ref)
    what = f"{entry.ref.kind}, {size}" if size else entry.ref.kind
    source = "an upload" if entry.made_by == "upload" else entry.made_by
    of = f" of {', '.join('@' + p for p in entry.parents)}" if entry.parents else ""
    return f"@{entry.alias} ({what}) from {source}{of}"


def call_text(name: str, invocation: Invocation) -> str:
    """The call as the session's history shows it: `image_segmentation(image=@img1, region=box (10, 20, 200, 150),
    command="segment the cup")`."""
    parts = [f"{k}=@{v.alias}" if isinstance(v, ArtifactRef) and v.alias else f"{k}={v}"
             for k, v in invocation.inputs.items()]
    if invocation.region is not None:
        parts.append(f"region={_value_text(invocation.region.model_dump(mode='json'))}")
    parts += [f"{k}={_value_text(v)}" for k, v in invocation.params.items()]
    if invocation.command:
        parts.append(f"command={invocation.command!r}")
    return f"{name}({', '.join(parts)})"


def _value_text(value: Any) -> str:
    if isinstance(value, Mapping) and value.get("kind") == "box" and "box" in value:
        return "box (" + ", ".join(f"{float(v):g}" for v in value["box"]) + ")"
    if isinstance(value, Mapping) and value.get("kind") == "points" and "points" in value:
        return "points " + ", ".join(f"({float(x):g}, {float(y):g})" for x, y in value["points"])
    if isinstance(value, Mapping) and value.get("kind") == "scribble":
        return f"scribble @{(value.get('mask') or {}).get('alias') or 'mask'}"
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _result(thread: str, name: str, reply: Reply, results: Mapping[str, Any]) -> CallResult:
    """What the turn of a call gave back, as the calling model reads it."""
    values: dict[str, Any] = {}
    for result in results.values():
        for key, value in (result.get("outputs") or {}).items():
            if not (isinstance(value, Mapping) and "sha256" in value) and key not in ("answered",):
                values[key] = value
    if reply.refused is not None:
        error = InvalidInput(reply.refused, field="arguments", fix="correct the call and call again")
        return CallResult(thread, name, f"{name}: {reply.refused}", error=error, reply=reply)
    unsuccessful = [s for s in reply.steps if s.status != "succeeded"]
    if unsuccessful or not reply.steps:
        step = unsuccessful[0] if unsuccessful else None
        error = _step_error(step, reply)
        text = f"{name}: {error.message}"
        if reply.artifacts:
            text += " Made before it stopped: " + "; ".join(describe(e) for e in reply.artifacts) + "."
        return CallResult(thread, name, text, made=reply.artifacts, values=values, error=error, reply=reply)
    lines = []
    answer = values.get("text")
    if isinstance(answer, str) and answer:
        lines.append(f"{name} answered: {answer}")
    if reply.artifacts:
        lines.append(f"{name} made " + "; ".join(describe(e) for e in reply.artifacts) + ".")
    details = [f"{k}: {_value_text(v)}" for k, v in values.items() if k != "text"]
    if details:
        lines.append("; ".join(details) + ".")
    return CallResult(thread, name, " ".join(lines) or f"{name} made nothing.", made=reply.artifacts,
                      values=values, reply=reply)


def _step_error(step: Any, reply: Reply) -> VitronError:
    if step is None:  # no step ran: the reply says why (a question about which artifact)
        return CallFailed(reply.text or "nothing ran", field="arguments", fix="name the artifacts by alias")
    error = step.error or {}
    problem = error.get("problem") or step.message or step.status
    where = f"step {step.position} ({step.module}) {step.status}: " if step.position and len(reply.steps) > 1 else ""
    if step.status in ("cancelled", "skipped"):
        return CallFailed(where + str(problem), fix="call again to run it")
    fix = error.get("fix") or ("call again with a more specific command, or a region" if "mean" in str(problem)
                               else "correct the call and call again")
    return CallFailed(where + str(problem), field=error.get("field"), fix=fix)


__all__ = ["CallResult", "ToolSpec", "Toolkit", "describe", "invalid_arguments", "module_specs", "resolve",
           "workflow_spec"]
