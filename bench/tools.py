"""Latency of the embedded backends: a 640x480 image and a 100-frame 320x240 video; and the quality of image
segmentation on real photos: IoU against masks drawn by hand (tests/ground_truth/), from a box and from two clicks
per object; and referring segmentation on rendered scenes of several coloured objects (B given a phrase of colour,
place, size or order): the mean IoU and how often the right object is picked. Prints one JSON line.

Run: .venv/bin/python bench/tools.py (only the referring figures: .venv/bin/python bench/tools.py referring)
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
from tests.ground_truth import hand_drawn
from tests.scenes import iou, referring_phrases, render_referring, render_scene, render_video
from tools import ToolContext, get_tool


def timed_ms(fn, repeats: int) -> float:
    """Median wall time of `repeats` calls, in milliseconds."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return round(statistics.median(times), 1)


def photo_quality(ctx: ToolContext) -> dict[str, object]:
    """IoU of module B's masks against the hand-drawn ones, per object and the mean, from a box and from the clicks
    recorded with each object; and the median time of one such call."""
    figures: dict[str, object] = {}
    for prompt in ("box", "points"):
        scores, times = {}, []
        for obj in hand_drawn():
            region = ({"kind": "box", "box": list(obj.box)} if prompt == "box" else
                      {"kind": "points", "points": [list(c) for c in obj.clicks], "labels": [1] * len(obj.clicks)})
            photo = ctx.store.put_image(obj.image)
            start = time.perf_counter()
            out = get_tool("B").run({"image": photo, "region": region}, ctx)
            times.append((time.perf_counter() - start) * 1000)
            scores[obj.name] = round(iou(ctx.store.get_mask(out.mask), obj.mask), 3)
        figures[f"photo_{prompt}_iou"] = scores
        figures[f"photo_{prompt}_iou_mean"] = round(statistics.mean(scores.values()), 3)
        figures[f"photo_{prompt}_ms_median"] = round(statistics.median(times), 1)
    return figures


def referring_quality(ctx: ToolContext, seeds: int = 100, grey: bool = True) -> dict[str, object]:
    """Module B given referring phrases ("the second red object from the left", "the largest object") on rendered
    scenes of three to five coloured objects on a grey photo (`grey=False`: on the photo in colour, whose own coloured
    patches are candidates too): the mean IoU with the object meant, the share of phrases whose mask is that object's
    (its best IoU), the shares answered with a question or an error instead, over `seeds` scenes."""
    from schemas import AmbiguousTarget, InvalidInput

    ious, right, asked, failed, times = [], 0, 0, 0, []
    for seed in range(seeds):
        scene = render_referring(seed, grey=grey)
        photo = ctx.store.put_image(scene.image)
        for phrase, target in referring_phrases(scene, seed):
            start = time.perf_counter()
            try:
                out = get_tool("B").run({"image": photo, "command": phrase}, ctx)
            except (AmbiguousTarget, InvalidInput) as exc:
                asked += isinstance(exc, AmbiguousTarget)
                failed += isinstance(exc, InvalidInput)
                ious.append(0.0)
                continue
            finally:
                times.append((time.perf_counter() - start) * 1000)
            scores = [iou(ctx.store.get_mask(out.mask), truth) for truth in scene.masks]
            ious.append(scores[target])
            right += max(range(len(scores)), key=scores.__getitem__) == target
    name = "referring" if grey else "referring_colour_photo"
    return {f"{name}_phrases": len(ious), f"{name}_iou_mean": round(statistics.mean(ious), 4),
            f"{name}_right_pick": round(right / len(ious), 4), f"{name}_asked": round(asked / len(ious), 4),
            f"{name}_failed": round(failed / len(ious), 4), f"{name}_ms_median": round(statistics.median(times), 1)}


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
        figures.update(photo_quality(ctx))
        figures.update(referring_quality(ctx))
        figures.update(referring_quality(ctx, grey=False))
    figures["video_segmentation_ms_per_frame"] = round(figures["video_segmentation_ms"] / 100, 2)
    figures["video_editing_ms_per_frame"] = round(figures["video_editing_ms"] / 100, 2)
    figures["machine"] = f"{platform.machine()}, {platform.python_version()}"
    print(json.dumps(figures))


if __name__ == "__main__":
    if sys.argv[1:] == ["referring"]:
        with tempfile.TemporaryDirectory() as folder:
            ctx = ToolContext(store=ArtifactStore(folder))
            print(json.dumps({**referring_quality(ctx), **referring_quality(ctx, grey=False)}))
    else:
        main()
