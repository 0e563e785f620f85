"""Compiled plans: the typed steps between a plan's source (a planner's invocations, a workflow file) and the
runner. Everything is JSON-safe (refs and small values), so a compiled plan can live in a LangGraph state.

A step's tool input is split in two: `params`, the literal fields (command, region, seed, the signal as
refs…), known when the plan is compiled; and `inputs`, the fields bound to an artifact or to an earlier step's
output, filled in when the step is ready. The compiler has already checked the whole against the tool's schema.
"""

from __future__ import annotations

from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field

from .artifacts import ArtifactRef
from .errors import InvalidInput
from .modules import ModuleName
from .references import InputName, StepOutput

StepStatus = Literal["pending", "queued", "running", "succeeded", "failed", "cancelled", "skipped"]
"""A step's life: `pending` → `queued` → `running` → `succeeded`, `failed` or `cancelled`; `skipped` when a step
it reads did not succeed, or the user did not approve it."""

STEP_STATUSES: tuple[str, ...] = get_args(StepStatus)
FINISHED_STATUSES = frozenset({"succeeded", "failed", "cancelled", "skipped"})
UNSUCCESSFUL_STATUSES = frozenset({"failed", "cancelled", "skipped"})

Kind = Literal["image", "mask", "masks", "video", "embedding", "boxes", "region", "text", "number"]
"""What a value is, for wiring steps together. The first six travel as artifact refs; region, text and number as
JSON. Each tool field's kind comes from the tool's own contract (`workflows.kinds`)."""

KINDS: tuple[str, ...] = get_args(Kind)
ARTIFACT_KINDS = frozenset({"image", "mask", "masks", "video", "embedding", "boxes"})


class CompiledStep(BaseModel):
    """One validated step: which tool (and contract version), its literal fields, its bound inputs."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(description="The step's name: a workflow's own, or the position for a planner's plan.")
    position: int = Field(ge=1, description="1-based place in the plan (a turn's steps count across its rounds).")
    module: ModuleName
    version: int = Field(default=1, ge=1, description="The tool contract version the step was written for.")
    params: dict[str, Any] = Field(default_factory=dict, description="Literal tool input fields, as JSON.")
    inputs: dict[str, ArtifactRef | StepOutput | InputName] = Field(
        default_factory=dict, description="Fields bound to an artifact, to an earlier step's output field, or (in a "
        "workflow not yet bound to its inputs) to one of the workflow's inputs.")
    backend: str | None = Field(default=None, description="A backend by name; default the models file's.")
    options: dict[str, Any] = Field(default_factory=dict, description="Backend options for this step only.")
    heavy: bool = False

    @property
    def command(self) -> str:
        return str(self.params.get("command", ""))

    def depends_on(self) -> tuple[str, ...]:
        """The names of the steps whose outputs this one reads, each once, in field order."""
        return tuple(dict.fromkeys(v.step for v in self.inputs.values() if isinstance(v, StepOutput)))

    def tool_input(self, outputs: dict[str, dict[str, Any]]) -> dict[str, Any]:
        """The tool input as JSON, with every step output filled in from `outputs` (step name → output fields)."""
        data = dict(self.params)
        for field, value in self.inputs.items():
            if isinstance(value, StepOutput):
                made = outputs.get(value.step, {})
                if (value.field or field) not in made:
                    raise InvalidInput(f"step {self.name} reads {value}, which step {value.step} did not give",
                                       field=field, fix="read an output the step makes")
                data[field] = made[value.field or field]
            elif isinstance(value, InputName):
                raise InvalidInput(f"step {self.name} reads {value}, which was never bound to a value",
                                   field=field, fix="bind the workflow's inputs first (`CompiledWorkflow.bind`)")
            else:
                data[field] = value.model_dump(mode="json", exclude_none=True)
        return data


class CompiledPlan(BaseModel):
    """Steps in an order that runs each after the steps it reads, and the outputs a workflow names."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    steps: tuple[CompiledStep, ...] = ()
    outputs: dict[str, StepOutput] = Field(default_factory=dict)

