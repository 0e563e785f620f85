"""Long video jobs in chunks: ranges, the result index, chunked results equal to (F) or close to (E) the
whole job's, resuming computes only missing chunks, and the chord on real Celery workers (two processes),
including one killed in the middle of a chunk."""

from __future__ import annotations

import os
import signal
import socket
import time
from functools import cache

import cv2
import numpy as np
import pytest

from memory import ArtifactStore
from schemas import ArtifactRef, JobCancelled, JobResult, JobSpec, UnsafePath, VitronSettings
from tests.measure import hue, shrink
from tests.scenes import VideoScene, iou, mask_box, render_video
from tests.services import REDIS_URL
from tests.workers import celery_worker, start_worker, stop_worker
from tools import ToolContext
from tools.chunks import (
    COMPUTED,
    chunk_frames_for,
    chunk_key,
    chunk_ranges,
    keyframe_stride,
    run_chunked,
    track_keyframes,
)
from tools.embedded.colours import COLOURS
from tools.executors import CeleryExecutor
from tools.jobs import job_input, job_spec, run_job


@cache
def video(seed: int, frames: int = 120, width: int = 320, height: int = 240) -> VideoScene:
    return render_video(seed, frames=frames, width=width, height=height)


def frames_of(store: ArtifactStore, ref_json: dict) -> list[np.ndarray]:
    return list(store.iter_frames(ArtifactRef.model_validate(ref_json)))


def recoloured_in_order(frames: list[np.ndarray], v: VideoScene, colour: str) -> None:
    """Every frame is its own source frame recoloured inside its own ground-truth mask: so in order, each once."""
    want = hue(np.array(COLOURS[colour]))[0]
    assert len(frames) == len(v.frames)
    for index, (edited, source) in enumerate(zip(frames, v.frames, strict=True)):
        core = shrink(v.masks[index])
        gap = np.abs((hue(edited[core].mean(axis=0))[0] - want + 180) % 360 - 180)
        assert gap < 5, index
        outside = ~cv2.dilate(v.masks[index].astype(np.uint8), np.ones((7, 7), np.uint8)).astype(bool)
        assert np.abs(edited[outside].astype(int) - source[outside]).mean() < 4, index


def edit_spec(store: ArtifactStore, v: VideoScene, command: str = "make it orange", **extra) -> JobSpec:
    data = {"video": store.put_video(v.frames, v.fps), "masks": store.put_video(v.masks, v.fps, kind="masks"),
            "command": command}
    return job_spec("F", data, store).model_copy(update=extra)


def segment_spec(store: ArtifactStore, v: VideoScene) -> JobSpec:
    ref = store.put_video(v.frames, v.fps)
    return job_spec("E", {"video": ref, "region": {"kind": "box", "box": list(v.box(0))}}, store)


# -- ranges, keys, the index -----------------------------------------------------------------------


@pytest.mark.parametrize(("frames", "chunk", "expected"), [
    (0, 30, []),
    (1, 30, [(0, 1)]),
    (30, 30, [(0, 30)]),
    (31, 30, [(0, 30), (30, 31)]),
    (120, 30, [(0, 30), (30, 60), (60, 90), (90, 120)]),
    (5, 1, [(0, 1), (1, 2), (2, 3), (3, 4), (4, 5)]),
])
def test_chunk_ranges_cover_every_frame_once(frames, chunk, expected):
    assert chunk_ranges(frames, chunk) == expected


@pytest.mark.parametrize(("frames", "chunk"), [(10, 0), (10, -3), (-1, 5)])
def test_chunk_ranges_refuse_nonsense(frames, chunk):
    with pytest.raises(ValueError, match=r"below 1|negative"):
        chunk_ranges(frames, chunk)


def test_named_results_round_trip_and_vanish_with_their_content(store):
    ref = store.put_json({"a": 1})
    key = "ab" + "0" * 62
    assert store.get_named(key) is None
    store.put_named(key, ref)
    assert store.get_named(key) == ref
    assert (store.root / "index" / "ab" / f"{key}.json").is_file()
    other = store.put_json({"b": 2})
    store.put_named(key, other)  # replaced whole
    assert store.get_named(key) == other
    store.delete(other)
    assert store.get_named(key) is None  # the entry stays, but a result without content is no result
    assert store.delete_named(key) and not store.delete_named(key)
    assert not list((store.root / "tmp").iterdir())  # no temp files left behind


@pytest.mark.parametrize("key", ["abc", "../" + "a" * 61, "A" * 64, "g" * 64, "a" * 65, "", "a" * 63 + "/"])
def test_bad_result_keys_are_refused(store, key):
    ref = store.put_json([1])
    with pytest.raises(UnsafePath, match="not a result key"):
        store.put_named(key, ref)
    with pytest.raises(UnsafePath):
        store.get_named(key)
    assert not (store.root / "index").exists() or not any((store.root / "index").rglob("*.json"))


