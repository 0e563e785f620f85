"""Jobs on a real Celery worker over the real Redis: the same results and error text as in-process,
progress, cancellation, and job messages that stay small whatever the video's size."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import time
from functools import cache

import numpy as np
import pytest
import redis

from memory import ArtifactStore
from schemas import ArtifactRef, BoxRegion, JobCancelled, JobFailed, SignalEmbedding, VitronSettings
from tests.scenes import Scene, VideoScene, render_scene, render_video
from tests.services import REDIS_URL
from tests.workers import VITRON, celery_worker
from tools.celery_app import RUN_JOB
from tools.executors import CeleryExecutor, LocalExecutor, make_executor
from tools.jobs import job_spec


@cache
def scene() -> Scene:
    return render_scene(5)


@cache
def long_video() -> VideoScene:
    return render_video(4, frames=300)


@pytest.fixture(scope="module")
def celery_settings(tmp_path_factory) -> VitronSettings:
    return VitronSettings(home=tmp_path_factory.mktemp("celery") / "home", broker_url=REDIS_URL, result_backend=None,
                          artifacts_dir=None)


@pytest.fixture(scope="module")
def worker(celery_settings):
    """One worker process for the module, sharing the test's artifact store folder (VITRON_HOME)."""
    with celery_worker(celery_settings, concurrency=1) as (app, _):
        yield app


@pytest.fixture(scope="module")
def store(celery_settings) -> ArtifactStore:
    return ArtifactStore.from_settings(celery_settings)


@pytest.fixture(scope="module")
def celery(worker) -> CeleryExecutor:
    return CeleryExecutor(worker)


@pytest.fixture(scope="module")
def local(store, celery_settings):
    executor = LocalExecutor(store, celery_settings)
    yield executor
    executor.close()


def test_a_broker_setting_selects_celery(celery_settings, store):
    assert isinstance(make_executor(celery_settings, store), CeleryExecutor)


def test_a_worker_gives_the_in_process_result(store, celery, local):
    s = scene()
    data = {"image": store.put_image(s.image), "mask": store.put_mask(s.mask), "command": "make it green"}
    spec = job_spec("C", data, store)
    handle = celery.submit(spec)
    result = handle.result(timeout=30)
    assert handle.status() == "succeeded" and result.job_id == spec.job_id
    expected = local.submit(job_spec("C", data, store)).result(timeout=30)
    assert result.output == expected.output and result.backend == expected.backend == "opencv"
    assert store.exists(ArtifactRef.model_validate(result.output["image"]))  # written where the client reads


def test_progress_events_arrive_while_a_video_job_runs(store, celery):
    v = long_video()
    video = store.put_video(v.frames, v.fps)
    events: list[tuple[float, str]] = []
    handle = celery.submit(job_spec("F", {"video": video, "command": "make it black and white"}, store),
                           lambda fraction, message: events.append((fraction, message)))
    result = handle.result(timeout=60)
    assert store.video_info(ArtifactRef.model_validate(result.output["video"])).frames == len(v.frames)
    fractions = [f for f, _ in events]
    # Sent at most every 0.25 s: a job that takes under a second on a fast day reports twice, still mid-way.
    assert len(fractions) >= 2 and fractions == sorted(fractions) and fractions[0] < 1
    assert any("video_editing: grayscale, frame" in m for _, m in events)


def test_a_job_is_marked_started_before_its_first_progress(store, worker, celery):
    """The job writes STARTED itself, in the script that checks for a cancel (the task does not track it)."""
    v = long_video()
    handle = celery.submit(job_spec("F", {"video": store.put_video(v.frames, v.fps), "command": "blur it"}, store))
    seen: list[str] = []
    deadline = time.monotonic() + 60
    while not seen or seen[-1] not in ("SUCCESS", "FAILURE"):
        assert time.monotonic() < deadline, f"the job never ended: {seen}"
        state = worker.backend.get_task_meta(handle.job_id)["status"]
        if not seen or seen[-1] != state:
            seen.append(state)
        time.sleep(0.005)
    assert seen[-1] == "SUCCESS" and "STARTED" in seen
    assert seen.index("STARTED") < (seen.index("PROGRESS") if "PROGRESS" in seen else len(seen))
    assert handle.result(timeout=30).job_id == handle.job_id


