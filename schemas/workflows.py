"""A declarative workflow, as written in YAML or JSON (version 1):

    version: 1
    inputs: {photo: image, colour: {type: text, default: blue}}
    steps:
      - {name: seg, type: image_segmentation@v1, image: $inputs.photo, region: {kind: box, box: [72, 14, 484, 396]}}
      - {name: paint, type: C@v1, image: $inputs.photo, mask: $steps.seg.mask, command: "make it {colour}"}
    outputs: {result: $steps.paint.image, mask: $steps.seg.mask}

This is the document's shape only; `workflows.compile_workflow` checks its meaning (modules, selectors, kinds).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from .references import NAME
from .steps import Kind

WORKFLOW_VERSION = 1


class InputSpec(BaseModel):
    """A workflow input: its kind, and a default when it may be left out."""

    model_config = ConfigDict(extra="forbid")

    type: Kind
    default: Any = None
    description: str = ""

    @property
    def required(self) -> bool:
        return self.default is None


class StepSpec(BaseModel):
    """One step: `type` names the tool (letter, name or title, optionally `@vN`); every other key but `name`,
    `backend` and `options` is a field of that tool's input, given literally or as a reference."""

    model_config = ConfigDict(extra="allow")

    name: str = Field(pattern=rf"^{NAME}$", max_length=64)
    type: str = Field(min_length=1, max_length=100)
    backend: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)

    @property
    def fields(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class WorkflowDefinition(BaseModel):
    """A whole workflow document."""

    model_config = ConfigDict(extra="forbid")

    version: Literal[1] = Field(description="The format's version; 1 is the only one.")
    name: str = Field(default="", max_length=200)
    description: str = Field(default="", max_length=2000)
    inputs: dict[str, InputSpec] = Field(default_factory=dict)
    steps: list[StepSpec] = Field(min_length=1)
    outputs: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _short_inputs(cls, data: Any) -> Any:
        """`photo: image` is short for `photo: {type: image}`."""
        if isinstance(data, dict) and isinstance(data.get("inputs"), dict):
            data = {**data, "inputs": {k: {"type": v} if isinstance(v, str) else v for k, v in data["inputs"].items()}}
        return data