def test_a_chunk_key_names_the_work_not_the_job(store):
    v = video(2, frames=6)
    spec = edit_spec(store, v)
    again = spec.model_copy(update={"job_id": "other", "session_id": "s", "step_id": "1", "chunk_frames": 3})
    aliased = spec.model_copy(update={"input": {**spec.input, "video": {**spec.input["video"], "alias": "vid1"}}})
    assert chunk_key(spec, 0, 3, op="edit") == chunk_key(again, 0, 3, op="edit") == chunk_key(aliased, 0, 3, op="edit")
    red = spec.model_copy(update={"input": {**spec.input, "command": "make it red"}})
    different = {chunk_key(spec, 0, 3, op="edit"), chunk_key(spec, 3, 6, op="edit"), chunk_key(spec, 0, 3, op="track"),
                 chunk_key(red, 0, 3, op="edit")}
    assert len(different) == 4


def test_which_jobs_split(store, ctx):
    v = video(2)
    f = edit_spec(store, v, chunk_frames=30)
    assert chunk_frames_for(f, job_input(f, store), ctx) == 30
    for update in ({"chunk_frames": 0}, {"chunk_frames": 120}, {"chunk_frames": None}):  # 120 frames: one chunk
        s = f.model_copy(update=update)
        assert chunk_frames_for(s, job_input(s, store), ctx) is None
    tracked = f.model_copy(update={"input": {"video": f.input["video"], "command": "make it orange",
                                             "region": {"kind": "box", "box": list(v.box(0))}}})
    assert chunk_frames_for(tracked, job_input(tracked, store), ctx) is None  # the edit tracks: runs whole
    e = segment_spec(store, v).model_copy(update={"chunk_frames": 40})
    assert chunk_frames_for(e, job_input(e, store), ctx) == 40

    calls: list[int | None] = []

    def split(spec: JobSpec, inp, ctx) -> JobResult | None:  # as the Celery task's: split a long video, else None
        calls.append(chunk_frames_for(spec, inp, ctx))
        return JobResult(job_id=spec.job_id, output={}, seconds=0, backend="opencv") if calls[-1] else None

    assert run_job(f, ctx, split).output == {} and calls == [30]
    assert run_job(f.model_copy(update={"chunk_frames": 0}), ctx, split).output["video"] and calls == [30, None]
    assert run_job(f, ctx).output["video"]  # without a splitter, a job always runs whole


# -- chunked results -------------------------------------------------------------------------------


@pytest.mark.parametrize(("command", "masks"), [("make it orange", True), ("make it black and white", False)])
def test_chunked_editing_gives_the_whole_jobs_frames(store, ctx, progress_log, command, masks):
    v = video(2)
    spec = edit_spec(store, v, command)
    if not masks:
        spec = spec.model_copy(update={"input": {"video": spec.input["video"], "command": command}})
    whole = run_job(spec, ctx)
    progress_log.clear()
    chunked = run_chunked(spec, ctx, chunk=30)
    # Each chunk is encoded as a part of the output: the frames match the whole job's within the codec's rounding.
    a, b = frames_of(store, whole.output["video"]), frames_of(store, chunked.output["video"])
    assert len(b) == 120 and max(np.abs(x.astype(int) - y).mean() for x, y in zip(a, b, strict=True)) <= 2
    info = store.video_info(ArtifactRef.model_validate(chunked.output["video"]))
    assert (info.frames, info.width, info.height, info.fps) == (120, 320, 240, v.fps)
    fractions = [f for f, _ in progress_log]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    if masks:
        recoloured_in_order(b, v, "orange")
    assert run_chunked(spec, ctx, chunk=30).output == chunked.output  # the same chunking, the same bytes


def test_chunked_segmentation_tracks_about_as_well_as_the_whole_job(store, ctx):
    v = video(3)
    spec = segment_spec(store, v)
    whole = run_job(spec, ctx)
    chunked = run_chunked(spec, ctx, chunk=30)
    scores = {}
    for name, result in (("whole", whole), ("chunked", chunked)):
        masks = frames_of(store, result.output["masks"])
        assert len(masks) == 120
        scores[name] = np.mean([iou(m, t) for m, t in zip(masks, v.masks, strict=True)])
        boxes = store.get_json(ArtifactRef.model_validate(result.output["boxes"]))
        assert len(boxes) == 120
        assert all(box == (list(mask_box(m)) if m.any() else None) for box, m in zip(boxes, masks, strict=True))
    assert scores["chunked"] >= 0.8 and abs(scores["chunked"] - scores["whole"]) <= 0.05, scores
    assert set(chunked.output) == set(whole.output) and chunked.backend == whole.backend


