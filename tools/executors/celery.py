"""Jobs as `vitron.run_job` tasks on Celery workers; the task id is the job id."""

from __future__ import annotations

import time
from typing import Any

from celery import Celery, states
from celery.backends.base import DisabledBackend
from celery.exceptions import TimeoutError as CeleryTimeoutError
from celery.result import AsyncResult

from schemas import BackendUnavailable, JobCancelled, JobFailed, JobResult, JobSpec, JobStatus, VitronSettings

from ..base import ProgressCallback
from ..celery_app import RUN_JOB, JobError, cancel_flags, cancel_key, make_celery

POLL_EVERY_S = 0.1


def celery_executor(settings: VitronSettings) -> CeleryExecutor:
    """An executor on the workers these settings' broker reaches."""
    return CeleryExecutor(make_celery(settings))


_CELERY_STATUS: dict[str, JobStatus] = {
    "PENDING": "queued", "RECEIVED": "queued", "STARTED": "running", "PROGRESS": "running", "RETRY": "running",
    "SUCCESS": "succeeded", "FAILURE": "failed", "REVOKED": "cancelled",
}


class CeleryExecutor:
    """Jobs as `vitron.run_job` tasks on the spec's queue; the task id is the job id.

    Progress comes through the result backend: the worker writes PROGRESS states, and `result()` waits for
    them (a Redis backend publishes each state as it stores it; other backends are polled) and calls
    `on_progress` on the waiting thread. Cancelling sets a Redis flag the worker
    checks at every progress report, and revokes the task in case it is still queued.
    """

    def __init__(self, app: Celery) -> None:
        if isinstance(app.backend, DisabledBackend):
            raise BackendUnavailable("Celery has no result backend, so job results cannot come back",
                                     field="result_backend", fix="set VITRON_RESULT_BACKEND (or a redis:// broker)")
        self.app = app
        self._task = app.tasks[RUN_JOB]
        self._flags = cancel_flags(app)

    def submit(self, spec: JobSpec, on_progress: ProgressCallback | None = None) -> CeleryJobHandle:
        # argsrepr: what monitors show for the task; Celery would otherwise render the whole spec each time.
        self._task.apply_async(args=[spec.model_dump(mode="json")], queue=spec.queue, task_id=spec.job_id,
                               argsrepr=f"({spec.module} job)", kwargsrepr="{}")
        return CeleryJobHandle(self, spec.job_id, on_progress)

    def handle(self, job_id: str, on_progress: ProgressCallback | None = None) -> CeleryJobHandle:
        """A handle on a job submitted earlier (by any process), to wait for or cancel it."""
        return CeleryJobHandle(self, job_id, on_progress)

    def cancel(self, job_id: str) -> bool:
        self.handle(job_id).cancel()  # reaches any worker's job: a flag in Redis, and a revoke
        return True

    def close(self) -> None:
        return None  # the app's connections are pooled and close with the process


def _poll_interval(waited: float) -> float:
    """For backends that cannot publish: often at first (short jobs come back within a few ms of ending), then
    every POLL_EVERY_S."""
    return 0.003 if waited < 2 else 0.02 if waited < 20 else POLL_EVERY_S


class CeleryJobHandle:
    def __init__(self, executor: CeleryExecutor, job_id: str, on_progress: ProgressCallback | None) -> None:
        self.job_id = job_id
        self._executor, self._on_progress = executor, on_progress
        self._last_progress: tuple[float, str] | None = None

    def _meta(self) -> dict[str, Any]:
        return self._executor.app.backend.get_task_meta(self.job_id)

    def result(self, timeout: float | None = None) -> JobResult:
        backend = self._executor.app.backend  # one per thread: Celery's result consumers are not thread-safe
        meta = self._wait_async(backend, timeout) if backend.is_async else self._poll(timeout)
        state, value = meta["status"], meta["result"]
        if state == "SUCCESS":
            return JobResult.model_validate(value)
        if state == "REVOKED":
            raise JobCancelled.for_job(self.job_id)
        if isinstance(value, JobError):
            raise value.to_vitron_error()
        raise JobFailed.from_error(value)  # the worker died or a time limit hit: no error of ours

    def _wait_async(self, backend: Any, timeout: float | None) -> dict[str, Any]:
        """A backend that publishes each state as it stores it (Redis): Celery's result consumer waits on the
        thread's one subscription (no polling, no connection per job) and hands each PROGRESS state over."""

        def on_message(meta: dict[str, Any]) -> None:
            if meta.get("status") == "PROGRESS" and isinstance(meta.get("result"), dict):
                self._report(float(meta["result"].get("fraction", 0.0)), str(meta["result"].get("message", "")))

        result = AsyncResult(self.job_id, app=self._executor.app, backend=backend)
        try:
            result.get(timeout=timeout, propagate=False, on_message=on_message, disable_sync_subtasks=False)
        except CeleryTimeoutError:
            raise TimeoutError(f"job {self.job_id} did not finish within {timeout} s") from None
        return {"status": result.state, "result": result.result}

    def _poll(self, timeout: float | None) -> dict[str, Any]:
        """Other backends (a database) are read until the job ends: often at first, then less."""
        started = time.monotonic()
        while True:
            meta = self._meta()
            state, value = meta["status"], meta["result"]
            if state in states.READY_STATES:
                return meta
            if state == "PROGRESS" and isinstance(value, dict):
                self._report(float(value.get("fraction", 0.0)), str(value.get("message", "")))
            waited = time.monotonic() - started
            if timeout is not None and waited >= timeout:
                raise TimeoutError(f"job {self.job_id} did not finish within {timeout} s")
            time.sleep(_poll_interval(waited) if timeout is None else min(_poll_interval(waited), timeout - waited))

    def _report(self, fraction: float, message: str) -> None:
        if self._on_progress is not None and (fraction, message) != self._last_progress:
            self._last_progress = (fraction, message)
            self._on_progress(fraction, message)

    def cancel(self) -> None:
        flags = self._executor._flags
        if flags is not None:
            ttl = self._executor.app.conf.broker_transport_options.get("visibility_timeout", 21600)
            flags.set(cancel_key(self.job_id), 1, ex=ttl)  # outlives any redelivery of the job
        self._executor.app.control.revoke(self.job_id)

    def status(self) -> JobStatus:
        meta = self._meta()
        value = meta["result"]
        if isinstance(value, JobError) and isinstance(value.to_vitron_error(), JobCancelled):
            return "cancelled"
        return _CELERY_STATUS.get(meta["status"], "running")
