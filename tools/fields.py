"""Typed input fields shared by the tool contracts."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, Field

from schemas import ArtifactRef, InvalidInput


def _kind(*kinds: str):
    def check(ref: ArtifactRef) -> ArtifactRef:
        if ref.kind not in kinds:
            raise ValueError(f"expected an artifact of kind {' or '.join(kinds)}, got {ref.kind!r}")
        return ref

    return AfterValidator(check)


ImageRef = Annotated[ArtifactRef, _kind("image"), Field(description="An image artifact (RGB PNG).")]
MaskRef = Annotated[ArtifactRef, _kind("mask"), Field(description="A mask artifact.")]
VideoRef = Annotated[ArtifactRef, _kind("video"), Field(description="A video artifact.")]
MasksRef = Annotated[ArtifactRef, _kind("masks"), Field(description="Per-frame masks of a video.")]
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
