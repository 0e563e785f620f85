"""A workflow's inputs as people give them (a file path, an array, `40,30,300,260`, `48`) turned into the typed
values a run binds: artifacts imported into the store as refs, regions, numbers, text."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ValidationError

from memory import ArtifactStore
from schemas import ARTIFACT_KINDS, ArtifactRef, InputSpec, InvalidInput, VitronError, a_or_an, as_region, parse_box


def coerce_inputs(specs: Mapping[str, InputSpec], given: Mapping[str, Any], store: ArtifactStore) -> dict[str, Any]:
    """Every given input as its declared kind (files imported); inputs left out are left to their defaults."""
    unknown = sorted(set(given) - set(specs))
    if unknown:
        raise InvalidInput(f"the workflow has no input {unknown[0]!r}", field=f"inputs.{unknown[0]}",
                           fix=f"its inputs are {', '.join(specs) or 'none'}")
    return {name: coerce_input(name, specs[name], value, store) for name, value in given.items()}


def coerce_input(name: str, spec: InputSpec, value: Any, store: ArtifactStore) -> Any:
    """One input as its declared kind: a file, array or ref for an artifact (imported), `48` for a number,
    `x1,y1,x2,y2` or JSON for a region. `InvalidInput` names the input and what it should be."""
    where = f"inputs.{name}"
    kind = spec.type
    if kind in ARTIFACT_KINDS:
        value = _artifact(kind, value, store, where)
    elif kind == "number" and isinstance(value, str):
        try:
            value = int(value) if value.strip().lstrip("+-").isdigit() else float(value)
        except ValueError:
            raise InvalidInput(f"{value!r} is not a number", field=where, fix="give a number, e.g. 48") from None
    elif kind == "region" and isinstance(value, str):
        text = value.strip()
        try:
            value = json.loads(text) if text.startswith("{") else parse_box(text)
        except json.JSONDecodeError as exc:
            raise InvalidInput(f"the region is not valid JSON: {exc}", field=where,
                               fix="give a box x1,y1,x2,y2 or a region as JSON") from None
        except InvalidInput as exc:
            raise InvalidInput(exc.problem, field=where, fix=exc.fix) from None
    return typed_value(kind, value, where)


def typed_value(kind: str, value: Any, where: str) -> Any:
    """A value that must already be of its kind (a ref for an artifact, given as JSON or as an `ArtifactRef`); a
    region comes back as JSON."""
    if kind in ARTIFACT_KINDS:
        if isinstance(value, Mapping):
            try:
                value = ArtifactRef.model_validate(dict(value))
            except ValidationError as exc:
                err = exc.errors(include_url=False)[0]
                raise InvalidInput(f"not an artifact ref: {'.'.join(map(str, err['loc']))}: {err['msg']}",
                                   field=where, fix=f"give {a_or_an(kind)} file, or a ref {{sha256, kind, "
                                                    "media_type}") from None
        if not isinstance(value, ArtifactRef) or value.kind != kind:
            got = value.kind if isinstance(value, ArtifactRef) else type(value).__name__
            raise InvalidInput(f"expected {kind}, got {got}", field=where, fix=f"give {a_or_an(kind)}")
        return value
    if kind == "number" and (isinstance(value, bool) or not isinstance(value, int | float)):
        raise InvalidInput(f"expected a number, got {value!r}", field=where, fix="give a number, e.g. 48")
    if kind == "text" and not isinstance(value, str):
        raise InvalidInput(f"expected text, got {value!r}", field=where, fix="give text")
    if kind == "region":
        return as_region(value, field=where).model_dump(mode="json")
    if kind not in ("number", "text"):
        raise InvalidInput(f"inputs of kind {kind} cannot be given", field=where)
    return value


def _artifact(kind: str, value: Any, store: ArtifactStore, where: str) -> Any:
    if isinstance(value, ArtifactRef | Mapping):
        return value  # a ref: checked as every value is
    if isinstance(value, np.ndarray):
        if kind == "image":
            return store.put_image(value)
        if kind == "mask":
            return store.put_mask(value)
        if kind in ("video", "masks"):
            return store.put_video(value, fps=8.0, kind=kind)  # type: ignore[arg-type]
        if kind == "embedding":
            return store.put_tensor(value)
    if isinstance(value, str | Path):
        path = Path(value).expanduser()
        if not is_file(path):
            raise InvalidInput(f"no file {str(path)!r}", field=where, fix=f"give the path of {a_or_an(kind)} file")
        try:
            return _import(kind, path, store, where)
        except VitronError as exc:  # the store names its own field; the user gave this input
            raise InvalidInput(exc.problem, field=where, fix=exc.fix) from None
    raise InvalidInput(f"cannot take a {kind} from {type(value).__name__}", field=where,
                       fix=f"give a file path or an artifact ref of kind {kind}")


def _import(kind: str, path: Path, store: ArtifactStore, where: str) -> ArtifactRef:
    if kind == "image":
        return store.import_image(path)
    if kind == "mask":
        return store.import_mask(path)
    if kind == "video":
        return store.import_video(path)
    if kind == "boxes":
        try:
            return store.put_json(json.loads(path.read_text()), kind="boxes")
        except (OSError, ValueError) as exc:
            raise InvalidInput(f"cannot read boxes from {path}: {exc}", field=where, fix="give a JSON file") from None
    raise InvalidInput(f"a {kind} cannot be read from a file", field=where, fix=f"give an artifact ref of kind {kind}")


def is_file(path: Path) -> bool:
    """Whether a path names a file; a name the system cannot even look up (too long, a NUL) does not."""
    try:
        return path.is_file()
    except (OSError, ValueError):
        return False


def parse_assignment(text: str, option: str = "--input") -> tuple[str, str]:
    """`name=value` as given on the command line."""
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise InvalidInput(f"{text!r} is not NAME=VALUE", field=option, fix=f"write {option} photo=cat.png")
    return name.strip(), value
