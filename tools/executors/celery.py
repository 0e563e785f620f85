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
from ..celery_app import (
    FLAG_TTL_S,
    RUN_JOB,
    JobError,
    cancel_flags,
    cancel_key,
    check_broker,
    make_celery,
    settings_of,
    time_limit,
)
from ..worker_alive import live_workers

POLL_EVERY_S = 0.1
CHECK_EVERY_S = 10.0  # a broker that answered is not asked again sooner
WATCH_EVERY_S = 2.0  # how often a waiting client checks that a live worker serves the job's queue


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
        self.settings = settings_of(app)
        self._task = app.tasks[RUN_JOB]
        self._flags = cancel_flags(app)
        self._reached_at = -CHECK_EVERY_S

    def check(self) -> None:
        """Reach the broker within VITRON_BROKER_TIMEOUT_S, else BackendUnavailable naming VITRON_BROKER_URL. Done
        before a turn and before a job is sent, at most every CHECK_EVERY_S while the broker answers."""
        if time.monotonic() - self._reached_at < CHECK_EVERY_S:
            return
        check_broker(self.app, self.settings.broker_timeout_s)
        self._reached_at = time.monotonic()

    def submit(self, spec: JobSpec, on_progress: ProgressCallback | None = None) -> CeleryJobHandle:
        self.check()
        # argsrepr: what monitors show for the task; Celery would otherwise render the whole spec each time.
        self._task.apply_async(args=[spec.model_dump(mode="json")], queue=spec.queue, task_id=spec.job_id,
                               argsrepr=f"({spec.module} job)", kwargsrepr="{}",
                               time_limit=time_limit(self.settings, spec.module))
        return CeleryJobHandle(self, spec.job_id, on_progress, queue=spec.queue)

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
    def __init__(self, executor: CeleryExecutor, job_id: str, on_progress: ProgressCallback | None,
                 queue: str | None = None) -> None:
        self.job_id, self.queue = job_id, queue
        self._executor, self._on_progress = executor, on_progress
        self._last_progress: tuple[float, str] | None = None
        self._unserved_since: float | None = None

    def _meta(self) -> dict[str, Any]:
        return self._executor.app.backend.get_task_meta(self.job_id)

    def result(self, timeout: float | None = None) -> JobResult:
        """Wait for the job's end (at most `timeout` s). Every few seconds the wait checks that a live worker serves
        the job's queue; after VITRON_WORKER_WAIT_S with none, the job is cancelled and BackendUnavailable raised,
        so no client waits without a bound."""
        backend = self._executor.app.backend  # one per thread: Celery's result consumers are not thread-safe
        started = time.monotonic()
        while True:
            waited = time.monotonic() - started
            if timeout is not None and waited >= timeout:
                raise TimeoutError(f"job {self.job_id} did not finish within {timeout} s")
            step = WATCH_EVERY_S if timeout is None else min(WATCH_EVERY_S, timeout - waited)
            try:
                meta = self._wait_async(backend, step) if backend.is_async else self._poll(step, started)
                break
            except TimeoutError:
                self._check_served()
        state, value = meta["status"], meta["result"]
        if state == "SUCCESS":
            return JobResult.model_validate(value)
        if state == "REVOKED":
            raise JobCancelled.for_job(self.job_id)
        if isinstance(value, JobError):
            raise value.to_vitron_error()
        if type(value).__name__ == "TimeLimitExceeded":
            raise JobFailed(f"job {self.job_id} ran past its time limit ({value} s) and was stopped",
                            error_type="TimeLimitExceeded", field="VITRON_JOB_TIME_LIMIT_S",
                            fix="raise it, or the module's own in VITRON_JOB_TIME_LIMITS")
        raise JobFailed.from_error(value)  # the worker's process died: no error of ours

    def _check_served(self) -> None:
        """Raise (cancelling the job) once no live worker has served its queue for VITRON_WORKER_WAIT_S. Known only
        where workers report to Redis (the broker or the result backend); elsewhere the wait is the caller's."""
        flags = self._executor._flags
        if flags is None:
            return
        served = [name for name, queues in live_workers(flags).items() if self.queue is None or self.queue in queues]
        now, limit = time.monotonic(), self._executor.settings.worker_wait_s
        if served:
            self._unserved_since = None
            return
        if self._unserved_since is None:
            self._unserved_since = now
        elif now - self._unserved_since >= limit:
            self.cancel()  # a worker started later must not run a job no one waits for
            self._executor.app.backend.mark_as_revoked(self.job_id, "no live worker served its queue")
            queue = self.queue or "gpu or cpu"
            raise BackendUnavailable(
                f"no live worker served the {queue} queue for {limit:g} s, so job {self.job_id} was cancelled",
                field="VITRON_BROKER_URL",
                fix=f"start one on this broker: `vitron worker --queues {self.queue or 'gpu,cpu'}` (or raise "
                    "VITRON_WORKER_WAIT_S)")

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

    def _poll(self, timeout: float, started: float) -> dict[str, Any]:
        """Other backends (a database) are read until the job ends: often at first (since `started`), then less."""
        until = time.monotonic() + timeout
        while True:
            meta = self._meta()
            state, value = meta["status"], meta["result"]
            if state in states.READY_STATES:
                return meta
            if state == "PROGRESS" and isinstance(value, dict):
                self._report(float(value.get("fraction", 0.0)), str(value.get("message", "")))
            now = time.monotonic()
            if now >= until:
                raise TimeoutError(f"job {self.job_id} did not finish within {timeout} s")
            time.sleep(min(_poll_interval(now - started), until - now))

    def _report(self, fraction: float, message: str) -> None:
        if self._on_progress is not None and (fraction, message) != self._last_progress:
            self._last_progress = (fraction, message)
            self._on_progress(fraction, message)

    def cancel(self) -> None:
        flags = self._executor._flags
        if flags is not None:
            flags.set(cancel_key(self.job_id), 1, ex=FLAG_TTL_S)  # outlives any wait or redelivery of the job
        self._executor.app.control.revoke(self.job_id)

    def status(self) -> JobStatus:
        meta = self._meta()
        value = meta["result"]
        if isinstance(value, JobError) and isinstance(value.to_vitron_error(), JobCancelled):
            return "cancelled"
        return _CELERY_STATUS.get(meta["status"], "running")
