"""The Celery app: JSON-only messages on the queues "gpu" and "cpu", and the `vitron.run_job` task.

Start a worker with `vitron worker` (see `tools.worker`) or `celery -A tools.celery_app worker`; both read
`VITRON_BROKER_URL`, `VITRON_RESULT_BACKEND` and `VITRON_HOME` (the worker and its clients must share the
artifact store).
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import redis
from celery import Celery, Task, chord, states
from celery.backends.redis import RedisBackend
from celery.exceptions import Ignore
from celery.utils.log import get_task_logger
from kombu import Connection, Exchange, Queue

from memory import ArtifactStore
from schemas import ArtifactRef, BackendUnavailable, JobCancelled, JobFailed, JobSpec, VitronError, VitronSettings

from .base import ToolContext
from .chunks import (
    VIDEO_CHUNK,
    VIDEO_MERGE,
    ChunkPlan,
    chunk_frames_for,
    finish,
    pin_backend,
    plan_chunks,
    run_chunk,
)
from .jobs import job_context, run_job
from .worker_alive import RESTORE_EVERY_S, Keepalive, redis_for
from .worker_stats import ModelStats

RUN_JOB = "vitron.run_job"
PING = "vitron.ping"
QUEUES = ("gpu", "cpu")
RESULT_REPR_CHARS = 120  # of a task's result in the worker's log line; a full repr costs more than a no-op task
PROGRESS_EVERY_S = 0.25  # a few result-backend writes a second, however often a tool reports
CANCEL_CHECK_EVERY_S = 0.05  # a Redis round trip per check: often enough to stop within a frame or two
FLAG_TTL_S = 86_400  # a cancel flag (or a split job's frame count) outlives any wait in a queue

log = get_task_logger(__name__)


class JobError(Exception):
    """How a job's error crosses Celery: one JSON string (problem, field, fix, error_type).

    Celery serialises an exception as JSON by its class name, module and `args`, and rebuilds it with
    `cls(*args)` on the client; a single string argument survives that exactly.
    """

    @classmethod
    def from_exception(cls, exc: BaseException) -> JobError:
        if isinstance(exc, JobCancelled):
            payload = {"error_type": "JobCancelled", "problem": exc.problem, "field": exc.field, "fix": exc.fix}
        else:
            payload = JobFailed.from_error(exc).to_dict()
        return cls(json.dumps(payload))

    def to_vitron_error(self) -> VitronError:
        """The `JobFailed` (or `JobCancelled`) the client raises: the same text the worker's error had."""
        payload = json.loads(self.args[0])
        parts = {"field": payload.get("field"), "fix": payload.get("fix")}
        if payload.get("error_type") == "JobCancelled":
            return JobCancelled(payload["problem"], **parts)
        return JobFailed(payload["problem"], error_type=payload.get("error_type") or "VitronError", **parts)


def cancel_key(job_id: str) -> str:
    """The Redis key whose presence asks a running job to stop at its next progress report."""
    return f"vitron:cancel:{job_id}"


def cancel_flags(app: Celery) -> redis.Redis | None:
    """A Redis connection for cancellation flags: the result backend's, else the broker's; None if neither is Redis."""
    return redis_for(app)


def settings_of(app: Celery) -> VitronSettings:
    """The settings an app was made with (defaults for an app made elsewhere)."""
    return getattr(app, "vitron_settings", None) or VitronSettings()


def time_limit(settings: VitronSettings, module: str) -> int | None:
    """Seconds a job of `module` may run on a worker (None: no limit)."""
    return settings.job_time_limits.get(module, settings.job_time_limit_s) or None


def check_broker(app: Celery, timeout: float) -> None:
    """Reach the app's broker within `timeout` seconds, else BackendUnavailable naming VITRON_BROKER_URL (Celery
    itself would retry for tens of seconds, then blame its result store)."""
    from kombu.utils.url import maybe_sanitize_url

    url = app.conf.broker_url
    try:
        with Connection(url, connect_timeout=timeout,
                        transport_options={"socket_connect_timeout": timeout, "socket_timeout": timeout}) as conn:
            conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=timeout)
    except Exception as exc:  # any transport's refusal, timeout or bad address
        raise BackendUnavailable(
            f"the job broker at {maybe_sanitize_url(url)} did not answer within {timeout:g} s ({exc})",
            field="VITRON_BROKER_URL",
            fix="start the broker, or point VITRON_BROKER_URL at a running one (unset, jobs run in this process)",
        ) from None


