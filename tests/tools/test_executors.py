"""The in-process executor: a job gives the tool's own result, the tool's own error text, and stops when cancelled."""

from __future__ import annotations

from functools import cache
from threading import Event

import cv2
import numpy as np
import pytest

from schemas import ArtifactRef, InvalidInput, JobCancelled, JobFailed, JobSpec, UnsupportedOperation, VitronSettings
from tests.measure import hue
from tests.scenes import Scene, VideoScene, render_scene, render_video
from tools import EditImageOutput, get_tool
from tools.embedded.colours import COLOURS
from tools.executors import LocalExecutor, make_executor
from tools.jobs import job_spec

LONG_VIDEO_FRAMES = 300  # about 1.5 s of editing, with a progress report every 6 frames


@cache
def scene() -> Scene:
    return render_scene(3)


@cache
def long_video() -> VideoScene:
    return render_video(4, frames=LONG_VIDEO_FRAMES)


@pytest.fixture
def executor(store, settings):
    executor = LocalExecutor(store, settings, max_workers=1)
    yield executor
    executor.close()


def test_a_job_gives_the_result_of_calling_the_tool(store, ctx, executor):
    s = scene()
    data = {"image": store.put_image(s.image), "mask": store.put_mask(s.mask), "command": "make it blue"}
    spec = job_spec("C", data, store)
    assert (spec.module, spec.queue) == ("image_editing", "cpu")
    assert JobSpec.model_validate_json(spec.model_dump_json()) == spec  # JSON only

    events: list[tuple[float, str]] = []
    handle = executor.submit(spec, lambda fraction, message: events.append((fraction, message)))
    result = handle.result(timeout=30)
    assert handle.status() == "succeeded" and result.job_id == spec.job_id and result.backend == "opencv"

    out = EditImageOutput.model_validate(result.output)
    assert out == get_tool("C").run(data, ctx)  # the same content, so the same ref
    edited = store.get_image(out.image)
    core = cv2.erode(s.mask.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    assert np.median(np.abs((hue(edited[core]) - hue(np.array(COLOURS["blue"]))[0] + 180) % 360 - 180)) < 10
    far = cv2.dilate(s.mask.astype(np.uint8), np.ones((7, 7), np.uint8)) == 0
    assert np.array_equal(edited[far], s.image[far])
    fractions = [f for f, _ in events]
    assert fractions == sorted(fractions) and fractions[0] == 0.0 and fractions[-1] == 1.0


def test_a_failed_job_carries_the_tool_error_text(store, ctx, executor):
    s = scene()
    data = {"image": store.put_image(s.image), "command": "make it sparkle"}
    with pytest.raises(UnsupportedOperation) as direct:
        get_tool("C").run(data, ctx)

    handle = executor.submit(job_spec("C", data, store))
    with pytest.raises(JobFailed) as failed:
        handle.result(timeout=30)
    assert str(failed.value) == str(direct.value) and "make it sparkle" in failed.value.message
    assert (failed.value.problem, failed.value.field, failed.value.fix) == (
        direct.value.problem, direct.value.field, direct.value.fix)
    assert failed.value.error_type == "UnsupportedOperation"
    assert handle.status() == "failed"


def test_bad_input_is_refused_before_anything_is_queued(store):
    image = store.put_image(scene().image)
    with pytest.raises(InvalidInput) as refused:
        job_spec("C", {"image": image, "command": ""}, store)
    assert refused.value.field == "command"
    mask = ArtifactRef(sha256="0" * 64, kind="mask", media_type="image/png", shape=(10, 10))
    with pytest.raises(InvalidInput, match="10x10"):
        job_spec("C", {"image": image, "mask": mask, "command": "make it blue"}, store)


def test_cancelling_stops_a_running_video_job_and_a_queued_one(store, executor):
    v = long_video()
    video = store.put_video(v.frames, v.fps)
    fractions: list[float] = []
    working = Event()

    def on_progress(fraction: float, message: str) -> None:
        fractions.append(fraction)
        if fraction > 0:
            working.set()

    running = executor.submit(job_spec("F", {"video": video, "command": "make it black and white"}, store),
                              on_progress)
    queued = executor.submit(job_spec("C", {"image": store.put_image(scene().image), "command": "blur it"}, store))
    assert working.wait(timeout=30)
    queued.cancel()
    running.cancel()
    with pytest.raises(JobCancelled, match="was cancelled"):
        running.result(timeout=30)
    with pytest.raises(JobCancelled):
        queued.result(timeout=1)
    assert running.status() == queued.status() == "cancelled"
    assert max(fractions) < 0.5  # it stopped within a report or two of the cancel, not at the end
    assert list((store.root / "tmp").iterdir()) == []  # the half-written video was thrown away


def test_without_a_broker_jobs_run_in_process(store, tmp_path):
    executor = make_executor(VitronSettings(home=tmp_path, broker_url=None), store)
    assert isinstance(executor, LocalExecutor)
    executor.close()


def test_a_dry_run_checks_the_job_without_running_its_tool(store, executor):
    s = scene()
    data = {"image": store.put_image(s.image), "mask": store.put_mask(s.mask), "command": "make it blue"}
    objects = sorted(store.root.rglob("objects/*/*"))
    result = executor.submit(job_spec("C", data, store, dry_run=True)).result(timeout=30)
    assert (result.output, result.backend) == ({}, "opencv")
    assert sorted(store.root.rglob("objects/*/*")) == objects  # no edit was made or stored

    v = long_video()  # a long video is not split into chunks either: nothing is decoded
    video = store.put_video(v.frames, v.fps)
    assert executor.submit(job_spec("F", {"video": video, "command": "blur it"}, store, dry_run=True)).result(
        timeout=30).output == {}


def test_a_dry_run_fails_as_the_job_would(store, executor, tmp_path):
    from memory import ArtifactStore

    elsewhere = ArtifactStore(tmp_path / "elsewhere")  # an artifact the executor's store does not hold
    spec = job_spec("C", {"image": elsewhere.put_image(scene().image), "command": "make it blue"}, elsewhere,
                    dry_run=True)
    with pytest.raises(JobFailed, match="no image artifact") as err:
        executor.submit(spec).result(timeout=30)
    assert err.value.error_type == "ArtifactNotFound"

    with pytest.raises(JobFailed, match="image_generation has no backend") as err:  # no weights configured
        executor.submit(job_spec("A", {"command": "a red kite"}, store, dry_run=True)).result(timeout=30)
    assert err.value.error_type == "BackendUnavailable" and "VITRON_MODELS_FILE" in err.value.fix
