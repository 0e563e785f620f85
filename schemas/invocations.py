"""What a planner asks of a specialist: module, command text, region, inputs and signal embedding."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from .artifacts import ArtifactRef
from .modules import ModuleName, resolve_module
from .references import NAME
from .regions import Region
from .tensors import TensorSpec

INPUT_REF_PATTERN = rf"^@([0-9]+|{NAME})$"
"""`@1` names step 1's output; `@mask2` a remembered artifact's alias (`schemas.references` parses both)."""
SIGNAL_SOURCE_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,63}$"
"""A signal's source names a folder of adapters: lowercase letters, digits, `_`, `.` and `-`, never a path."""


class SignalEmbedding(BaseModel):
    """Hidden states read at the planner's signal tokens, projected for the specialist.

    `task_specific` is meant for the backend's conditioning space (e.g. SAM's 256-d prompt space); a planner
    whose heads have another width is mapped there by an adapter fitted for its `source` (`vitron planner align`).
    `task_invariant` lives in the space shared by all tasks.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    task_specific: Annotated[Any, TensorSpec(("k", "d"))]
    task_invariant: Annotated[Any, TensorSpec(("m", "e"))]
    source: str | None = Field(default=None, pattern=SIGNAL_SOURCE_PATTERN,
                               description="The planner that made it: its name and a fingerprint of its weights "
                               "(`mini-3f2a9c1b7d4e`). Says which adapter maps it into a backend's space.")


InputRef = Annotated[str, Field(pattern=INPUT_REF_PATTERN)] | ArtifactRef
"""An input: a reference by name (`@1`, `@img1`) or a resolved artifact ref."""

WORKFLOW_NAME_PATTERN = r"^[a-z][a-z0-9_]{0,63}$"
WorkflowName = Annotated[str, Field(pattern=WORKFLOW_NAME_PATTERN)]
"""A saved workflow called like a module (`product_cutout`): lowercase letters, digits and `_`."""


class Invocation(BaseModel):
    """One step of a plan."""

    model_config = ConfigDict(extra="forbid")

    module: ModuleName | WorkflowName = Field(description="A module (letter, name or title, stored by name) or "
                                              "a saved workflow's name.")
    command: str = Field(description="The instruction for the specialist, e.g. 'segmentation: the red car'.")
    region: Region | None = None
    inputs: dict[str, InputRef] = Field(default_factory=dict)
    signal: SignalEmbedding | None = None
    params: dict[str, Any] = Field(default_factory=dict, description="The tool's other fields (frames, fps, sizes, "
                                   "seed, phrase boxes), as JSON: set by workflows; the grammar has no place for them.")

    @field_validator("module", mode="before")
    @classmethod
    def _canonical(cls, value: Any) -> Any:
        if isinstance(value, str):
            try:
                return resolve_module(value).name
            except Exception:
                return value  # a workflow's name, or the checks then report the known names
        return value
