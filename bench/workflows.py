"""What the workflow engine costs around the tools. Prints one JSON line.

- `batch_ratio_vs_loop`: a 3-step workflow (segment from a box, recolour inside the mask, blur the background) over
  100 photos as a batch, one item at a time, against a plain Python loop of the same tool calls on the same
  executor (in-process): the batch's wall time over the loop's (goal ≤ 1.10). The batch also compiles the
  workflow, records every item in SQL and writes every step to the step cache; both import each photo (imported
  once before, so each finds it by its digest) and call the tools. The loop runs before and after the batch; the
  mean of the two counts.
- `batch_parallel_ratio_vs_loop`: the same with two items at a time (the batch's default), on a fresh cache.
- `cached_rerun_ratio`: the same batch run again unchanged, every item afresh (`restart`), so each step's outputs
  come from the step cache; against its first run (goal ≤ 0.05). `resume_ratio`: run again as it is, nothing
  left to do (the batch's records say every item is done).
- `compile_ms_p50`: compiling a 20-step workflow (a segmentation and 19 chained edits), median of 200 (goal ≤ 20).

Run: .venv/bin/python bench/workflows.py
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from schemas import VitronSettings
from tests.scenes import render_scene
from tools.jobs import job_spec
from workflows import Runtime, Workflow, compile_workflow

ITEMS = 100
SIZE = (320, 240)
FLOW = {
    "version": 1,
    "inputs": {"photo": "image", "box": "region"},
    "steps": [
        {"name": "segment", "type": "B", "image": "$inputs.photo", "region": "$inputs.box"},
        {"name": "recolour", "type": "C", "image": "$inputs.photo", "mask": "$steps.segment.mask",
         "command": "make it blue"},
        {"name": "blur", "type": "C", "image": "$steps.recolour.image", "mask": "$steps.segment.mask",
         "command": "blur the background"},
    ],
    "outputs": {"result": "$steps.blur.image"},
}


def photos(folder: Path, count: int, first_seed: int) -> list[dict]:
    items = []
    for seed in range(first_seed, first_seed + count):
        scene = render_scene(seed, *SIZE)
        path = folder / f"scene{seed}.png"
        cv2.imwrite(str(path), cv2.cvtColor(scene.image, cv2.COLOR_RGB2BGR))
        items.append({"photo": str(path), "box": ",".join(map(str, scene.box))})
    return items


def loop(runtime: Runtime, items: list[dict]) -> float:
    """The same tool calls, by hand: import, segment, recolour, blur, each waiting for the one before."""
    from schemas import parse_box

    executor, store = runtime.executor, runtime.store
    started = time.perf_counter()
    for item in items:
        photo = store.import_image(item["photo"])
        region = parse_box(item["box"])
        seg = executor.submit(job_spec("B", {"image": photo, "region": region}, store)).result().output
        paint = executor.submit(job_spec("C", {"image": photo, "mask": seg["mask"], "command": "make it blue"},
                                         store)).result().output
        executor.submit(job_spec("C", {"image": paint["image"], "mask": seg["mask"],
                                       "command": "blur the background"}, store)).result()
    return time.perf_counter() - started


def batch(flow: Workflow, items: list[dict], **kwargs) -> float:
    started = time.perf_counter()
    result = flow.batch(items, **kwargs)
    seconds = time.perf_counter() - started
    if result.failures:
        raise RuntimeError(f"{len(result.failures)} items failed: {result.failures[0].error}")
    return seconds


def chain(steps: int) -> dict:
    edits = [{"name": f"edit{n}", "type": "C", "image": f"$steps.edit{n - 1}.image" if n > 1 else "$inputs.photo",
              "mask": "$steps.segment.mask", "command": "make it {colour}"} for n in range(1, steps)]
    return {"version": 1, "inputs": {"photo": "image", "colour": {"type": "text", "default": "blue"}},
            "steps": [{"name": "segment", "type": "B", "image": "$inputs.photo",
                       "region": {"kind": "box", "box": [10, 10, 100, 100]}}, *edits],
            "outputs": {"result": f"$steps.edit{steps - 1}.image"}}


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        runtime = Runtime(VitronSettings(home=folder / "home"))
        warm, items, other = photos(folder, 4, 1000), photos(folder, ITEMS, 0), photos(folder, ITEMS, 500)
        with Workflow(FLOW, runtime=runtime) as flow:
            for item in items + other:  # every photo imported once: each run below finds it by its digest
                runtime.store.import_image(item["photo"])
            loop(runtime, warm)  # first calls out of the way, on both sides
            batch(flow, warm, parallel=1)
            before = loop(runtime, items)
            first = batch(flow, items, parallel=1)
            after = loop(runtime, items)
            rerun = batch(flow, items, parallel=1, restart=True)
            resume = batch(flow, items, parallel=1)
            parallel = batch(flow, other, parallel=2)
            parallel_loop = loop(runtime, other)
        runtime.close()
    document = chain(20)
    compile_workflow(document)
    times = []
    for _ in range(200):
        started = time.perf_counter()
        compile_workflow(document)
        times.append((time.perf_counter() - started) * 1000)
    loop_s = (before + after) / 2
    print(json.dumps({
        "batch_ratio_vs_loop": round(first / loop_s, 3),
        "batch_parallel_ratio_vs_loop": round(parallel / parallel_loop, 3),
        "cached_rerun_ratio": round(rerun / first, 4),
        "resume_ratio": round(resume / first, 4),
        "compile_ms_p50": round(statistics.median(times), 2),
        "loop_ms_per_item": round(loop_s / ITEMS * 1000, 1),
        "batch_ms_per_item": round(first / ITEMS * 1000, 1),
        "loop_runs_s": [round(before, 2), round(after, 2)],
    }))


if __name__ == "__main__":
    main()
