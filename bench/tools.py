"""Latency of the embedded backends: a 640x480 image and a 100-frame 320x240 video. Prints one JSON line.

Run: .venv/bin/python bench/tools.py
"""

from __future__ import annotations

import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from memory import ArtifactStore
from tests.scenes import render_scene, render_video
from tools import ToolContext, get_tool


def timed_ms(fn, repeats: int) -> float:
    """Median wall time of `repeats` calls, in milliseconds."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return round(statistics.median(times), 1)


def main() -> None:
    with tempfile.TemporaryDirectory() as root:
        ctx = ToolContext(store=ArtifactStore(root))
        scene = render_scene(4, 640, 480)
        image = ctx.store.put_image(scene.image)
        mask = ctx.store.put_mask(scene.mask)
        clip = render_video(1, frames=100, width=320, height=240)
        video = ctx.store.put_video(clip.frames, fps=clip.fps)
        masks = ctx.store.put_video(clip.masks, fps=clip.fps, kind="masks")
        box = {"kind": "box", "box": list(scene.box)}
        first_box = {"kind": "box", "box": list(clip.box(0))}
        jobs = {
            "image_segmentation_ms": (lambda: get_tool("B").run({"image": image, "region": box}, ctx), 5),
            "image_editing_ms": (
                lambda: get_tool("C").run({"image": image, "mask": mask, "command": "make it blue"}, ctx), 5),
            "image_editing_remove_ms": (
                lambda: get_tool("C").run({"image": image, "mask": mask, "command": "remove it"}, ctx), 5),
            "video_segmentation_ms": (lambda: get_tool("E").run({"video": video, "region": first_box}, ctx), 1),
            "video_editing_ms": (
                lambda: get_tool("F").run({"video": video, "masks": masks, "command": "make it blue"}, ctx), 1),
            "image_to_video_ms": (
                lambda: get_tool("G").run({"image": image, "command": "zoom in", "num_frames": 100}, ctx), 1),
        }
        figures: dict[str, object] = {name: timed_ms(fn, repeats) for name, (fn, repeats) in jobs.items()}
    figures["video_segmentation_ms_per_frame"] = round(figures["video_segmentation_ms"] / 100, 2)
    figures["video_editing_ms_per_frame"] = round(figures["video_editing_ms"] / 100, 2)
    figures["machine"] = f"{platform.machine()}, {platform.python_version()}"
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
