"""A planner's answer: the reply it shows the user and the invocations it wants run, in order."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from .invocations import Invocation


class PlanStep(BaseModel):
    """One invocation, and how many signal tokens its block held (the planner reads hidden states there, in order)."""

    model_config = ConfigDict(extra="forbid")

    invocation: Invocation
    signal_tokens: int = Field(default=0, ge=0)


class Plan(BaseModel):
    """The text outside the invocation blocks, whitespace-normalised, and the steps the blocks describe."""

    model_config = ConfigDict(extra="forbid")

    reply: str = ""
    steps: list[PlanStep] = Field(default_factory=list)
