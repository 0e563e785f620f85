"""The chat-model planner: any LangChain chat model with tool calling plans by calling the specialist tools.

The model sees one LLM-facing tool per specialist and per saved workflow (`planner_tools()`): the command, the
region, and each artifact input as an alias string (`@img1`, or `@N` for the output of call N of the same answer).
Its tool
calls, in order, become the plan's steps; its text becomes the reply. A call that names no tool or whose
arguments do not validate goes back to the model as a ToolMessage carrying the error, a few times, before
the planner gives up with `InvalidInput`.

Only what an `Invocation` can carry is offered to the model: command, region, artifact inputs, and an edit's
`area` (the object, or the background around it). Tool parameters such as `num_frames`, `fps`, `width`, `seed` or
GLIGEN `boxes` are left out (they would be lost), so the specialists use their defaults; add them here when
Invocation gains a place for them.

The model also sees the turn's pictures: each uploaded image, and a few evenly spaced frames of each uploaded
video, downscaled and sent as image content blocks after the context text, each labelled with its alias and size
(`send_images=False`, or VITRON_CHAT_IMAGES=0, for a model that takes text only).
"""

from __future__ import annotations

import base64
import io
import os
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    create_model,
    model_validator,
)
from pydantic.fields import FieldInfo

from memory import ArtifactEntry
from schemas import (
    ARTIFACT_KINDS,
    INPUT_REF_PATTERN,
    ArtifactRef,
    BackendUnavailable,
    BoxRegion,
    InvalidInput,
    Invocation,
    Plan,
    PlanStep,
    PointsRegion,
    Region,
    ScribbleRegion,
    UnknownModule,
    VitronError,
    VitronSettings,
    a_or_an,
    resolve_module,
)
from tools import all_tools
from workflows import CompiledWorkflow, saved_workflow, saved_workflows
from workflows.kinds import artifact_inputs

from .base import PlanRequest, StepOutcome

if TYPE_CHECKING:
    import numpy as np
    from PIL.Image import Image

ALIAS_DESCRIPTION = "an artifact alias from the artifact table, like @img1, or @N for the output of step N of this plan"

DEFAULT_SYSTEM_PROMPT = """\
You are Vitron, a vision assistant that works on the user's images and videos at the pixel level.

- To segment, edit, generate or animate images and videos, call the tools. Describe, caption or answer \
questions about a picture you can see yourself, in plain text; call visual_understanding for a picture you \
cannot see, or to find where something is ("find: the cat on the left"): its boxes can be a later call's region.
- Refer to artifacts (images, masks, videos, per-frame masks) by their alias from the artifact table, like \
@img1 or @mask2. This turn's uploads are listed with the user's message; their pictures may follow it, each \
labelled with its alias and its size in pixels.
- Several tool calls in one answer form a multi-step plan, run in the order you write them. `@N` names the \
output of call N of that answer, counting from 1: segment with call 1, then edit with `"mask": "@1"` in call 2.
- `command` is a short instruction for the specialist, e.g. "segmentation: the red car" or "make it blue".
- `region` points at an object in pixels: {"kind": "box", "box": [x1, y1, x2, y2]} or \
{"kind": "points", "points": [[x, y]], "labels": [1]}, in the pixels of the artifact's own size, even where \
its picture is shown smaller. When the user drew a region, pass it on as given. \
{"kind": "boxes", "boxes": "@1"} is the best box that call 1 (visual_understanding) found, or that a boxes \
artifact such as @boxes1 holds.
- After the tools run you see their results: call more tools if the request needs more, or answer the user \
in plain text. An answer with no tool calls ends the turn.
"""

IMAGE_SIDE = 768
"""The longest side, in pixels, of a picture shown to the chat model. OpenAI's detailed view shrinks an image to
768 on its short side and most open vision-language models see less: a larger picture costs upload and tokens,
not detail."""

VIDEO_FRAMES = 4
"""Frames of an uploaded video shown to the chat model, evenly spaced, the first and the last included."""

