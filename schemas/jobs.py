"""Jobs: what an executor runs (a spec of refs, JSON only), what comes back, and how a job ends badly."""

from __future__ import annotations

import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from .errors import VitronError

JobQueue = Literal["gpu", "cpu"]
"""Where a job runs: `gpu` workers hold the diffusion models, `cpu` workers do the classical work."""

JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]
"""A job's life: `queued` → `running` → one of `succeeded`, `failed`, `cancelled`."""


class JobSpec(BaseModel):
    """One tool call to run somewhere. Refs only: a message stays a few KB whatever the video's size."""

    model_config = ConfigDict(extra="forbid")

    job_id: str = Field(default_factory=lambda: uuid.uuid4().hex)
    module: str = Field(description="Canonical tool name, e.g. video_editing.")
    backend: str | None = Field(default=None, description="Backend name; default the tool's first.")
    options: dict[str, Any] = Field(default_factory=dict, description="Backend options for this job only, over the "
                                    "models file's entry for the module.")
    input: dict[str, Any] = Field(description="The tool input as JSON: artifacts and tensors as refs.")
    queue: JobQueue = "cpu"
    session_id: str | None = Field(default=None, description="The session that asked for it, if any; the step "
                                   "that runs it holds its job id.")
    chunk_frames: int | None = Field(
        default=None, ge=0, description="Frames per chunk for a long video job on workers; None: VITRON_CHUNK_FRAMES, "
        "0: never split.")
    dry_run: bool = Field(
        default=False, description="Only check, where the job runs, that the input is valid, every input artifact "
        "is in the store and the backend is installed; the tool does not run and the output is empty.")


class JobResult(BaseModel):
    """A finished job: the tool's output as JSON, how long the tool ran, which backend ran it (or, for a dry
    run, would run it: the output is then empty)."""

    model_config = ConfigDict(extra="forbid")

    job_id: str
    output: dict[str, Any]
    seconds: float
    backend: str
    notes: list[str] = Field(default_factory=list, description="What the user should know of a job that "
                             "succeeded (a signal left out, and why).")


class JobFailed(VitronError):
    """A job raised an error. Problem, field and fix are the worker-side error's, so the text is the same
    whichever executor ran it; `error_type` names the original class (e.g. UnsupportedOperation)."""

    def __init__(self, problem: str, *, field: str | None = None, fix: str | None = None,
                 error_type: str = "VitronError") -> None:
        self.error_type = error_type
        super().__init__(problem, field=field, fix=fix)

    @classmethod
    def from_error(cls, exc: BaseException) -> JobFailed:
        """The `JobFailed` for any exception: a `VitronError` keeps its parts, anything else its repr-like text."""
        if isinstance(exc, JobFailed):
            return exc
        if isinstance(exc, VitronError):
            return cls(exc.problem, field=exc.field, fix=exc.fix, error_type=type(exc).__name__)
        return cls(f"{type(exc).__name__}: {exc}", error_type=type(exc).__name__)

    def to_dict(self) -> dict[str, str | None]:
        return {**super().to_dict(), "error_type": self.error_type}


class JobCancelled(VitronError):
    """The job was cancelled before it finished; its output, if any, was discarded."""

    @classmethod
    def for_job(cls, job_id: str) -> JobCancelled:
        return cls(f"job {job_id} was cancelled")