def make_celery(settings: VitronSettings) -> Celery:
    """A Celery app for these settings, with the `vitron.run_job` task registered on it."""
    app = Celery("vitron", broker=settings.broker_url, backend=_result_backend(settings), set_as_current=False)
    app.vitron_settings = settings  # type: ignore[attr-defined]  # read by settings_of
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_accept_content=["json"],
        # A job is acknowledged when it ends, so a worker that dies mid-job hands it to another worker.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,  # jobs are long: a busy worker should not hoard queued ones
        # Redis gives an unacknowledged job back to the queue this long after its worker last renewed it (a live
        # worker renews its jobs: tools.worker_alive); live workers sweep for such jobs every few seconds.
        broker_transport_options={"visibility_timeout": settings.visibility_timeout_s,
                                  "unacked_restore_interval": RESTORE_EVERY_S, "unacked_restore_throttle": 1},
        broker_connection_retry_on_startup=True,
        task_track_started=True,
        # Each queue its own exchange and routing key, so queue="gpu" reaches the gpu queue and no other.
        task_queues=[Queue(name, Exchange(name), routing_key=name) for name in QUEUES],
        task_default_queue="cpu",
        task_routes=(_route,),
    )
    app.steps["worker"].add(ModelStats)  # the pool processes' model-cache counters, in `celery inspect stats`
    app.steps["worker"].add(Keepalive)  # a killed worker's jobs go back to the queue within the visibility timeout
    _register_run_job(app, settings)
    _register_chunk_tasks(app, settings)
    # A bare task: a worker health check, and the baseline that bench/job_queue.py compares jobs with.
    app.task(name=PING, shared=False)(_pong)
    return app


def _pong() -> str:
    return "pong"


def _result_backend(settings: VitronSettings) -> str | None:
    if settings.result_backend:
        return settings.result_backend
    broker = settings.broker_url or ""
    return broker if broker.startswith(("redis://", "rediss://")) else None


def _route(name: str, args: Any, kwargs: Any, options: Any, task: Any = None, **kw: Any) -> dict[str, str] | None:
    """A job goes to the queue its spec names (its tool's queue)."""
    if name in (RUN_JOB, VIDEO_CHUNK, VIDEO_MERGE) and args and isinstance(args[0], dict):
        return {"queue": args[0].get("queue", "cpu")}
    return None


def _register_run_job(app: Celery, settings: VitronSettings) -> None:
    # shared=False: register on this app only (several apps may live in one process, e.g. in tests).
    # throws: an expected failure is logged without a traceback.
    # track_started=False: the job marks itself started (`_WorkerProgress.start`), in the round trip that checks
    # for a cancel anyway.
    @app.task(name=RUN_JOB, bind=True, shared=False, throws=(JobError,), resultrepr_maxsize=RESULT_REPR_CHARS,
              track_started=False)
    def run_job_task(self: Task, spec_json: dict[str, Any]) -> dict[str, Any]:
        """Run one job on this worker; the result is the `JobResult` JSON."""
        try:
            spec = JobSpec.model_validate(spec_json)
            progress = _WorkerProgress(self, spec.job_id)
            if progress.start():
                return self.backend.get_task_meta(spec.job_id)["result"]  # done before: not run again
            ctx = ToolContext(_store(settings), settings, progress)

            def split(spec: JobSpec, inp: Any, ctx: ToolContext) -> Any:
                # A long video job: this task becomes a chord of chunk tasks whose merge keeps the job's id.
                chunk = chunk_frames_for(spec, inp, ctx)
                if not chunk:
                    return None
                spec = pin_backend(spec, ctx)
                return self.replace(chunked_signature(self.app, spec, plan_chunks(spec, ctx, chunk)))

            return run_job(spec, ctx, split).model_dump(mode="json")
        except Ignore:
            raise  # replaced by the chord
        except Exception as exc:
            if not isinstance(exc, VitronError):
                log.exception("job %s failed unexpectedly", spec_json.get("job_id"))  # a bug: keep its traceback
            raise JobError.from_exception(exc) from None


