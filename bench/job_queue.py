"""The job queue: what Celery adds, our layer's throughput against bare Celery, two workers on one video.

Prints one JSON line:
- `celery_added_ms_p50`: the latency a ~100 ms job gains on CeleryExecutor over LocalExecutor (median of
  paired runs; goal ≤ 15 ms), on a worker of one pool process, which has every core as the local one has.
- `throughput_ratio_vs_bare`: no-op jobs per second of our layer over bare Celery tasks that return at once
  (`vitron.ping`), on the same broker and one worker of concurrency 2 (goal ≥ 0.8). The no-op job is a dry run
  of an image edit: the job spec, `vitron.run_job`, the cancel check and running mark, the input validated,
  its artifact found in the worker's store, the backend resolved, the result JSON; only the tool does not run.
  `throughput_ratio_trivial_edit` is the same with the tool running too: a real edit of a 16×16 image
  (decode, edit, encode, hash, store). 200 of each per round, the median of nine rounds, the three kinds in
  turn going first, second and third.
- `video_speedup_2_workers`: three 300-frame video edits in 50-frame chunks (`VITRON_BENCH_CHUNK`), one worker
  process over two (goal ≥ 1.7 on this 2-core machine), each count after a warm-up job, in the order 1, 2, 2, 1.

Needs Redis on 127.0.0.1:6379 (database 14 is flushed). Run: .venv/bin/python bench/job_queue.py
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import redis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from memory import ArtifactStore
from schemas import VitronSettings
from tests.scenes import render_scene, render_video
from tests.workers import start_worker, stop_worker
from tools.celery_app import PING, make_celery
from tools.executors import CeleryExecutor, LocalExecutor
from tools.jobs import job_spec

CHUNK = int(os.environ.get("VITRON_BENCH_CHUNK", "50"))  # frames per chunk of the video edit: 6 chunks
EDITS = ("pixelate it", "make it sepia", "make it a cartoon")
ROUNDS = 9
BROKER = os.environ.get("VITRON_BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")


def latency(executor, spec_for) -> float:
    start = time.perf_counter()
    executor.submit(spec_for()).result(timeout=120)
    return (time.perf_counter() - start) * 1000


def bare_rate(app, n: int = 200) -> float:
    """Bare Celery: tasks per second of `vitron.ping`, sent at once and then waited for."""
    start = time.perf_counter()
    results = [app.tasks[PING].apply_async(queue="cpu") for _ in range(n)]
    for r in results:
        r.get(timeout=120)
    return n / (time.perf_counter() - start)


def our_rate(celery: CeleryExecutor, store: ArtifactStore, image, n: int = 200, *, dry_run: bool = False) -> float:
    """Our layer: jobs per second of an edit of `image` (a dry run: a no-op job) through job specs and
    CeleryExecutor, sent at once."""
    start = time.perf_counter()
    data = {"image": image, "command": "black and white"}
    handles = [celery.submit(job_spec("C", data, store, dry_run=dry_run)) for _ in range(n)]
    for h in handles:
        h.result(timeout=120)
    return n / (time.perf_counter() - start)


def main() -> None:
    redis.Redis.from_url(BROKER).flushdb()
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        settings = VitronSettings(home=home, broker_url=BROKER)
        store = ArtifactStore.from_settings(settings)
        app = make_celery(settings)
        celery, local = CeleryExecutor(app), LocalExecutor(store, settings)

        photo = store.put_image(render_scene(3, width=720, height=540).image)  # a ~100 ms cartoon edit
        tiny = store.put_image(np.full((16, 16, 3), 128, np.uint8))

        # One pool process, which (like this process) runs OpenCV on every core: the two sides differ only in
        # how the job travels.
        worker = start_worker(app, home, BROKER, concurrency=1)
        try:
            def edit():
                return job_spec("C", {"image": photo, "command": "cartoon"}, store)
            for _ in range(3):  # imports and first-call costs on both sides
                latency(local, edit), latency(celery, edit)
            added, job_ms = [], []
            for _ in range(15):
                here, there = latency(local, edit), latency(celery, edit)
                added.append(there - here)
                job_ms.append(here)
        finally:
            stop_worker(worker)

        worker = start_worker(app, home, BROKER, concurrency=2)
        try:
            kinds = {"bare": lambda: bare_rate(app), "noop": lambda: our_rate(celery, store, tiny, dry_run=True),
                     "edit": lambda: our_rate(celery, store, tiny)}
            for rate in kinds.values():  # first-call costs in the pool processes
                rate()
            rounds = []
            for index in range(ROUNDS):  # interleaved rounds, each kind first in turn: a slow moment hits all
                order = list(kinds)[index % 3:] + list(kinds)[:index % 3]
                rounds.append({kind: kinds[kind]() for kind in order})
            noop_round = sorted(rounds, key=lambda r: r["noop"] / r["bare"])[len(rounds) // 2]
            edit_round = sorted(rounds, key=lambda r: r["edit"] / r["bare"])[len(rounds) // 2]
        finally:
            stop_worker(worker)

        video = render_video(1, frames=300)
        source = store.put_video(video.frames, video.fps)
        masks = store.put_video(video.masks, video.fps, kind="masks")
        seconds = {1: 0.0, 2: 0.0}
        # One worker, two, two, one: a machine that speeds up or slows down during the bench weighs on both counts.
        for block, workers in enumerate((1, 2, 2, 1)):
            worker = start_worker(app, home, BROKER, concurrency=workers)
            try:
                # A first job warms the pool processes (imports, codec set-up), for both counts alike.
                warm = job_spec("F", {"video": source, "masks": masks, "command": f"blur it {block}"}, store)
                celery.submit(warm.model_copy(update={"chunk_frames": CHUNK})).result(timeout=600)
                for edit in EDITS:  # the same edits in every block; the block's number keeps their chunks apart
                    spec = job_spec("F", {"video": source, "masks": masks, "command": f"{edit} {block}"}, store)
                    start = time.perf_counter()
                    celery.submit(spec.model_copy(update={"chunk_frames": CHUNK})).result(timeout=600)
                    seconds[workers] += time.perf_counter() - start
            finally:
                stop_worker(worker)
        local.close()
    print(json.dumps({
        "celery_added_ms_p50": round(statistics.median(added), 1),
        "job_ms_p50": round(statistics.median(job_ms), 1),
        "throughput_ratio_vs_bare": round(noop_round["noop"] / noop_round["bare"], 3),
        "noop_jobs_per_s": round(noop_round["noop"], 1), "bare_tasks_per_s": round(noop_round["bare"], 1),
        "throughput_ratio_trivial_edit": round(edit_round["edit"] / edit_round["bare"], 3),
        "edit_jobs_per_s": round(edit_round["edit"], 1),
        "video_speedup_2_workers": round(seconds[1] / seconds[2], 2),
        "video_s_1_worker": round(seconds[1], 2), "video_s_2_workers": round(seconds[2], 2),
    }))


if __name__ == "__main__":
    main()
