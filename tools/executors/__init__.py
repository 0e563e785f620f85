"""Executors run job specs: in this process (`LocalExecutor`, the default) or on Celery workers (`CeleryExecutor`).

Both call `tools.jobs.run_job`, so a job gives the same result and the same error text wherever it runs.
A failed job raises `JobFailed` (the worker-side error's problem, field and fix); a cancelled one
`JobCancelled`. Cancelling a running job takes effect at its next progress report (tools report often:
a video job every few frames). Celery (and Redis) are imported only when a Celery executor is made.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from memory import ArtifactStore
from schemas import JobResult, JobSpec, JobStatus, VitronSettings

from ..base import ProgressCallback
from .local import LocalExecutor, LocalJobHandle

if TYPE_CHECKING:
    from .celery import CeleryExecutor, CeleryJobHandle


class JobHandle(Protocol):
    """A submitted job."""

    job_id: str

    def result(self, timeout: float | None = None) -> JobResult:
        """Wait for the result; `JobFailed`, `JobCancelled`, or `TimeoutError` after `timeout` seconds."""
        ...

    def cancel(self) -> None:
        """Ask the job to stop: a queued job never starts, a running one stops at its next progress report."""
        ...

    def status(self) -> JobStatus: ...


class Executor(Protocol):
    """Runs job specs somewhere. `on_progress(fraction, message)` hears the job's progress."""

    def submit(self, spec: JobSpec, on_progress: ProgressCallback | None = None) -> JobHandle: ...

    def cancel(self, job_id: str) -> bool:
        """Cancel a job by id, as its handle would; False if this executor cannot reach such a job."""
        ...

    def check(self) -> None:
        """Raise a clear error (BackendUnavailable, naming the setting) if jobs cannot be sent now."""
        ...

    def close(self) -> None: ...


def make_executor(settings: VitronSettings, store: ArtifactStore) -> Executor:
    """Celery when `settings.broker_url` is set (its workers must share `store`), else in-process."""
    if settings.broker_url:
        from .celery import celery_executor

        return celery_executor(settings)
    return LocalExecutor(store, settings)


def __getattr__(name: str) -> Any:
    # The Celery side is imported on first use: a process that runs jobs in-process never loads Celery or Redis.
    if name in ("CeleryExecutor", "CeleryJobHandle"):
        from . import celery

        return getattr(celery, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["CeleryExecutor", "CeleryJobHandle", "Executor", "JobHandle", "LocalExecutor", "LocalJobHandle",
           "make_executor"]
