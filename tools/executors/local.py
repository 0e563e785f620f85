"""Jobs on a thread pool in this process: the default executor."""

from __future__ import annotations

import contextvars
from concurrent.futures import CancelledError, Future, ThreadPoolExecutor
from threading import Event

from memory import ArtifactStore
from schemas import JobCancelled, JobFailed, JobResult, JobSpec, JobStatus, VitronSettings

from ..base import ProgressCallback, ToolContext
from ..jobs import run_job

_HANDOVER_S = 0.002  # at most this long a submit waits for a pool thread to take its job


class LocalExecutor:
    """Jobs on a thread pool in this process. Progress callbacks run on the job's thread."""

    def __init__(self, store: ArtifactStore, settings: VitronSettings | None = None, max_workers: int = 2) -> None:
        self.store = store
        self.settings = settings or VitronSettings()
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="vitron-job")
        self._live: dict[str, LocalJobHandle] = {}  # queued and running jobs, for `cancel(job_id)`

    def submit(self, spec: JobSpec, on_progress: ProgressCallback | None = None) -> LocalJobHandle:
        cancelled = Event()
        started = Event()

        def progress(fraction: float, message: str) -> None:
            if cancelled.is_set():
                raise JobCancelled.for_job(spec.job_id)  # unwinds the tool from inside its own loop
            if on_progress is not None:
                on_progress(fraction, message)

        def work() -> JobResult:
            started.set()
            if cancelled.is_set():
                raise JobCancelled.for_job(spec.job_id)
            try:
                return run_job(spec, ToolContext(self.store, self.settings, progress))
            except JobCancelled:
                raise
            except Exception as exc:
                raise JobFailed.from_error(exc) from exc

        # The job runs in the submitter's context (contextvars), so a progress callback that relies on it
        # (LangGraph's stream writer does) works on the pool's thread as it would on the caller's.
        context = contextvars.copy_context()
        future = self._pool.submit(context.run, work)
        handle = self._live[spec.job_id] = LocalJobHandle(spec.job_id, future, cancelled, started)
        future.add_done_callback(lambda _: self._live.pop(spec.job_id, None))
        # Let an idle pool thread take the job before the caller goes on: otherwise the caller's own Python
        # work (bookkeeping) holds the GIL for up to the switch interval and the job starts that much later.
        started.wait(_HANDOVER_S)
        return handle

    def cancel(self, job_id: str) -> bool:
        handle = self._live.get(job_id)
        if handle is not None:
            handle.cancel()
        return handle is not None

    def check(self) -> None:
        return None  # jobs run in this process: nothing to reach

    def close(self) -> None:
        """Stop taking jobs, drop the queued ones, wait for the running ones."""
        self._pool.shutdown(wait=True, cancel_futures=True)


class LocalJobHandle:
    def __init__(self, job_id: str, future: Future[JobResult], cancelled: Event, started: Event) -> None:
        self.job_id = job_id
        self._future, self._cancelled, self._started = future, cancelled, started

    def result(self, timeout: float | None = None) -> JobResult:
        try:
            return self._future.result(timeout)
        except CancelledError:
            raise JobCancelled.for_job(self.job_id) from None

    def cancel(self) -> None:
        self._cancelled.set()
        self._future.cancel()  # succeeds only while the job is still queued

    def status(self) -> JobStatus:
        future = self._future
        if future.cancelled():
            return "cancelled"
        if not future.done():
            return "running" if self._started.is_set() else "queued"
        error = future.exception()
        if error is None:
            return "succeeded"
        return "cancelled" if isinstance(error, JobCancelled) else "failed"
