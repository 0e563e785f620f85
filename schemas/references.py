"""References: how a plan or a workflow names a value it does not hold. One parser for every spelling.

    @1               step 1's output (the output of the kind the reading field takes)
    @img2            the session's artifact called img2
    $inputs.photo    the workflow's input `photo`
    $steps.seg.mask  step `seg`'s output field `mask`; `$steps.seg` alone: its output of the fitting kind

The planner grammar, the resolver, session memory and the workflow compiler all read references through this
module (`parse_reference`, and `step_number` where only `@N` may stand), so the spellings cannot drift apart.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict

from .errors import InvalidInput

NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_STEP_NUMBER = re.compile(r"@([0-9]+)")
_ALIAS = re.compile(rf"@({NAME})")
_INPUT = re.compile(rf"\$inputs\.({NAME})")
_STEP = re.compile(rf"\$steps\.({NAME}|[0-9]+)(?:\.({NAME}))?")

REFERENCE_FORMS = "@N, @alias, $inputs.NAME or $steps.NAME.FIELD"


class StepOutput(BaseModel):
    """An earlier step's output: `field` names it, or None for the step's output of the kind the reader takes."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    step: str
    field: str | None = None

    def __str__(self) -> str:
        return f"$steps.{self.step}" + (f".{self.field}" if self.field else "")


class AliasName(BaseModel):
    """An artifact the session remembers, by its alias (`img2`, without the `@`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    alias: str

    def __str__(self) -> str:
        return f"@{self.alias}"


class InputName(BaseModel):
    """One of a workflow's declared inputs."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str

    def __str__(self) -> str:
        return f"$inputs.{self.name}"


Reference = StepOutput | AliasName | InputName


def is_reference(value: Any) -> bool:
    """Whether a value is spelled as a reference (starts with `@` or `$`); `parse_reference` checks the rest."""
    return isinstance(value, str) and value[:1] in ("@", "$")


def parse_reference(text: str, *, where: str | None = None) -> Reference:
    """The reference `text` spells; `InvalidInput` naming `where` (the field it was found in) for anything else."""
    if match := _STEP_NUMBER.fullmatch(text):
        return StepOutput(step=str(int(match.group(1))))
    if match := _ALIAS.fullmatch(text):
        return AliasName(alias=match.group(1))
    if match := _INPUT.fullmatch(text):
        return InputName(name=match.group(1))
    if match := _STEP.fullmatch(text):
        return StepOutput(step=match.group(1), field=match.group(2))
    raise InvalidInput(f"{text!r} is not a reference", field=where, fix=f"write {REFERENCE_FORMS}")


def step_number(text: str) -> int | None:
    """N for `@N`, else None: the one spelling session memory keeps for "step N of this turn"."""
    match = _STEP_NUMBER.fullmatch(text) if isinstance(text, str) else None
    return int(match.group(1)) if match else None