_R = TypeVar("_R")
_NOT_RUN = "not run: another call in this answer was invalid; answer again with every call corrected"
_PIP = {  # init_chat_model's provider prefix -> the package that provides it, where the name does not say
    "azure_openai": "langchain-openai", "bedrock": "langchain-aws", "bedrock_converse": "langchain-aws",
    "google_vertexai": "langchain-google-vertexai", "google_genai": "langchain-google-genai",
    "huggingface": "langchain-huggingface", "together": "langchain-together",
}


# --- the LLM-facing tool schemas -----------------------------------------------------------------------------


def _alias(value: Any) -> Any:
    # Models often drop the `@`; a bare name or number means the same reference.
    if isinstance(value, str):
        value = value.strip()
        if value and not value.startswith("@"):
            value = "@" + value
    return value


AliasRef = Annotated[str, BeforeValidator(_alias), Field(pattern=INPUT_REF_PATTERN)]
"""An artifact input as the model writes it: `@img1`, or `@N` for call N's output."""


# The region types below mirror schemas.Region in plain JSON-schema terms (lists, no tuples or refs), which
# every provider's tool format accepts; each turns into the schemas' region once validated.


class BoxArg(BaseModel):
    """A box in pixels: [x1, y1, x2, y2] with x1 < x2 and y1 < y2."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["box"] = "box"
    box: list[float] = Field(min_length=4, max_length=4, description="[x1, y1, x2, y2] in pixels.")

    @model_validator(mode="after")
    def _valid(self) -> BoxArg:
        self.region()
        return self

    def region(self) -> BoxRegion:
        return _checked(lambda: BoxRegion(box=tuple(self.box)))


class PointsArg(BaseModel):
    """Points in pixels, [[x, y], …]; labels 1 (on the object, the default) or 0 (background), one per point."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["points"] = "points"
    points: list[Annotated[list[float], Field(min_length=2, max_length=2)]] = Field(min_length=1)
    labels: list[Literal[0, 1]] = Field(default_factory=list)

    @model_validator(mode="after")
    def _valid(self) -> PointsArg:
        self.region()
        return self

    def region(self) -> PointsRegion:
        points = tuple((x, y) for x, y in self.points)
        return _checked(lambda: PointsRegion(points=points, labels=tuple(self.labels)))


class ScribbleAlias(BaseModel):
    """A mask the user scribbled over the object, by its alias; the planner resolves it to the stored mask."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["scribble"] = "scribble"
    mask: AliasRef = Field(description="The scribble's alias, like @mask1.")


class BoxesAlias(BaseModel):
    """The best box an earlier step found, by alias: the planner passes it on as the step's region input."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["boxes"] = "boxes"
    boxes: AliasRef = Field(description="@N of a visual_understanding call of this answer, or a boxes alias like "
                                        "@boxes1.")


def _checked(make: Callable[[], _R]) -> _R:
    try:
        return make()
    except ValidationError as exc:  # as a plain ValueError, so the tool's validation reports it on this field
        raise ValueError(_message(exc.errors(include_url=False)[0])) from None


def _region_kind(value: Any) -> str | None:
    # Models often leave out "kind": the other keys say which region they meant.
    if isinstance(value, Mapping):
        return value.get("kind") or next((kind for key, kind in _REGION_KEYS if key in value), None)
    return getattr(value, "kind", None)


_REGION_KEYS = (("box", "box"), ("points", "points"), ("mask", "scribble"), ("boxes", "boxes"))

PlannerRegion = Annotated[
    Annotated[BoxArg, Tag("box")] | Annotated[PointsArg, Tag("points")] | Annotated[ScribbleAlias, Tag("scribble")]
    | Annotated[BoxesAlias, Tag("boxes")],
    Discriminator(_region_kind, custom_error_type="region_kind",
                  custom_error_message='a region is {"kind": "box", "box": [x1, y1, x2, y2]} or '
                                       '{"kind": "points", "points": [[x, y]], "labels": [1]}'),
]
"""The schemas' Region as the model writes it: box, points, a scribble named by alias, or found boxes by alias."""


