"""Which steps of a plan can run now: rounds of ready steps, and the steps that will never run because a step they
read did not succeed. Statuses are by step name (`schemas.StepStatus`); a step with no status has not run."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from schemas import UNSUCCESSFUL_STATUSES, CompiledStep


def pending(steps: Iterable[CompiledStep], status: Mapping[str, str]) -> list[CompiledStep]:
    """The steps that have not run (nor been skipped)."""
    return [s for s in steps if s.name not in status]


def blocked_by(step: CompiledStep, status: Mapping[str, str]) -> str | None:
    """The first step this one reads that did not succeed (failed, cancelled or skipped), if any."""
    return next((d for d in step.depends_on() if status.get(d) in UNSUCCESSFUL_STATUSES), None)


def is_ready(step: CompiledStep, status: Mapping[str, str]) -> bool:
    """Whether every step this one reads has succeeded."""
    return all(status.get(d) == "succeeded" for d in step.depends_on())


def ready(steps: Iterable[CompiledStep], status: Mapping[str, str]) -> list[CompiledStep]:
    """The steps that have not run and whose inputs are all there: the next round, which may run in parallel."""
    return [s for s in pending(steps, status) if is_ready(s, status)]
