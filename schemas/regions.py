"""Regions a user or planner points at: a box, labelled points, or a scribbled mask."""

from __future__ import annotations

import math
import re
from functools import cache
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)

from .artifacts import ArtifactRef
from .errors import InvalidInput


def _finite(value: float) -> float:
    if not math.isfinite(value):
        raise ValueError("coordinates must be finite numbers")
    return value


class _OnFrame(BaseModel):
    """The frame a region is drawn on: 0, the first (an image's only one), unless a user drew on a later frame of a
    video. Left out of the JSON when 0, so every region drawn on a first frame reads as before."""

    frame: int = Field(default=0, ge=0, le=10**7, description="The video frame the region marks (0: the first).")

    @model_serializer(mode="wrap")
    def _without_first_frame(self, handler: Any) -> Any:
        data = handler(self)
        if isinstance(data, dict) and data.get("frame") == 0:
            del data["frame"]
        return data


class BoxRegion(_OnFrame):
    """An axis-aligned box in pixels: (x1, y1, x2, y2), top-left inclusive, bottom-right exclusive."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["box"] = "box"
    box: tuple[float, float, float, float]

    @field_validator("box")
    @classmethod
    def _ordered(cls, box: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
        x1, y1, x2, y2 = (_finite(v) for v in box)
        if x1 < 0 or y1 < 0:
            raise ValueError(f"box {box} starts at a negative coordinate")
        if not (x1 < x2 and y1 < y2):
            raise ValueError(f"box {box} must have x1 < x2 and y1 < y2")
        return box

    def check_within(self, width: int, height: int) -> None:
        _, _, x2, y2 = self.box
        if x2 > width or y2 > height:
            raise InvalidInput(
                f"box {_fmt(self.box)} leaves the {width}x{height} image",
                field="region",
                fix=f"keep x2 <= {width} and y2 <= {height}",
            )

    def as_ints(self) -> tuple[int, int, int, int]:
        x1, y1, x2, y2 = self.box
        return math.floor(x1), math.floor(y1), math.ceil(x2), math.ceil(y2)


class PointsRegion(_OnFrame):
    """Clicked points in pixels; label 1 marks the object, 0 the background."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["points"] = "points"
    points: tuple[tuple[float, float], ...] = Field(min_length=1)
    labels: tuple[Literal[0, 1], ...] = ()

    @model_validator(mode="after")
    def _consistent(self) -> PointsRegion:
        for x, y in self.points:
            _finite(x), _finite(y)
            if x < 0 or y < 0:
                raise ValueError(f"point ({x:g}, {y:g}) has a negative coordinate")
        labels = self.labels or (1,) * len(self.points)
        if len(labels) != len(self.points):
            raise ValueError(f"{len(self.points)} points but {len(labels)} labels")
        if 1 not in labels:
            raise ValueError("at least one point must be labelled 1 (on the object)")
        object.__setattr__(self, "labels", labels)
        return self

    def check_within(self, width: int, height: int) -> None:
        for x, y in self.points:
            if x >= width or y >= height:
                raise InvalidInput(
                    f"point ({x:g}, {y:g}) lies outside the {width}x{height} image",
                    field="region",
                    fix=f"keep x < {width} and y < {height}",
                )