def test_a_resumed_job_computes_only_the_missing_chunk(store, ctx):
    v = video(2)
    spec = edit_spec(store, v)
    first = run_chunked(spec, ctx, chunk=30)
    before = COMPUTED.copy()
    assert run_chunked(spec, ctx, chunk=30).output == first.output  # everything found
    assert before == COMPUTED
    assert store.delete_named(chunk_key(spec, 60, 90, op="edit"))
    again = run_chunked(spec.model_copy(update={"job_id": "resumed"}), ctx, chunk=30)
    assert again.output == first.output
    assert COMPUTED["edit"] - before["edit"] == 1

    e = segment_spec(store, video(3, frames=60))
    done = run_chunked(e, ctx, chunk=20)
    before = COMPUTED.copy()
    starts = [0, 20, 40]
    keyframes = store.get_json(track_keyframes(e, starts, ctx, keyframe_stride(20)))
    assert before == COMPUTED  # the keyframe pass is found too
    start_mask = ArtifactRef.model_validate(keyframes["20"])
    assert store.delete_named(chunk_key(e, 20, 40, op="track", params={"start_mask": start_mask.sha256}))
    assert run_chunked(e, ctx, chunk=20).output == done.output
    assert (COMPUTED - before) == {"track": 1}


def test_a_cancelled_chunked_job_keeps_its_finished_chunks(store, settings):
    v = video(2)
    spec = edit_spec(store, v, "make it a pencil sketch")
    stop_after = [False]

    def progress(fraction: float, message: str) -> None:
        if "frame 20/30" in message:
            stop_after[0] = True
        if stop_after[0] and "frame 25/30" in message:
            raise JobCancelled.for_job(spec.job_id)

    with pytest.raises(JobCancelled):
        run_chunked(spec, ToolContext(store, settings, progress), chunk=30)
    kept = sum(store.get_named(chunk_key(spec, a, b, op="edit")) is not None for a, b in chunk_ranges(120, 30))
    assert kept < 4
    before = COMPUTED["edit"]
    run_chunked(spec, ToolContext(store, settings), chunk=30)
    assert COMPUTED["edit"] - before == 4 - kept


# -- on real Celery workers ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def celery_settings(tmp_path_factory) -> VitronSettings:
    return VitronSettings(home=tmp_path_factory.mktemp("chunks") / "home", broker_url=REDIS_URL, result_backend=None,
                          artifacts_dir=None)


@pytest.fixture(scope="module")
def worker(celery_settings):
    """One worker with two pool processes for the module, sharing the test's artifact folder (VITRON_HOME)."""
    with celery_worker(celery_settings, concurrency=2) as (app, proc):
        yield app, proc


@pytest.fixture(scope="module")
def shared_store(celery_settings) -> ArtifactStore:
    return ArtifactStore.from_settings(celery_settings)


def test_a_long_edit_runs_as_a_chord_and_gives_the_local_frames(worker, shared_store, tmp_path):
    app, _ = worker
    v = video(2)
    spec = edit_spec(shared_store, v, chunk_frames=30)
    handle = CeleryExecutor(app).submit(spec)
    result = handle.result(timeout=60)
    assert handle.status() == "succeeded" and result.job_id == spec.job_id
    for start, stop in chunk_ranges(120, 30):  # it went through the chunks
        assert shared_store.get_named(chunk_key(spec, start, stop, op="edit")) is not None
    edited = frames_of(shared_store, result.output["video"])
    recoloured_in_order(edited, v, "orange")

    # The same chunks on threads here, in another store: the same bytes.
    local = ArtifactStore(tmp_path / "local")
    here = run_chunked(edit_spec(local, v), ToolContext(local), chunk=30)
    assert here.output == result.output


def test_a_long_segmentation_runs_as_a_chord(worker, shared_store, tmp_path):
    app, _ = worker
    v = video(3)
    spec = segment_spec(shared_store, v).model_copy(update={"chunk_frames": 30})
    result = CeleryExecutor(app).submit(spec).result(timeout=60)
    masks = frames_of(shared_store, result.output["masks"])
    assert len(masks) == 120 and np.mean([iou(m, t) for m, t in zip(masks, v.masks, strict=True)]) >= 0.8
    local = ArtifactStore(tmp_path / "local")
    here = run_chunked(segment_spec(local, v), ToolContext(local), chunk=30)
    assert here.output == result.output  # the same chunks, the same tracking, the same bytes