class _ToolArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _mentions(annotation: Any, target: type) -> bool:
    if annotation is target:
        return True
    return any(_mentions(arg, target) for arg in typing.get_args(annotation))


def planner_tools(workflows: Mapping[str, CompiledWorkflow] | None = None) -> tuple[type[BaseModel], ...]:
    """One pydantic model per specialist, for `bind_tools`: name and docstring from the tool, tensors left out;
    then one per saved workflow (`workflows`, by name).

    Artifact fields (image, mask, video, masks) become alias strings, required or optional as in the tool;
    `region` takes a box, points, or a scribble named by alias. Parameters an Invocation cannot carry are omitted.
    """
    return (*_specialist_tools(), *(_workflow_tool(name, flow) for name, flow in (workflows or {}).items()))


@cache
def _specialist_tools() -> tuple[type[BaseModel], ...]:
    models = []
    for tool in all_tools():
        fields: dict[str, Any] = {}
        for name, info in tool.input_model.model_fields.items():
            if name == "region":
                description = info.description or "Where the object is."
                fields[name] = (PlannerRegion | None, Field(default=None, description=description))
            elif _mentions(info.annotation, ArtifactRef):
                if info.is_required():
                    fields[name] = (AliasRef, Field(description=_field_description(info)))
                else:
                    fields[name] = (AliasRef | None, Field(default=None, description=_field_description(info)))
            elif name in ("command", "area"):  # area: an edit on the object or around it, said explicitly
                fields[name] = (info.annotation, FieldInfo.merge_field_infos(info))
        models.append(create_model(tool.name, __base__=_ToolArgs, __doc__=tool.description, **fields))
    return tuple(models)


def _workflow_tool(name: str, flow: CompiledWorkflow) -> type[BaseModel]:
    """A saved workflow as a tool: its artifact inputs as aliases, its first region input as `region`, and the
    `command` it takes (see `workflows.compiler`); its other inputs keep their defaults."""
    fields: dict[str, Any] = {}
    for field, spec in flow.inputs.items():
        if spec.type in ARTIFACT_KINDS:
            description = f"{spec.description or spec.type}: {ALIAS_DESCRIPTION}."
            fields[field] = ((AliasRef, Field(description=description)) if spec.required
                             else (AliasRef | None, Field(default=None, description=description)))
    if any(spec.type == "region" for spec in flow.inputs.values()):
        fields["region"] = (PlannerRegion | None, Field(default=None, description="Where the object is."))
    fields["command"] = (str, Field(default="", description="What to do, in plain words."))
    outputs = ", ".join(f"{n} ({k})" for n, k in flow.output_kinds().items())
    doc = f"{flow.definition.description or f'The saved workflow {name}.'} Makes {outputs}."
    return create_model(name, __base__=_ToolArgs, __doc__=doc, **fields)


def _artifact_fields(model: type[BaseModel], flows: Mapping[str, CompiledWorkflow]) -> dict[str, str]:
    """The model's fields that take an artifact alias, with the kind each takes."""
    flow = flows.get(model.__name__)
    if flow is not None:
        return {n: s.type for n, s in flow.inputs.items() if s.type in ARTIFACT_KINDS and n in model.model_fields}
    return {field: field for field in artifact_inputs(model.__name__)}  # a tool's fields are named by their kinds


def _field_description(info: FieldInfo) -> str:
    what = info.description or (info.annotation.__name__ if isinstance(info.annotation, type) else "an artifact")
    return f"{what.rstrip('.')}: {ALIAS_DESCRIPTION}."



# --- the planner ---------------------------------------------------------------------------------------------


@dataclass
class _Call:
    """One tool call of an answer: its id, and either the step it becomes or why it cannot."""

    id: str
    step: PlanStep | None = None
    error: str | None = None