def _register_chunk_tasks(app: Celery, settings: VitronSettings) -> None:
    # A chunk's own state is read by no one (its job's progress and result are the merge's): no STARTED write.
    @app.task(name=VIDEO_CHUNK, bind=True, shared=False, resultrepr_maxsize=RESULT_REPR_CHARS, track_started=False)
    def video_chunk_task(self: Task, spec_json: dict[str, Any], start: int, stop: int,
                         start_mask: dict[str, Any] | None = None, frames: int | None = None) -> dict[str, Any]:
        """One chunk of a split job: {"ref": …}, or {"error": …} so the merge fails the job with the error's text."""
        try:
            spec = JobSpec.model_validate(spec_json)
            progress = _ChunkProgress(self, spec.job_id, stop - start, frames or stop)
            progress.check_cancelled()
            ctx = job_context(spec, ToolContext(_store(settings), settings, progress))
            mask = ArtifactRef.model_validate(start_mask) if start_mask else None
            return {"ref": run_chunk(spec, start, stop, mask, ctx).model_dump(mode="json")}
        except Exception as exc:
            if not isinstance(exc, VitronError):
                log.exception("chunk %s-%s of job %s failed unexpectedly", start, stop, spec_json.get("job_id"))
            return {"error": JobError.from_exception(exc).args[0]}

    @app.task(name=VIDEO_MERGE, bind=True, shared=False, throws=(JobError,), resultrepr_maxsize=RESULT_REPR_CHARS)
    def video_merge_task(self: Task, results: list[dict[str, Any]], spec_json: dict[str, Any],
                         plan_json: dict[str, Any]) -> dict[str, Any]:
        """Merge a split job's chunks (runs under the job's id); the job's result, or its first chunk error."""
        errors = [r["error"] for r in results if "error" in r]
        if errors:  # a cancellation wins: the other chunks' errors are its consequence
            raise JobError(next((e for e in errors if '"JobCancelled"' in e), errors[0]))
        try:
            spec = JobSpec.model_validate(spec_json)
            progress = _WorkerProgress(self, spec.job_id)
            progress.check_cancelled()
            ctx = job_context(spec, ToolContext(_store(settings), settings, progress))
            refs = [ArtifactRef.model_validate(r["ref"]) for r in results]
            return finish(spec, ChunkPlan.model_validate(plan_json), refs, ctx).model_dump(mode="json")
        except Exception as exc:
            if not isinstance(exc, VitronError):
                log.exception("merging job %s failed unexpectedly", spec_json.get("job_id"))
            raise JobError.from_exception(exc) from None


def chunked_signature(app: Celery, spec: JobSpec, plan: ChunkPlan) -> Any:
    """The Celery chord for a planned job: one `vitron.video_chunk` per range, then `vitron.video_merge`.

    JSON only: the spec, the ranges and refs. The merge gets the job's id (the parent task replaces itself
    with the chord), so the job's handle sees its result."""
    spec_json = spec.model_dump(mode="json")
    limit = time_limit(settings_of(app), spec.module)
    header = [app.signature(VIDEO_CHUNK, args=[spec_json, start, stop, mask.model_dump(mode="json") if mask else None,
                                              plan.frames], queue=spec.queue, immutable=True, time_limit=limit)
              for (start, stop), mask in zip(plan.ranges, plan.start_masks, strict=True)]
    body = app.signature(VIDEO_MERGE, args=[spec_json, plan.model_dump(mode="json")], queue=spec.queue,
                         time_limit=limit)
    return chord(header, body, app=app)


_stores: dict[tuple[int, int], ArtifactStore] = {}


def _store(settings: VitronSettings) -> ArtifactStore:
    """The worker process's artifact store for its app's settings (held by the app's tasks for its lifetime), made
    once per process: a forked child makes its own, so an S3 client is never shared across a fork."""
    key = (os.getpid(), id(settings))
    store = _stores.get(key)
    if store is None:
        store = _stores[key] = ArtifactStore.from_settings(settings)
    return store


