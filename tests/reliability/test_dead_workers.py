"""Dead workers, dead brokers, lost queues and job time limits, on real worker processes.

Before: killing a whole Celery worker (main process and pool) stranded its job until the 6 h visibility timeout;
a client waited with no bound; a dead broker was found after 41 s as "Retry limit exceeded … Celery result store"."""

from __future__ import annotations

import os
import signal
import socket
import time

import pytest
import redis

from memory import ArtifactStore
from schemas import BackendUnavailable, JobFailed, VitronSettings
from tests.cli import cli_env, vitron
from tests.scenes import render_video
from tests.services import REDIS_URL, require
from tests.workers import start_worker, stop_worker
from tools.celery_app import make_celery
from tools.executors import CeleryExecutor
from tools.jobs import job_spec

RABBITMQ_URL = os.environ.get("VITRON_TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672//")
QUICK = {"VISIBILITY_TIMEOUT_S": "5"}  # a dead worker's job goes back to the queue 5 s after its last renewal


def _redis_db(number: int) -> str:
    return REDIS_URL.rsplit("/", 1)[0] + f"/{number}"


def _long_job(store: ArtifactStore, frames: int = 160):
    """A video edit that runs whole (not in chunks) for several seconds on this machine."""
    v = render_video(4, frames=frames, width=640, height=480)
    data = {"video": store.put_video(v.frames, v.fps), "masks": store.put_video(v.masks, v.fps, kind="masks"),
            "command": "make it a cartoon"}
    return job_spec("F", data, store).model_copy(update={"chunk_frames": 0})


def _running_on(app, job_id: str, *, not_on: str | None = None, timeout: float = 120) -> str:
    """The node name of the worker that runs the job (other than `not_on`), once it has started it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        meta = app.backend.get_task_meta(job_id)
        node = meta["result"].get("hostname") if isinstance(meta["result"], dict) else None
        if meta["status"] in ("STARTED", "PROGRESS") and node and node != not_on:
            return node
        assert meta["status"] != "SUCCESS", "the job ended before it was seen running"
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} was not seen running (other than on {not_on})")


def _node(proc) -> str:
    return f"vitron-{proc.pid}@{socket.gethostname()}"


@pytest.fixture
def redis_settings(tmp_path):
    url = _redis_db(12)  # a database of its own: no other test's worker takes these jobs
    require("Redis", "127.0.0.1", 6379)
    redis.Redis.from_url(url).flushdb()
    return VitronSettings(home=tmp_path / "home", broker_url=url, visibility_timeout_s=5)


def test_a_whole_killed_worker_hands_its_job_on_and_a_live_ones_long_job_is_never_taken(redis_settings, tmp_path):
    app = make_celery(redis_settings)
    store = ArtifactStore.from_settings(redis_settings)
    logs = {name: tmp_path / f"{name}.log" for name in ("a", "b")}
    workers = {name: start_worker(app, redis_settings.home, redis_settings.broker_url, settings=QUICK,
                                  log_path=log) for name, log in logs.items()}
    try:
        spec = _long_job(store, frames=400)  # 160 frames took under 7 s on an idle machine
        handle = CeleryExecutor(app).submit(spec)
        owner = _running_on(app, spec.job_id)
        victim, other = ("a", "b") if owner == _node(workers["a"]) else ("b", "a")
        # Longer than the visibility timeout on a live worker: renewed, the job is never handed to the other one.
        time.sleep(7)
        assert app.backend.get_task_meta(spec.job_id)["status"] != "SUCCESS", "make the job longer"
        assert spec.job_id not in logs[other].read_text()
        os.killpg(workers[victim].pid, signal.SIGKILL)  # the main process and its pool: no one acknowledges
        workers[victim].wait()
        assert _running_on(app, spec.job_id, not_on=owner) == _node(workers[other])
        result = handle.result(timeout=300)
        assert result.output["video"]["kind"] == "video" and handle.status() == "succeeded"
    finally:
        for proc in workers.values():
            stop_worker(proc)


def test_on_rabbitmq_a_whole_killed_workers_job_goes_to_a_new_worker(tmp_path):
    require("RabbitMQ", "127.0.0.1", 5672)
    backend = _redis_db(11)
    redis.Redis.from_url(backend).flushdb()
    settings = VitronSettings(home=tmp_path / "home", broker_url=RABBITMQ_URL, result_backend=backend)
    app = make_celery(settings)
    app.control.purge()  # what an earlier run left in the queues
    store = ArtifactStore.from_settings(settings)
    both = {"RESULT_BACKEND": backend}
    first = start_worker(app, settings.home, settings.broker_url, settings=both, log_path=tmp_path / "first.log")
    second = None
    try:
        spec = _long_job(store, frames=320)
        handle = CeleryExecutor(app).submit(spec)
        owner = _running_on(app, spec.job_id)
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
        assert app.backend.get_task_meta(spec.job_id)["status"] != "SUCCESS", "make the job longer"
        second = start_worker(app, settings.home, settings.broker_url, settings=both, log_path=tmp_path / "2.log")
        assert _running_on(app, spec.job_id, not_on=owner) == _node(second)
        assert handle.result(timeout=300).output["video"]["kind"] == "video"
    finally:
        stop_worker(first)
        if second is not None:
            stop_worker(second)


def test_a_job_no_live_worker_serves_fails_after_the_wait_and_never_runs(tmp_path):
    url = _redis_db(10)
    require("Redis", "127.0.0.1", 6379)
    redis.Redis.from_url(url).flushdb()
    settings = VitronSettings(home=tmp_path / "home", broker_url=url, worker_wait_s=1)
    store = ArtifactStore.from_settings(settings)
    executor = CeleryExecutor(make_celery(settings))
    spec = job_spec("C", {"image": store.put_image(render_video(1, frames=1).frames[0]), "command": "blur it"}, store)
    handle = executor.submit(spec)
    with pytest.raises(BackendUnavailable, match="no live worker served the cpu queue") as failed:
        handle.result(timeout=60)
    assert failed.value.field == "VITRON_BROKER_URL" and "vitron worker --queues cpu" in failed.value.fix
    assert handle.status() == "cancelled"


def test_a_job_past_its_time_limit_is_stopped_and_says_which_setting(redis_settings, tmp_path):
    settings = redis_settings.model_copy(update={"job_time_limits": {"video_editing": 1}})
    app = make_celery(settings)
    worker = start_worker(app, settings.home, settings.broker_url, settings=QUICK, log_path=tmp_path / "w.log")
    try:
        handle = CeleryExecutor(app).submit(_long_job(ArtifactStore.from_settings(settings)))
        with pytest.raises(JobFailed, match="ran past its time limit") as failed:
            handle.result(timeout=120)
        assert failed.value.field == "VITRON_JOB_TIME_LIMIT_S" and "VITRON_JOB_TIME_LIMITS" in failed.value.fix
    finally:
        stop_worker(worker)


def test_a_dead_broker_is_one_clear_line_from_run_and_worker(home):
    env = {**cli_env(home), "VITRON_BROKER_URL": "redis://127.0.0.1:1/0"}
    for args in (("run", "--planner", "explicit", "<module>C</module><instruction>blur it</instruction>"),
                 ("worker", "--queues", "cpu")):
        proc = vitron(env, *args, timeout=60)
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        assert "VITRON_BROKER_URL" in proc.stderr and "did not answer" in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr
