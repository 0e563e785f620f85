"""What every planner is given and what it answers: one protocol for the explicit, chat-model and VITRON planners."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from memory import ArtifactEntry, ArtifactStore, History
from schemas import ArtifactRef, Plan, Region


@dataclass(frozen=True)
class StepOutcome:
    """What a step of an earlier round did, for a planner that plans again after seeing results."""

    position: int  # 1-based, in the round's plan
    module: str
    command: str
    status: str  # succeeded | failed | skipped
    outputs: tuple[str, ...] = ()  # aliases of what it made (`mask3`)
    error: str | None = None
    answer: str | None = None  # what it said in words (visual understanding's text)
    question: str | None = None  # what it asks the user instead (which of several objects the command means)


_LAZY = frozenset({"history", "artifacts"})


@dataclass(frozen=True)
class PlanRequest:
    """One planning call. Everything is small: artifacts travel as refs and aliases, pixels stay in `store`.

    `history` and `artifacts` may be given as zero-argument functions: they are then read from session memory
    the first time a planner looks (the explicit planner never does, and saves the queries).
    """

    text: str  # the user's words this turn
    history: History  # the conversation so far: recent turns in a token budget, older ones by their artifacts
    artifacts: tuple[ArtifactEntry, ...]  # the session's artifact table: aliases, kinds, what made each
    inputs: dict[str, ArtifactRef]  # this turn's uploads, by alias (`img3`)
    region: Region | None  # the region the user drew this turn, if any
    store: ArtifactStore  # to read pixels (a vision-language planner looks at the image)
    round: int = 1  # 1 for the first plan of the turn; more when the planner plans again
    results: tuple[StepOutcome, ...] = ()  # the previous rounds' outcomes (empty on round 1)
    feedback: str | None = None  # why the previous plan of this round was refused, for the planner to fix
    attempt: int = 1  # 1, then 2, 3… while the planner corrects a refused plan
    workflows: tuple[str, ...] = ()  # saved workflows a plan may call like modules, by name
    extra: dict[str, object] = field(default_factory=dict)

    def __getattribute__(self, name: str) -> Any:
        value = object.__getattribute__(self, name)
        if name in _LAZY and callable(value):
            value = value()
            object.__setattr__(self, name, value)  # once: later reads get the loaded value
        return value


@runtime_checkable
class Planner(Protocol):
    """Turns a request into a Plan: reply text plus invocations (with signal embeddings where the planner has them).

    An empty plan (no steps) ends the turn with its reply. `replans` says whether the planner wants to see a
    round's results and plan again (a chat model does; the explicit grammar does not).
    """

    name: str
    replans: bool

    def plan(self, request: PlanRequest) -> Plan: ...