class ChatModelPlanner:
    """Plans with a LangChain chat model's tool calls; sees each round's results and plans again."""

    name = "chat"
    replans = True

    def __init__(self, model: BaseChatModel, *, max_corrections: int = 2, system_prompt: str | None = None,
                 workflows: Mapping[str, CompiledWorkflow] | None = None, send_images: bool = True,
                 image_side: int = IMAGE_SIDE) -> None:
        if max_corrections < 0:
            raise InvalidInput(f"max_corrections is {max_corrections}", field="max_corrections", fix="use 0 or more")
        if image_side < 1:
            raise InvalidInput(f"image_side is {image_side}", field="image_side", fix="use 1 or more pixels")
        self.workflows = dict(workflows or {})
        self.tools = {tool.__name__: tool for tool in planner_tools(self.workflows)}
        try:
            self.bound = model.bind_tools(list(self.tools.values()))
        except NotImplementedError:
            raise BackendUnavailable(f"the chat model {type(model).__name__} does not support tool calling",
                                     field="chat_model", fix="choose a chat model with tool calling") from None
        self.model = model
        self.max_corrections = max_corrections
        self.system_prompt = system_prompt or DEFAULT_SYSTEM_PROMPT
        self.send_images = send_images
        self.image_side = image_side

    @classmethod
    def from_settings(cls, settings: VitronSettings | None = None, **kwargs: Any) -> ChatModelPlanner:
        """The chat model named by `settings.chat_model` (VITRON_CHAT_MODEL), e.g. "openai:gpt-4o-mini"."""
        settings = settings or VitronSettings()
        # Until the settings carry the field, read the variable it will read.
        spec = (getattr(settings, "chat_model", None) or os.environ.get("VITRON_CHAT_MODEL") or "").strip()
        provider = spec.partition(":")[0] if ":" in spec else None
        package = _PIP.get(provider or "", f"langchain-{provider.replace('_', '-')}" if provider else None)
        install = f"pip install langchain {package or 'langchain-<provider>'}"
        if not spec:
            raise BackendUnavailable("no chat model is configured (VITRON_CHAT_MODEL is not set)", field="chat_model",
                                     fix=f"set VITRON_CHAT_MODEL to provider:model, e.g. openai:gpt-4o-mini, "
                                         f"and {install}")
        try:
            from langchain.chat_models import init_chat_model
        except ImportError:
            raise BackendUnavailable(f"the chat model {spec!r} (VITRON_CHAT_MODEL) needs the `langchain` package",
                                     field="chat_model", fix=install) from None
        try:
            model = init_chat_model(spec)
        except ImportError as exc:
            raise BackendUnavailable(f"the chat model {spec!r} (VITRON_CHAT_MODEL) needs its provider package: {exc}",
                                     field="chat_model", fix=install) from None
        except Exception as exc:  # unknown provider, missing API key…: all configuration, all reported alike
            raise BackendUnavailable(f"cannot start the chat model {spec!r} (VITRON_CHAT_MODEL): {exc}",
                                     field="chat_model",
                                     fix="write VITRON_CHAT_MODEL as provider:model and set the provider's "
                                         "credentials (e.g. OPENAI_API_KEY)") from None
        kwargs.setdefault("workflows", _saved(settings))
        kwargs.setdefault("send_images", settings.chat_images)
        return cls(model, **kwargs)

    def plan(self, request: PlanRequest) -> Plan:
        messages = self.messages(request)
        known = _known_artifacts(request)
        corrections = 0
        while True:
            answer = self.bound.invoke(messages)
            if not isinstance(answer, AIMessage):  # a wrapper returning something else: read it as text
                answer = AIMessage(content=getattr(answer, "content", str(answer)))
            calls = _read_calls(answer, known, self.tools, self.workflows)
            errors = [f"call {i} ({c.id}): {c.error}" for i, c in enumerate(calls, 1) if c.error is not None]
            if not errors:
                return Plan(reply=content_text(answer.content), steps=[c.step for c in calls if c.step is not None])
            if corrections == self.max_corrections:
                raise InvalidInput(f"the chat model's tool calls were still invalid after {corrections} "
                                   f"correction(s): {'; '.join(errors)}", field="plan",
                                   fix="try again, rephrase the request, or use a stronger chat model")
            corrections += 1
            # The model sees what it said and, per call, why it was refused (or that it was not run).
            messages = [*messages, answer, *(ToolMessage(content=c.error or _NOT_RUN, tool_call_id=c.id,
                                                         status="error") for c in calls)]

    def messages(self, request: PlanRequest) -> list[BaseMessage]:
        """The prompt for a request: the system prompt, the context with the user's text and the turn's pictures,
        then results and feedback."""
        messages: list[BaseMessage] = [SystemMessage(self.system_prompt), HumanMessage(self._turn(request))]
        notes = []
        if request.round > 1 and request.results:
            notes.append(_results_text(request))
        if request.feedback:
            notes.append(f"Your previous plan was refused: {request.feedback}\n"
                         "Answer again with the plan corrected.")
        if notes:
            messages.append(HumanMessage("\n\n".join(notes)))
        return messages

    def _turn(self, request: PlanRequest) -> str | list[str | dict[str, Any]]:
        """The context text alone, as before, when there is no picture to show; else content blocks: the text,
        then the pictures."""
        text = _context(request)
        pictures = _pictures(request, self.image_side) if self.send_images else []
        return [_text_block(text), *pictures] if pictures else text


