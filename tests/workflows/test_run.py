"""Workflows run on the embedded backends, judged by their pixels; steps in parallel where they can be; the step
cache hit exactly where the signature says; cancel; a failing step skips what reads it."""

from __future__ import annotations

import copy

import cv2
import numpy as np
import pytest

from schemas import InvalidInput, WorkflowFailed
from tests.measure import grow, hue, hue_gap, shrink
from tests.scenes import iou, render_scene, render_video
from tools.embedded.colours import COLOURS
from workflows import Runtime, Workflow, load_workflow

from .conftest import CUTOUT


def box_text(box) -> str:
    return ",".join(str(v) for v in box)


def events_of(flow: Workflow, inputs: dict, **kwargs) -> list[dict]:
    events: list[dict] = []
    flow.run(inputs, on_event=events.append, **kwargs).raise_for_status()
    return events


def cached_steps(events: list[dict]) -> set[str]:
    return {e["step"] for e in events if e["event"] == "cached"}


def test_product_cutout_puts_the_object_on_white(runtime):
    scene = render_scene(3)
    with load_workflow("product_cutout", runtime=runtime) as flow:
        result = flow.run({"photo": scene.image, "box": box_text(scene.box)}).raise_for_status()
    mask = runtime.store.get_mask(result.outputs["mask"])
    cutout = runtime.store.get_image(result.outputs["cutout"])
    assert iou(mask, scene.mask) > 0.95
    outside, inside = shrink(~scene.mask, 3), shrink(scene.mask, 3)
    assert (cutout[outside] == COLOURS["white"]).all(axis=-1).mean() > 0.99
    assert (cutout[inside] == scene.image[inside]).all()  # the product itself untouched
    assert result.outputs["box"]["kind"] == "box"  # a region output comes back as its value


def test_video_privacy_pixelates_the_tracked_object_and_nothing_else(runtime):
    video = render_video(2, frames=30)
    source = runtime.store.put_video(video.frames, video.fps)
    with load_workflow("video_privacy", runtime=runtime) as flow:
        result = flow.run({"video": source, "box": box_text(video.box(0))}).raise_for_status()
    masks = list(runtime.store.iter_frames(result.outputs["masks"]))
    assert np.mean([iou(m, truth) for m, truth in zip(masks, video.masks, strict=True)]) > 0.9
    edited = list(runtime.store.iter_frames(result.outputs["video"]))
    original = list(runtime.store.iter_frames(source))
    for frame, before, truth in zip(edited, original, video.masks, strict=True):
        core, away = shrink(truth, 2), ~grow(truth, 4)
        assert detail(frame, core) < detail(before, core) / 3  # flat blocks where the object was
        assert np.abs(frame.astype(int) - before)[away].mean() < 2  # the rest: only the codec's small error


def detail(rgb: np.ndarray, where: np.ndarray) -> float:
    return float(np.abs(cv2.Laplacian(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), cv2.CV_32F))[where].mean())


def test_photo_to_clip_recolours_then_animates(runtime):
    scene = render_scene(3)
    with load_workflow("photo_to_clip", runtime=runtime) as flow:
        result = flow.run({"photo": scene.image, "box": box_text(scene.box), "frames": 12,
                           "colour": "green"}).raise_for_status()
    photo = runtime.store.get_image(result.outputs["photo"])
    inside = shrink(scene.mask, 3)
    assert np.median(hue_gap(hue(photo[inside]), hue(COLOURS["green"])[0])) < 20
    info = runtime.store.video_info(result.outputs["clip"])
    assert (info.frames, info.fps, info.width, info.height) == (12, 12.0, scene.image.shape[1], scene.image.shape[0])


def test_independent_steps_start_before_either_ends(runtime):
    video = render_video(1, frames=40)
    source = runtime.store.put_video(video.frames, video.fps)
    doc = {"version": 1, "inputs": {"video": "video"},
           "steps": [{"name": "a", "type": "E", "video": "$inputs.video", "region": {"kind": "box",
                                                                                      "box": list(video.box(0))}},
                     {"name": "b", "type": "E", "video": "$inputs.video", "command": f"the {video.colour} object"}],
           "outputs": {"a": "$steps.a.masks", "b": "$steps.b.masks"}}
    with Workflow(doc, runtime=runtime) as flow:
        events = events_of(flow, {"video": source}, cache=False)
    order = [(e["event"], e["step"]) for e in events if e["event"] in ("step_started", "step_finished")]
    assert [kind for kind, _ in order[:2]] == ["step_started", "step_started"], order


