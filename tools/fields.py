"""Typed fields shared by the tool contracts, each carrying its kind (what a workflow may wire into it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from pydantic import AfterValidator, Field

from schemas import ArtifactRef, InvalidInput, Kind


@dataclass(frozen=True)
class OfKind:
    """A field's kind, read by `workflows.kinds`. Fields of plain types (text, numbers, regions, signals) need none:
    their kind follows from their type."""

    kind: Kind


def _artifact(kind: Kind, description: str) -> object:
    def check(ref: ArtifactRef) -> ArtifactRef:
        if ref.kind != kind:
            raise ValueError(f"expected an artifact of kind {kind}, got {ref.kind!r}")
        return ref

    return Annotated[ArtifactRef, OfKind(kind), AfterValidator(check), Field(description=description)]


ImageRef = _artifact("image", "An image artifact (RGB PNG).")
MaskRef = _artifact("mask", "A mask artifact.")
VideoRef = _artifact("video", "A video artifact.")
MasksRef = _artifact("masks", "Per-frame masks of a video.")
BoxesRef = _artifact("boxes", "Boxes as a JSON artifact (per frame for a video).")
Command = Annotated[str, Field(min_length=1, max_length=2000, description="What to do, in plain words.")]


def frame_size(ref: ArtifactRef) -> tuple[int, int] | None:
    """(width, height) of an image, mask, video or per-frame masks ref, if its shape says."""
    if ref.kind in ("image", "mask") and len(ref.shape) >= 2:
        return ref.shape[1], ref.shape[0]
    if ref.kind in ("video", "masks") and len(ref.shape) >= 3:
        return ref.shape[2], ref.shape[1]
    return None


def check_same_size(ref: ArtifactRef, other: ArtifactRef, field: str) -> None:
    a, b = frame_size(ref), frame_size(other)
    if a and b and a != b:
        raise InvalidInput(f"{other.kind} is {b[0]}x{b[1]} but the {ref.kind} is {a[0]}x{a[1]}", field=field,
                           fix="use a mask made from the same image or video")