# --- prompt text ---------------------------------------------------------------------------------------------


def _context(request: PlanRequest) -> str:
    history = request.history.render().strip()
    table = "\n".join(entry.describe() for entry in request.artifacts)
    parts = [f"Conversation so far:\n{history or '(this is the first turn)'}",
             f"Artifact table:\n{table or '(no artifacts yet)'}"]
    if request.inputs:
        parts.append("Uploaded with this message: " + ", ".join(f"@{alias}" for alias in request.inputs))
    if request.region is not None:
        parts.append(f"Region the user drew this turn: {_region_text(request)}")
    parts.append(f"User: {request.text}")
    return "\n\n".join(parts)


def _region_text(request: PlanRequest) -> str:
    region = request.region
    if isinstance(region, ScribbleRegion):
        return f'{{"kind": "scribble", "mask": "@{_scribble_alias(region)}"}}'
    assert region is not None
    return region.model_dump_json()


def _scribble_alias(region: ScribbleRegion) -> str:
    return region.mask.alias or "scribble"  # a scribble not recorded yet still needs a name the model can use


def _results_text(request: PlanRequest) -> str:
    lines = [f"Results so far this turn (before round {request.round}):"]
    lines.extend(f"  {_outcome_text(outcome)}" for outcome in request.results)
    lines.append("Continue: call more tools if the request needs more steps (refer to these outputs by their "
                 "aliases; @N now names call N of your new answer), or answer the user in plain text.")
    return "\n".join(lines)


def _outcome_text(outcome: StepOutcome) -> str:
    text = f"step {outcome.position} {outcome.module} “{outcome.command}”: {outcome.status}"
    if outcome.outputs:
        text += " → " + ", ".join(f"@{alias}" for alias in outcome.outputs)
    if outcome.error:
        text += f" ({outcome.error})"
    return text


def content_text(content: str | Sequence[str | Mapping[str, Any]]) -> str:
    """A message's text: the string itself, or the text parts of a list of content blocks joined by newlines."""
    if isinstance(content, str):
        return content.strip()
    parts = [block if isinstance(block, str) else str(block.get("text") or "")
             for block in content if isinstance(block, str) or block.get("type") == "text"]
    return "\n".join(part.strip() for part in parts if part.strip())


# --- the turn's pictures --------------------------------------------------------------------------------------