@pytest.mark.parametrize("case", ["unknown edit", "missing artifact"])
def test_an_error_comes_back_with_the_in_process_text(store, celery, local, case):
    image = store.put_image(scene().image)
    if case == "unknown edit":
        data, error_type = {"image": image, "command": "make it sparkle"}, "UnsupportedOperation"
    else:
        absent = ArtifactRef(sha256="e" * 64, kind="image", media_type="image/png", shape=(360, 480, 3))
        data, error_type = {"image": absent, "command": "make it blue"}, "ArtifactNotFound"
    with pytest.raises(JobFailed) as in_process:
        local.submit(job_spec("C", data, store)).result(timeout=30)
    handle = celery.submit(job_spec("C", data, store))
    with pytest.raises(JobFailed) as remote:
        handle.result(timeout=30)
    assert str(remote.value) == str(in_process.value)
    assert remote.value.to_dict() == in_process.value.to_dict()
    assert remote.value.error_type == error_type
    assert handle.status() == "failed"


def test_cancelling_stops_a_running_video_job_and_a_queued_one(store, celery):
    v = long_video()
    video = store.put_video(v.frames, v.fps)
    fractions: list[float] = []

    def on_progress(fraction: float, message: str) -> None:
        fractions.append(fraction)
        if fraction > 0:
            running.cancel()  # called on this thread, from result()'s polling

    running = celery.submit(job_spec("F", {"video": video, "command": "make it a pencil sketch"}, store), on_progress)
    queued = celery.submit(job_spec("C", {"image": store.put_image(scene().image), "command": "blur it"}, store))
    queued.cancel()  # the worker (one process) is busy with the video job, so this one waits in the queue
    started = time.monotonic()
    with pytest.raises(JobCancelled, match="was cancelled"):
        running.result(timeout=60)
    with pytest.raises(JobCancelled):
        queued.result(timeout=30)
    assert running.status() == queued.status() == "cancelled"
    assert max(fractions) < 0.5  # stopped within a progress report of the cancel, not at the end
    assert time.monotonic() - started < 30


def test_a_job_message_for_a_minute_of_1080p_video_stays_small(store, worker):
    video = ArtifactRef(sha256="a" * 64, kind="video", media_type="video/mp4", shape=(1800, 1080, 1920, 3))
    masks = ArtifactRef(sha256="b" * 64, kind="masks", media_type="video/x-matroska", shape=(1800, 1080, 1920))
    embedding = SignalEmbedding(task_specific=np.ones((8, 256), np.float32),
                                task_invariant=np.ones((1, 4096), np.float32))  # stored; the spec holds refs
    spec = job_spec("F", {"video": video, "masks": masks, "command": "make the car red",
                          "region": BoxRegion(box=(100, 200, 900, 1000)), "signal": embedding}, store)
    body = json.dumps(spec.model_dump(mode="json"))
    assert len(body) < 4096

    # The message as the broker holds it (envelope, headers, base64 body), on a queue no worker reads.
    queue = "vitron-size-check"
    worker.tasks[RUN_JOB].apply_async(args=[spec.model_dump(mode="json")], queue=queue, task_id=spec.job_id)
    client = redis.Redis.from_url(REDIS_URL)
    try:
        messages = client.lrange(queue, 0, -1)
        assert len(messages) == 1
        assert len(messages[0]) < 4096
        envelope = json.loads(messages[0])
        assert json.loads(base64.b64decode(envelope["body"]))[0][0] == spec.model_dump(mode="json")
    finally:
        client.delete(queue)


def test_the_agent_runs_its_steps_on_the_worker(worker, celery_settings, tmp_path):
    """A whole turn with VITRON_BROKER_URL set: the steps run on the worker, and the result is the same
    as in-process (same content hashes)."""
    from agent.api import VitronAgent

    s = scene()
    box = ", ".join(map(str, s.box))
    text = (f"<module>B</module><instruction>segment it</instruction><region>({box})</region>"
            "<module>C</module><instruction>make it blue</instruction><input>@1</input>")
    with VitronAgent.from_settings(celery_settings) as agent:
        assert type(agent.executor).__name__ == "CeleryExecutor"
        session = agent.session()
        remote = session.send(text, image=s.image)
        jobs = [st.job_id for st in remote.steps]
    local_settings = VitronSettings(home=tmp_path / "local")
    with VitronAgent.from_settings(local_settings) as agent:
        here = agent.session().send(text, image=s.image)
    assert [st.status for st in remote.steps] == ["succeeded", "succeeded"] and all(jobs)
    assert [a.ref.sha256 for a in remote.artifacts] == [a.ref.sha256 for a in here.artifacts]