class ScribbleRegion(_OnFrame):
    """A mask the user painted over the object."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["scribble"] = "scribble"
    mask: ArtifactRef

    @field_validator("mask")
    @classmethod
    def _is_mask(cls, ref: ArtifactRef) -> ArtifactRef:
        if ref.kind != "mask":
            raise ValueError(f"a scribble must be a mask artifact, got kind {ref.kind!r}")
        return ref

    def check_within(self, width: int, height: int) -> None:
        if self.mask.shape and tuple(self.mask.shape[:2]) != (height, width):
            raise InvalidInput(
                f"scribble mask is {self.mask.shape[1]}x{self.mask.shape[0]}, the image {width}x{height}",
                field="region",
                fix="draw the scribble on the same image",
            )


Region = Annotated[BoxRegion | PointsRegion | ScribbleRegion, Field(discriminator="kind")]
"""Any of the three region forms, told apart by `kind`."""


@cache
def _region_adapter() -> TypeAdapter[Any]:
    return TypeAdapter(Region)


def as_region(value: Any, *, field: str = "region") -> BoxRegion | PointsRegion | ScribbleRegion:
    """A region from its JSON (or a region already); `InvalidInput` naming `field` for anything else."""
    try:
        return _region_adapter().validate_python(value)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        raise InvalidInput(err["msg"].removeprefix("Value error, "), field=field,
                           fix="give a box x1,y1,x2,y2, points or a scribble mask") from None


def _fmt(values: tuple[float, ...]) -> str:
    return "(" + ", ".join(f"{v:g}" for v in values) + ")"


_NUMBER = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"


def parse_box(text: str) -> BoxRegion:
    """Parse "x1,y1,x2,y2", with or without parentheses or brackets."""
    body = text.strip().strip("()[]").strip()
    parts = [p.strip() for p in body.split(",")]
    if len(parts) != 4 or not all(re.fullmatch(_NUMBER, p) for p in parts):
        raise InvalidInput(f"cannot read a box from {text!r}", field="region", fix="write x1,y1,x2,y2 in pixels")
    try:
        return BoxRegion(box=tuple(float(p) for p in parts))
    except ValidationError as exc:
        raise InvalidInput(exc.errors()[0]["msg"], field="region", fix="write x1,y1,x2,y2 with x1<x2, y1<y2") from None


_POINT_TUPLES = re.compile(r"\s*\([^()]*\)\s*(?:,\s*\([^()]*\)\s*)*")


def parse_points(text: str) -> PointsRegion:
    """Parse "x,y,label;x,y,label" or "(x, y, label), (x, y, label)".

    Label 1 marks the object, 0 the background; omitted means 1.
    """
    if "(" in text or ")" in text:
        if not _POINT_TUPLES.fullmatch(text):
            raise InvalidInput(f"cannot read points from {text!r}", field="region",
                               fix="write points as (x, y, label), (x, y, label) with label 0 or 1")
        chunks = re.findall(r"\(([^()]*)\)", text)
    else:
        chunks = text.split(";")
    points, labels = [], []
    for chunk in (c.strip() for c in chunks):
        if not chunk:
            continue
        parts = [p.strip() for p in chunk.split(",")]
        if len(parts) not in (2, 3) or not all(re.fullmatch(_NUMBER, p) for p in parts[:2]) or (
            len(parts) == 3 and parts[2] not in ("0", "1")
        ):
            raise InvalidInput(f"cannot read a point from {chunk!r}", field="region",
                               fix="write points as x,y,label;x,y,label with label 0 or 1")
        points.append((float(parts[0]), float(parts[1])))
        labels.append(int(parts[2]) if len(parts) == 3 else 1)
    try:
        return PointsRegion(points=tuple(points), labels=tuple(labels))
    except ValidationError as exc:
        raise InvalidInput(exc.errors()[0]["msg"], field="region",
                           fix="give at least one point x,y,1 on the object") from None


class LabelledBox(BaseModel):
    """One thing a grounding found: what it is, how sure the finder is, where, and on which frame of a video.

    Module H's `boxes` artifact is a JSON list of these, best first."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    label: str = Field(min_length=1, description="What the box holds: the phrase it was found for, a colour, 'face'.")
    score: float | None = Field(default=None, ge=0, le=1, description="How sure the finder is, in [0, 1]; null "
                                "where the method gives no score.")
    box: tuple[float, float, float, float] = Field(description="x1, y1, x2, y2 in pixels, bottom-right exclusive.")
    frame: int = Field(default=0, ge=0, description="The video frame it is on (0 for an image).")
    area: int | None = Field(default=None, ge=0, description="Pixels of the found region, where they are counted.")

    def region(self) -> BoxRegion:
        """The box as a region a later step takes (on its frame)."""
        return BoxRegion(box=self.box, frame=self.frame)


def region_from_boxes(document: Any, *, field: str = "region") -> BoxRegion | None:
    """The region a boxes artifact stands for: the first of H's labelled boxes (best first), or the first box of a
    video segmentation's per-frame list (`[x1, y1, x2, y2]` or null per frame), on its frame. None when it holds no
    box; `InvalidInput` naming `field` for a document of neither form."""
    if isinstance(document, list):
        try:
            for frame, item in enumerate(document):
                if isinstance(item, dict):
                    return LabelledBox.model_validate(item).region()
                if item is not None:
                    return BoxRegion(box=tuple(item), frame=frame)
            return None
        except (ValidationError, TypeError):
            pass
    raise InvalidInput("the boxes artifact holds neither labelled boxes nor per-frame boxes", field=field,
                       fix="give a boxes artifact made by visual_understanding or video_segmentation")