def _pictures(request: PlanRequest, side: int) -> list[dict[str, Any]]:
    """Content blocks for this turn's uploaded images and videos, in upload order: a label, then its picture."""
    blocks: list[dict[str, Any]] = []
    for alias, ref in request.inputs.items():
        if ref.kind not in ("image", "video"):
            continue
        try:
            blocks.extend(_image_blocks(request, alias, ref, side) if ref.kind == "image"
                          else _video_blocks(request, alias, ref, side))
        except VitronError as exc:  # the model plans without the picture; a step that reads it reports the error
            blocks.append(_text_block(f"@{alias} cannot be shown: {exc.problem}"))
    return blocks


def _image_blocks(request: PlanRequest, alias: str, ref: ArtifactRef, side: int) -> list[dict[str, Any]]:
    pixels = request.store.get_image(ref)
    shown = _shrunk(pixels, side)
    return [_text_block(f"@{alias} {_size_text(pixels, shown)}:"), _image_block(shown)]


def _video_blocks(request: PlanRequest, alias: str, ref: ArtifactRef, side: int) -> list[dict[str, Any]]:
    total, frames = request.store.sample_frames(ref, VIDEO_FRAMES)
    blocks: list[dict[str, Any]] = []
    for index, pixels in frames:
        shown = _shrunk(pixels, side)
        blocks += [_text_block(f"@{alias} frame {index} of {total} {_size_text(pixels, shown)}:"), _image_block(shown)]
    return blocks


def _shrunk(pixels: np.ndarray, side: int) -> Image:
    """The picture with its longest side at most `side` pixels, aspect ratio kept; smaller ones as they are."""
    from PIL import Image

    image = Image.fromarray(pixels)
    scale = side / max(image.size)
    if scale >= 1:
        return image
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.Resampling.LANCZOS)


def _size_text(pixels: np.ndarray, shown: Image) -> str:
    height, width = pixels.shape[:2]
    if shown.size == (width, height):
        return f"({width}x{height})"
    return f"({width}x{height}, shown at {shown.width}x{shown.height})"


def _image_block(image: Image) -> dict[str, Any]:
    """An OpenAI-style image block, which every LangChain chat model accepts, holding the picture as a data URL."""
    buffer = io.BytesIO()
    # PNG, not JPEG: lossless, so only the downscaling stands between what the model sees and what the tools work
    # on; providers bill a picture by its size in pixels, not in bytes, and the downscaling keeps the bytes small.
    image.save(buffer, format="PNG")
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{data}"}}


def _text_block(text: str) -> dict[str, Any]:
    return {"type": "text", "text": text}


# --- reading an answer's tool calls --------------------------------------------------------------------------


def _known_artifacts(request: PlanRequest) -> dict[str, ArtifactRef | None]:
    """Every alias the model may name, with its ref where known (outputs of earlier rounds may only be names)."""
    known: dict[str, ArtifactRef | None] = {}
    entries: list[ArtifactEntry] = [*request.history.earlier_artifacts, *request.artifacts]
    for entry in entries:
        known[entry.alias] = entry.ref
    for turn in request.history.turns:
        for ref in turn.artifacts:
            if ref.alias:
                known.setdefault(ref.alias, ref)
    for alias, ref in request.inputs.items():
        known[alias] = ref.model_copy(update={"alias": alias})
    if isinstance(request.region, ScribbleRegion):
        known[_scribble_alias(request.region)] = request.region.mask
    for outcome in request.results:
        for alias in outcome.outputs:
            known.setdefault(alias, None)
    return known


def _saved(settings: VitronSettings) -> dict[str, CompiledWorkflow]:
    """The saved workflows the model may call; one that does not compile is left out, not fatal."""
    found = {}
    for name in saved_workflows(settings):
        try:
            flow = saved_workflow(name, settings)
        except InvalidInput:
            continue
        if flow is not None:
            found[name] = flow
    return found