def test_cancelling_a_chunked_job(worker, shared_store):
    app, _ = worker
    v = video(2, width=640, height=480)
    spec = edit_spec(shared_store, v, "make it a cartoon", chunk_frames=20)
    handle = CeleryExecutor(app).submit(spec)
    time.sleep(1.0)
    handle.cancel()
    with pytest.raises(JobCancelled, match="was cancelled"):
        handle.result(timeout=60)
    assert handle.status() == "cancelled"


def test_a_chunk_lost_with_its_process_is_redone_once(worker, shared_store):
    app, proc = worker
    v = video(4, width=640, height=480)
    spec = edit_spec(shared_store, v, "make it a cartoon", chunk_frames=30)
    handle = CeleryExecutor(app).submit(spec)
    me = f"vitron-{proc.pid}@{socket.gethostname()}"
    killed = None
    deadline = time.monotonic() + 30
    while killed is None and time.monotonic() < deadline:
        active = app.control.inspect(destination=[me], timeout=0.5).active() or {}
        for task in active.get(me, []):
            if task["name"] == "vitron.video_chunk" and task.get("worker_pid"):
                killed = task["worker_pid"]
                os.kill(killed, signal.SIGKILL)  # a pool process dies mid-chunk; the worker starts another
                break
    assert killed is not None, "no chunk was seen running"
    result = handle.result(timeout=90)
    edited = frames_of(shared_store, result.output["video"])
    assert len(edited) == 120
    src = list(v.frames)
    # In order, each frame once: each output frame is closer to its own source frame than to its neighbours
    # or to the same place in any other chunk.
    for index in range(0, 120, 7):
        others = {j for j in (index - 1, index + 1, *range(index % 30, 120, 30)) if 0 <= j < 120} - {index}
        own = np.abs(edited[index].astype(int) - src[index]).mean()
        assert all(own < np.abs(edited[index].astype(int) - src[j]).mean() for j in others), index
    for start, stop in chunk_ranges(120, 30):
        assert shared_store.get_named(chunk_key(spec, start, stop, op="edit")) is not None


def test_a_job_whose_worker_is_killed_finishes_on_a_new_worker(tmp_path):
    """kill -9 of the whole worker (main process and pool) mid-job: after the visibility timeout a new worker gets
    the unacknowledged chunks again; finished chunks are not redone and each appears once, in order."""
    # A Redis database of its own, so that no other worker of this module takes the job's chunks.
    settings = VitronSettings(home=tmp_path / "home", broker_url=REDIS_URL.rsplit("/", 1)[0] + "/13",
                              result_backend=None, visibility_timeout_s=5)
    quick = {"VISIBILITY_TIMEOUT_S": "5"}  # redelivery 5 s after the worker vanished (the restore runs every 10 s)
    shared_store = ArtifactStore.from_settings(settings)
    with celery_worker(settings, env=quick) as (app, first):
        v = video(5, width=640, height=480)
        spec = edit_spec(shared_store, v, "make it a cartoon", chunk_frames=30)
        handle = CeleryExecutor(app).submit(spec)
        deadline = time.monotonic() + 60
        while shared_store.get_named(chunk_key(spec, 0, 30, op="edit")) is None:  # one chunk done, others to go
            assert time.monotonic() < deadline, "the first chunk never finished"
            time.sleep(0.05)
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
        entries = {a: shared_store.root / "index" / key[:2] / f"{key}.json"
                   for a, b in chunk_ranges(120, 30) for key in [chunk_key(spec, a, b, op="edit")]}
        done_before = {a: path.stat().st_mtime_ns for a, path in entries.items() if path.exists()}
        assert len(done_before) < 4, "the job ended before the kill"
        second = start_worker(app, settings.home, settings.broker_url, concurrency=1, settings=quick)
        try:
            result = handle.result(timeout=300)  # redelivery waits for the visibility timeout, on a busy machine longer
            assert handle.status() == "succeeded"
        finally:
            stop_worker(second)
    edited = frames_of(shared_store, result.output["video"])
    assert len(edited) == 120
    src = list(v.frames)
    for index in range(0, 120, 7):  # each output frame is its own source frame's edit, in order
        others = {j for j in (index - 1, index + 1, *range(index % 30, 120, 30)) if 0 <= j < 120} - {index}
        own = np.abs(edited[index].astype(int) - src[index]).mean()
        assert all(own < np.abs(edited[index].astype(int) - src[j]).mean() for j in others), index
    # The chunks finished before the kill were found, not redone: their index entries were not written again.
    assert all(entries[a].stat().st_mtime_ns == mtime for a, mtime in done_before.items())
    assert all(path.exists() for path in entries.values())
