"""Planners turn a user's request into a Plan; the grammar reads and writes the plans they emit.

`ChatModelPlanner` (agent.planners.chat) and `VitronPlanner` (agent.planners.vitron) load their heavy
dependencies on first use, so they are imported lazily from here.
"""

from typing import Any

from .base import Planner, PlanRequest, StepOutcome
from .explicit import ExplicitPlanner
from .grammar import SIGNAL_TOKENS, format_plan, parse_plan

__all__ = [
    "SIGNAL_TOKENS",
    "ChatModelPlanner",
    "ExplicitPlanner",
    "MiniPlanner",
    "PlanRequest",
    "Planner",
    "StepOutcome",
    "VitronPlanner",
    "format_plan",
    "parse_plan",
]


def __getattr__(name: str) -> Any:
    if name == "ChatModelPlanner":
        from .chat import ChatModelPlanner

        return ChatModelPlanner
    if name == "MiniPlanner":
        from .mini import MiniPlanner

        return MiniPlanner
    if name == "VitronPlanner":
        from .vitron import VitronPlanner

        return VitronPlanner
    raise AttributeError(name)
