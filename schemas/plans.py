"""A planner's answer: the reply it shows the user, the invocations it wants run, in order, and a session operation
that needs no job (undo, show)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from .invocations import Invocation


class PlanStep(BaseModel):
    """One invocation, and how many signal tokens its block held (the planner reads hidden states there, in order)."""

    model_config = ConfigDict(extra="forbid")

    invocation: Invocation
    signal_tokens: int = Field(default=0, ge=0)


class SessionOperation(BaseModel):
    """Something done to the session's artifacts without a job: `undo` makes `target` the session's current artifact
    of its kind again ("undo that", "go back to the original"); `show` answers with `target` ("show me the mask")."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["undo", "show"]
    target: str  # an alias of the session's artifact table, with "@": "@img1"


class Plan(BaseModel):
    """The text outside the invocation blocks, whitespace-normalised, and the steps the blocks describe.

    `operation` is done before the steps. `confirm`: the planner is not sure; `reply` is one short question naming
    its best guess, `steps` (and `operation`) the guess, which the agent runs only once the user says yes."""

    model_config = ConfigDict(extra="forbid")

    reply: str = ""
    steps: list[PlanStep] = Field(default_factory=list)
    operation: SessionOperation | None = None
    confirm: bool = False