def test_the_cache_reruns_only_the_changed_step_and_what_reads_it(runtime, settings):
    scene = render_scene(5)
    doc = copy.deepcopy(CUTOUT)
    doc["steps"][0]["region"] = {"kind": "box", "box": list(scene.box)}
    doc["steps"].append({"name": "blur", "type": "C", "image": "$steps.paint.image", "mask": "$steps.seg.mask",
                         "command": "blur the background"})
    with Workflow(doc, runtime=runtime) as flow:
        first = flow.run({"photo": scene.image})
        again_events = events_of(flow, {"photo": scene.image})
        again = flow.run({"photo": scene.image})
        assert cached_steps(again_events) == {"seg", "paint", "blur"}
        assert again.outputs == first.outputs  # the same refs, nothing recomputed
        changed = events_of(flow, {"photo": scene.image, "colour": "green"})
        assert cached_steps(changed) == {"seg"}  # paint reads the colour, blur reads paint
        assert cached_steps(events_of(flow, {"photo": scene.image}, cache=False)) == set()
    # Another run in another process-like runtime, same database: still found.
    with Workflow(doc, runtime=Runtime(settings)) as other:
        assert cached_steps(events_of(other, {"photo": scene.image})) == {"seg", "paint", "blur"}
        other.runtime.close()


def test_a_cached_step_whose_files_left_the_store_runs_again(runtime):
    scene = render_scene(6)
    doc = copy.deepcopy(CUTOUT)
    doc["steps"][0]["region"] = {"kind": "box", "box": list(scene.box)}
    with Workflow(doc, runtime=runtime) as flow:
        first = flow.run({"photo": scene.image}).raise_for_status()
        runtime.store.delete(first.outputs["result"])
        events = events_of(flow, {"photo": scene.image})
    assert cached_steps(events) == {"seg"}
    assert runtime.store.exists(first.outputs["result"])  # made again, byte for byte


def test_a_failing_step_skips_what_reads_it(runtime):
    grey = np.full((120, 160, 3), 128, np.uint8)
    doc = copy.deepcopy(CUTOUT)
    doc["steps"][0].pop("region")
    doc["steps"][0]["command"] = "the red object"
    with Workflow(doc, runtime=runtime) as flow:
        events: list[dict] = []
        result = flow.run({"photo": grey}, on_event=events.append)
    assert {n: r.status for n, r in result.steps.items()} == {"seg": "failed", "paint": "skipped"}
    assert "no red object" in result.steps["seg"].error and result.outputs == {}
    assert [e["event"] for e in events if e.get("step") == "paint"] == ["step_skipped"]
    with pytest.raises(WorkflowFailed) as caught:
        result.raise_for_status()
    assert caught.value.field == "steps.seg"


def test_a_run_can_be_cancelled_from_its_events(runtime):
    video = render_video(2, frames=400)
    source = runtime.store.put_video(video.frames, video.fps)
    with load_workflow("video_privacy", runtime=runtime) as flow:
        run = flow.start({"video": source, "box": box_text(video.box(0))}, cache=False)
        fractions = []
        for event in run.events():
            if event["event"] == "step_started":
                run.cancel()
            elif event["event"] == "progress":
                fractions.append(event["fraction"])
        result = run.result()
    assert {n: r.status for n, r in result.steps.items()} == {"track": "cancelled", "hide": "skipped"}
    assert max(fractions, default=0.0) < 0.5
    with pytest.raises(WorkflowFailed, match="step track cancelled"):
        result.raise_for_status()


def test_a_batch_refuses_what_it_cannot_record_and_takes_long_text(runtime):
    doc = copy.deepcopy(CUTOUT)
    with Workflow(doc, runtime=runtime) as flow:
        with pytest.raises(InvalidInput, match="cannot be recorded") as caught:
            flow.batch([{"photo": np.zeros((4, 4, 3), np.uint8)}])
        assert caught.value.field == "items[0].photo"
        result = flow.batch([{"photo": "x" * 300, "colour": "y" * 300}])  # not a file: the item fails, recorded
    (item,) = result.failures
    assert item.error["field"] == "inputs.photo" and "no file" in item.error["problem"]