def _read_calls(answer: AIMessage, known: Mapping[str, ArtifactRef | None], models: Mapping[str, type[BaseModel]],
                flows: Mapping[str, CompiledWorkflow]) -> list[_Call]:
    calls = []
    for i, call in enumerate(answer.tool_calls, 1):
        calls.append(_read_call(call["name"], call["args"], call.get("id") or f"call_{i}", i, known, models, flows))
    # Calls whose arguments were not even JSON: the provider parsed them into invalid_tool_calls.
    for i, bad in enumerate(answer.invalid_tool_calls, len(calls) + 1):
        error = bad.get("error") or "the arguments are not a JSON object"
        calls.append(_Call(bad.get("id") or f"call_{i}", error=f"{bad.get('name')}: {error}"))
    return calls


def _read_call(name: str, args: Mapping[str, Any], call_id: str, position: int,
               known: Mapping[str, ArtifactRef | None], models: Mapping[str, type[BaseModel]],
               flows: Mapping[str, CompiledWorkflow]) -> _Call:
    try:
        model = models.get(name) or models[resolve_module(name).name]
    except (UnknownModule, KeyError):
        return _Call(call_id, error=f"there is no tool {name!r}; the tools are {', '.join(models)}")
    try:
        parsed = model.model_validate(args)
    except ValidationError as exc:
        return _Call(call_id, error=f"{model.__name__}: invalid arguments: {_validation_text(exc)}")
    kinds = _artifact_fields(model, flows)
    inputs = {field: getattr(parsed, field) for field in kinds if getattr(parsed, field) is not None}
    problems = [p for field, ref in inputs.items() if (p := _check_ref(field, kinds[field], ref, position, known))]
    arg = getattr(parsed, "region", None)
    region: Region | None = None
    if isinstance(arg, ScribbleAlias):
        ref = known.get(arg.mask.removeprefix("@"))
        if ref is None or ref.kind != "mask":
            problems.append(f"region: the scribble {arg.mask} is not a mask in the artifact table")
        else:
            region = ScribbleRegion(mask=ref)
    elif isinstance(arg, BoxesAlias):  # the step reads its region from boxes (the resolver takes the best)
        if (problem := _check_ref("region", "boxes", arg.boxes, position, known)) is not None:
            problems.append(problem)
        else:
            inputs["region"] = arg.boxes
    elif arg is not None:
        region = arg.region()
    if problems:
        return _Call(call_id, error=f"{model.__name__}: " + "; ".join(problems))
    try:
        area = getattr(parsed, "area", None)
        invocation = Invocation(module=model.__name__, command=parsed.command, region=region, inputs=inputs,
                                params={"area": area} if area else {})
    except ValidationError as exc:  # not expected: the LLM-facing model checked the same things
        return _Call(call_id, error=f"{model.__name__}: {_validation_text(exc)}")
    return _Call(call_id, step=PlanStep(invocation=invocation))


def _check_ref(field: str, kind: str, ref: str, position: int, known: Mapping[str, ArtifactRef | None]) -> str | None:
    """Why `ref` cannot be this call's `field` input, or None: a step must come earlier, an alias must exist."""
    name = ref.removeprefix("@")
    if name.isdigit():
        if not 1 <= int(name) < position:
            earlier = f"@1 to @{position - 1}" if position > 1 else "none, this is call 1"
            return f"{field}: {ref} is not an earlier call of this answer (earlier calls: {earlier})"
        return None
    if name not in known:
        aliases = ", ".join(f"@{alias}" for alias in known) or "none"
        return f"{field}: no artifact {ref} (the artifact table has {aliases})"
    found = known[name]
    if found is not None and found.kind != kind:
        return f"{field}: {ref} is {a_or_an(found.kind)}, not {a_or_an(kind)}"
    return None


def _validation_text(exc: ValidationError) -> str:
    def one(err: Any) -> str:
        where = ".".join(str(part) for part in err["loc"]) or "arguments"
        return f"{where}: {_message(err)} (got {err.get('input')!r:.80})"

    return "; ".join(one(err) for err in exc.errors(include_url=False))


def _message(err: Any) -> str:
    return str(err["msg"]).removeprefix("Value error, ")


__all__ = ["ALIAS_DESCRIPTION", "DEFAULT_SYSTEM_PROMPT", "ChatModelPlanner", "content_text", "planner_tools"]