# KEYS: the job's cancel flag, its result meta. ARGV: the STARTED meta, its expiry in seconds (0: none).
# 1 when the job was cancelled; 2 when a run before this one succeeded (this is a redelivery); else 0, marked started.
_START = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 1 end
local current = redis.call('GET', KEYS[2])
if current and cjson.decode(current)['status'] == 'SUCCESS' then return 2 end
if tonumber(ARGV[2]) > 0 then redis.call('SET', KEYS[2], ARGV[1], 'EX', ARGV[2])
else redis.call('SET', KEYS[2], ARGV[1]) end
return 0
"""


class _WorkerProgress:
    """The worker's progress callback: stop if the job was cancelled, else publish the progress (throttled)."""

    def __init__(self, task: Task, job_id: str) -> None:
        self.task, self.job_id = task, job_id
        self.flags = cancel_flags(task.app)
        # The job's STARTED state already says it runs: the first PROGRESS write waits, so a short job writes none.
        self.last_sent = self.last_checked = time.monotonic()

    def start(self) -> bool:
        """Stop if the job was cancelled while it waited in the queue, else mark it started (STARTED); True when an
        earlier run of the job succeeded (a worker that died after finishing it had its job handed on).

        On a Redis result backend both are one atomic script, one round trip. Celery's own STARTED write is
        three commands (a read, a write, a publish that wakes every client waiting on the job, who only need
        the end and the progress); on a short job those cost about as much as the job itself."""
        backend = self.task.backend
        if not isinstance(backend, RedisBackend) or self.flags is not backend.client:
            self.check_cancelled()
            if backend.get_task_meta(self.job_id).get("status") == states.SUCCESS:
                return True
            self.task.update_state(state=states.STARTED, meta=self._started())
            return False
        meta = {"status": states.STARTED, "result": self._started(), "traceback": None, "children": [],
                "date_done": None, "task_id": self.job_id}
        start = self.flags.register_script(_START)  # sent as EVALSHA; the script itself only if Redis lacks it
        self.last_checked = time.monotonic()
        found = start(keys=[cancel_key(self.job_id), backend.get_key_for_task(self.job_id)],
                      args=[backend.encode(meta), int(backend.expires or 0)])
        if found == 1:
            raise JobCancelled.for_job(self.job_id)
        return found == 2

    def _started(self) -> dict[str, Any]:
        return {"pid": os.getpid(), "hostname": self.task.request.hostname}

    def check_cancelled(self) -> None:
        self.last_checked = time.monotonic()
        if self.flags is not None and self.flags.exists(cancel_key(self.job_id)):
            raise JobCancelled.for_job(self.job_id)

    def maybe_check_cancelled(self) -> None:
        if time.monotonic() - self.last_checked >= CANCEL_CHECK_EVERY_S:
            self.check_cancelled()

    def __call__(self, fraction: float, message: str) -> None:
        self.maybe_check_cancelled()
        now = time.monotonic()
        if now - self.last_sent >= PROGRESS_EVERY_S:
            self.last_sent = now
            # The worker's name too, as STARTED has it: a monitor (or a test) can tell which worker runs the job.
            self.task.update_state(state="PROGRESS", meta={"fraction": fraction, "message": message,
                                                           "hostname": self.task.request.hostname})



class _ChunkProgress(_WorkerProgress):
    """A chunk's progress, published as its job's: the frames done by all its chunks (a Redis counter) over the
    video's, so the job's fraction rises whichever chunk reports. Checks the job's cancel flag every time."""

    def __init__(self, task: Task, job_id: str, length: int, frames: int) -> None:
        super().__init__(task, job_id)
        self.length, self.frames, self.seen = length, max(1, frames), 0.0
        self.key = f"vitron:frames:{job_id}"

    def __call__(self, fraction: float, message: str) -> None:
        self.maybe_check_cancelled()
        if self.flags is None:
            return
        delta, self.seen = round((fraction - self.seen) * self.length), fraction
        if delta:
            self.flags.incrby(self.key, delta)
            self.flags.expire(self.key, FLAG_TTL_S)
        now = time.monotonic()
        if now - self.last_sent >= PROGRESS_EVERY_S:
            self.last_sent = now
            # Read and publish under a lock, so two chunks never publish their totals out of order.
            with self.flags.lock(f"{self.key}:lock", timeout=10):
                done = int(self.flags.get(self.key) or 0)
                meta = {"fraction": min(0.99, done / self.frames), "message": message,
                        "hostname": self.task.request.hostname}
                self.task.update_state(task_id=self.job_id, state="PROGRESS", meta=meta)


_app: Celery | None = None


def __getattr__(name: str) -> Any:
    """`app`: the app `celery -A tools.celery_app worker` and `vitron worker` run, configured from the `VITRON_*`
    environment; built on first use, not at import."""
    global _app
    if name == "app":
        if _app is None:
            _app = make_celery(VitronSettings())
        return _app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
