"""The kind of every tool field, read from the tool contracts themselves: what may be wired into what.

An artifact field says its kind (`tools.fields.OfKind`, e.g. `MaskRef`); plain fields have the kind of their type:
text for strings, number for ints and floats, region for regions, embedding for the signal. There is no second
list to keep in step with the tools.
"""

from __future__ import annotations

import types
from dataclasses import dataclass
from functools import cache
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel

from schemas import ARTIFACT_KINDS, ArtifactRef, BoxRegion, Kind, PointsRegion, ScribbleRegion, SignalEmbedding
from tools import VisionTool, all_tools, get_tool
from tools.fields import OfKind

_BY_TYPE: dict[Any, Kind] = {str: "text", int: "number", float: "number", bool: "number",
                             BoxRegion: "region", PointsRegion: "region", ScribbleRegion: "region",
                             SignalEmbedding: "embedding"}


@dataclass(frozen=True)
class FieldInfo:
    """One field of a tool's input or output: its kind, whether it must be given, its description."""

    name: str
    kind: Kind
    required: bool
    description: str
    artifact: bool = False  # its value is one artifact ref (a signal holds several: it is given whole)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "required": self.required, "description": self.description}


def kind_of(annotation: Any) -> Kind:
    """The kind of a field's type; `TypeError` for a type no kind fits (a contract error, caught by the tests)."""
    if get_origin(annotation) is Annotated:
        marked = [m.kind for m in annotation.__metadata__ if isinstance(m, OfKind)]
        return marked[0] if marked else kind_of(get_args(annotation)[0])
    if get_origin(annotation) in (Union, types.UnionType):
        kinds = {kind_of(a) for a in get_args(annotation) if a is not type(None)}
        if len(kinds) == 1:
            return kinds.pop()
        raise TypeError(f"{annotation} mixes kinds {sorted(kinds)}")
    if annotation in _BY_TYPE:
        return _BY_TYPE[annotation]
    if get_origin(annotation) is Literal and all(isinstance(a, str) for a in get_args(annotation)):
        return "text"  # one of some words: `area: object | background`
    raise TypeError(f"no kind fits {annotation!r}: mark the field with OfKind")


def _is_ref(annotation: Any) -> bool:
    if get_origin(annotation) is Annotated:
        return _is_ref(get_args(annotation)[0])
    if get_origin(annotation) in (Union, types.UnionType):
        return any(_is_ref(a) for a in get_args(annotation) if a is not type(None))
    return annotation is ArtifactRef


def _fields(model: type[BaseModel]) -> dict[str, FieldInfo]:
    found = {}
    for name, info in model.model_fields.items():
        annotation = Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation
        kind = kind_of(annotation)
        artifact = kind in ARTIFACT_KINDS and _is_ref(info.annotation)
        found[name] = FieldInfo(name, kind, info.is_required(), info.description or "", artifact)
    return found


@cache
def input_fields(tool_name: str) -> dict[str, FieldInfo]:
    """A tool's input fields by name, in the contract's order."""
    return _fields(_tool(tool_name).input_model)


@cache
def output_fields(tool_name: str) -> dict[str, FieldInfo]:
    """A tool's output fields by name (`backend` left out: it says how, not what)."""
    return {n: f for n, f in _fields(_tool(tool_name).output_model).items() if n != "backend"}


@cache
def artifact_inputs(tool_name: str) -> dict[str, bool]:
    """The artifact inputs a tool takes (field name → required). Each such field is named by its kind."""
    return {n: f.required for n, f in input_fields(tool_name).items() if f.artifact}


@cache
def artifact_outputs(tool_name: str) -> dict[str, Kind]:
    """The artifact outputs a tool makes: field name → kind."""
    return {n: f.kind for n, f in output_fields(tool_name).items() if f.artifact}


def output_of_kind(tool_name: str, kind: str) -> str | None:
    """The output field of a kind (the first, in the contract's order), if the tool makes one."""
    return next((n for n, f in output_fields(tool_name).items() if f.kind == kind), None)


def _tool(name: str) -> VisionTool:
    return get_tool(name)


def blocks() -> list[dict[str, Any]]:
    """Every tool as a block to compose with: `name@vN`, its input and output fields with kinds, and which of its
    outputs can feed which tools' inputs (for a UI or an LLM)."""
    tools = all_tools()
    described = []
    for tool in tools:
        outputs = output_fields(tool.name)
        feeds = {name: [f"{other.name}@v{other.version}.{field.name}" for other in tools
                        for field in input_fields(other.name).values() if field.kind == out.kind]
                 for name, out in outputs.items()}
        described.append({
            "type": f"{tool.name}@v{tool.version}", "code": tool.code, "title": tool.title,
            "description": tool.description, "heavy": tool.heavy, "backends": list(tool.backends),
            "inputs": [f.to_dict() for n, f in input_fields(tool.name).items()],
            "outputs": [f.to_dict() for f in outputs.values()],
            "feeds": feeds,
        })
    return described