def test_a_session_cancels_its_step_on_the_worker(worker, celery_settings):
    """`session.cancel(job_id)` from a `step_started` event reaches the worker running the job."""
    from agent.api import VitronAgent

    v = long_video()
    text = "<module>F</module><instruction>make it a cartoon</instruction>"
    with VitronAgent.from_settings(celery_settings) as agent:
        session = agent.session()
        video = agent.memory.store.put_video(v.frames, v.fps)
        for event in session.stream(text, video=video):
            if event["event"] == "step_started":
                session.cancel(event["job_id"])
        (step,) = session.reply().steps
        assert step.status == "cancelled" and session.reply().artifacts == ()
        assert CeleryExecutor(worker).handle(step.job_id).status() == "cancelled"


def _check(home, broker_url: str = REDIS_URL, *args: str) -> tuple[int, list[dict]]:
    """`vitron jobs check --json` as a user on a machine with this VITRON_HOME runs it: (exit code, checks)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VITRON_")}
    env.update(VITRON_BROKER_URL=broker_url, VITRON_HOME=str(home))
    cli = subprocess.run([VITRON, "jobs", "check", "--json", *args], env=env, capture_output=True, text=True,
                         timeout=120)
    return cli.returncode, json.loads(cli.stdout)["checks"]


def test_jobs_check_finds_what_a_worker_can_and_cannot_do(worker, celery_settings, tmp_path):
    code, checks = _check(celery_settings.home)  # the worker's own store
    cpu, gpu = checks
    assert code == 1 and (cpu["queue"], cpu["ok"], cpu["backend"]) == ("cpu", True, "opencv")
    assert gpu["queue"] == "gpu" and not gpu["ok"] and "image_generation has no backend" in gpu["problem"]

    _, (cpu, _) = _check(tmp_path / "another-machine")  # a client whose artifacts the worker cannot see
    assert not cpu["ok"] and "no image artifact" in cpu["problem"] and str(celery_settings.home) in cpu["problem"]


def test_jobs_check_says_when_no_worker_takes_a_queue(tmp_path):
    from tests.services import require

    require("Redis", "127.0.0.1", 6379)
    idle = REDIS_URL.rsplit("/", 1)[0] + "/10"  # a database no worker listens on
    redis.Redis.from_url(idle).flushdb()
    code, checks = _check(tmp_path / "home", idle, "--timeout", "0.5")
    assert code == 1 and [c["problem"] for c in checks] == [
        "no worker took the job within 0.5 s (start one with `vitron worker --queues cpu`)",
        "no worker took the job within 0.5 s (start one with `vitron worker --queues gpu`)",
    ]
    redis.Redis.from_url(idle).flushdb()


def test_a_database_result_backend_works_too(tmp_path):
    """VITRON_RESULT_BACKEND=db+…: results, progress and the running mark go through SQLAlchemy, read by polling."""
    url = f"db+sqlite:///{tmp_path / 'results.db'}"
    # A Redis database of its own, so that the module's worker takes none of these jobs (nor this worker its jobs).
    settings = VitronSettings(home=tmp_path / "home", broker_url=REDIS_URL.rsplit("/", 1)[0] + "/12",
                              result_backend=url, artifacts_dir=None)
    with celery_worker(settings, env={"RESULT_BACKEND": url}) as (app, _):
        store = ArtifactStore.from_settings(settings)
        v = long_video()
        video = store.put_video(v.frames, v.fps)
        celery = CeleryExecutor(app)
        watched = celery.submit(job_spec("F", {"video": video, "command": "make it a pencil sketch"}, store))
        seen = [watched.status()]
        deadline = time.monotonic() + 60
        while seen[-1] in ("queued", "running"):
            assert time.monotonic() < deadline, f"the job never ended: {seen}"
            time.sleep(0.02)
            seen.append(watched.status())
        events: list[float] = []
        waited = celery.submit(job_spec("F", {"video": video, "command": "make it sepia"}, store),
                               lambda fraction, message: events.append(fraction))
        result = waited.result(timeout=60)
    assert seen[-1] == "succeeded" and "running" in seen
    assert store.video_info(ArtifactRef.model_validate(result.output["video"])).frames == len(v.frames)
    assert events and events == sorted(events)  # progress came by polling the database


def test_each_pool_process_gets_its_share_of_the_cores(monkeypatch):
    """Two pool processes on two cores run OpenCV on one thread each, not two apiece spinning against the other."""
    import cv2
    from celery.signals import worker_process_init

    import tools.worker

    before = cv2.getNumThreads()
    monkeypatch.setattr(tools.worker, "_threads", 1)  # run_worker sets cores // concurrency before the fork
    try:
        worker_process_init.send(sender=None)  # what Celery sends in each new pool process
        assert cv2.getNumThreads() == 1
    finally:
        cv2.setNumThreads(before)
