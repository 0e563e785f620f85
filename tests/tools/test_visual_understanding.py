"""Module H, visual understanding (embedded backend): what the pixels tell, against the scenes' exact ground truth,
and a plain answer naming the setting for everything else."""

from __future__ import annotations

import re

import numpy as np
import pytest
from skimage import data

from schemas import MODELS_SETTING, BoxRegion, InvalidInput, LabelledBox
from tests.scenes import grey_photo, iou, mask_box, paint, render_objects, shape_mask
from tools import get_tool
from tools.specialists import UnderstandInput


def ask(ctx, command: str, *, image: np.ndarray | None = None, video=None, **extra):
    data_ = {"command": command, **extra}
    if image is not None:
        data_["image"] = ctx.store.put_image(image)
    if video is not None:
        data_["video"] = video
    out = get_tool("H").run(data_, ctx)
    assert out.backend == "opencv"
    boxes = [LabelledBox.model_validate(b) for b in ctx.store.get_json(out.boxes)] if out.boxes else []
    return out, boxes


@pytest.mark.parametrize("seed", range(4))
def test_a_named_colour_is_found_with_its_exact_box_and_size(ctx, seed):
    scene = render_objects(seed)
    for colour, mask in scene.masks.items():
        out, boxes = ask(ctx, f"find the {colour} object", image=scene.image)
        assert out.task == "grounding" and out.answered
        assert [(b.label, b.box, b.area, b.score, b.frame) for b in boxes] == [
            (colour, mask_box(mask), int(mask.sum()), 1.0, 0)]
        assert out.region == BoxRegion(box=mask_box(mask))  # what a later step takes as its region
        assert f"{colour} at ({', '.join(map(str, mask_box(mask)))}), {int(mask.sum())} pixels" in out.text


def test_every_colour_region_is_listed_largest_first(ctx):
    scene = render_objects(5, ("yellow", "purple", "orange"))
    out, boxes = ask(ctx, "how many objects are there?", image=scene.image)
    assert out.task == "question" and out.answered and out.text.startswith("3 one-colour regions")
    truth = sorted(((int(m.sum()), c, mask_box(m)) for c, m in scene.masks.items()), reverse=True)
    assert [(b.area, b.label, b.box) for b in boxes] == truth
    assert out.region == BoxRegion(box=truth[0][2])


def test_the_main_colours_are_each_colours_share_of_the_pixels(ctx):
    scene = render_objects(2)
    out, boxes = ask(ctx, "What colours are in this image?", image=scene.image)
    assert out.answered and boxes == [] and out.region is None
    total = scene.image.shape[0] * scene.image.shape[1]
    for colour, mask in scene.masks.items():
        assert f"{colour} {100 * mask.sum() / total:.1f}%" in out.text
    shares = [float(v) for v in re.findall(r"(\d+\.\d)%", out.text)]
    assert sum(shares) == pytest.approx(100, abs=0.5)


def test_a_region_limits_what_is_measured_and_boxes_stay_in_the_whole_images_pixels(ctx):
    scene = render_objects(0)
    x1, y1, x2, y2 = scene.box("blue")
    inner = [x1 + (x2 - x1) // 3, y1 + (y2 - y1) // 3, x2 - (x2 - x1) // 3, y2 - (y2 - y1) // 3]
    assert scene.masks["blue"][inner[1]:inner[3], inner[0]:inner[2]].all()  # the box lies inside the object
    out, _ = ask(ctx, "what colour is it?", image=scene.image, region={"kind": "box", "box": inner})
    assert "the region are blue 100.0%" in out.text
    around = [max(0, x1 - 5), max(0, y1 - 5), x2 + 5, y2 + 5]
    out, boxes = ask(ctx, "find: objects", image=scene.image, region={"kind": "box", "box": around})
    assert [(b.label, b.box) for b in boxes] == [("blue", scene.box("blue"))]


def test_size_and_duration(ctx):
    image = grey_photo("coffee", 200, 150)
    out, _ = ask(ctx, "How big is this picture?", image=image)
    assert out.answered and out.text == "The image is 200×150 pixels."
    out, _ = ask(ctx, "what size is it?", image=image, region={"kind": "box", "box": [10, 20, 60, 50]})
    assert out.text == "The image is 200×150 pixels. The region is 50×30 pixels."
    out, _ = ask(ctx, "how long is it?", image=image)
    assert out.text.startswith("An image has no duration.")
    video = ctx.store.put_video([image] * 12, 8.0)
    out, _ = ask(ctx, "How long is the video?", video=video)
    assert out.answered and out.text == "The video is 200×150 pixels, 12 frames at 8 frames per second: 1.50 seconds."


def test_a_colour_is_found_on_the_frames_of_a_video(ctx):
    width, height, frames = 160, 120, 10
    rng = np.random.default_rng(1)
    masks = [shape_mask("circle", width, height, (40 + 8 * t, 60), 40) for t in range(frames)]
    pixels = [paint(grey_photo("astronaut", width, height), m, "red", rng) for m in masks]
    video = ctx.store.put_video(pixels, 5.0)
    out, boxes = ask(ctx, "where is the red thing?", video=video, num_frames=4)
    assert out.answered and [b.frame for b in boxes] == [0, 3, 6, 9]
    for box in boxes:  # the video is H.264: colours bleed a pixel at the edges
        assert np.allclose(box.box, mask_box(masks[box.frame]), atol=2), (box, mask_box(masks[box.frame]))
    assert out.region.frame == 0 and "on 4 of the 4 frames looked at (0, 3, 6, 9)" in out.text


def test_the_face_in_the_astronaut_photo(ctx):
    out, boxes = ask(ctx, "how many faces are there?", image=data.astronaut())
    assert out.answered, out.text
    assert [b.label for b in boxes] == ["face"] and boxes[0].score is None
    face = np.zeros((512, 512), bool)
    face[70:165, 180:265] = True  # Eileen Collins's face, forehead to chin, marked by hand
    found = np.zeros_like(face)
    x1, y1, x2, y2 = (round(v) for v in boxes[0].box)
    found[y1:y2, x1:x2] = True
    assert iou(found, face) >= 0.6, boxes[0]
    assert "finds 1 face" in out.text
    _, none = ask(ctx, "find the faces", image=render_objects(0).image)
    assert none == []


@pytest.mark.parametrize(("command", "task"), [
    ("caption", "caption"), ("Describe this image.", "caption"), ("what is this?", "question"),
    ("who is on the left?", "question"), ("what colour is the car?", "question"),
    ("find the cat on the left", "grounding"), ("grounding: zebra", "grounding"),
])
def test_what_pixels_cannot_tell_is_answered_by_naming_the_setting(ctx, command, task):
    out, boxes = ask(ctx, command, image=render_objects(0).image)
    assert out.task == task and not out.answered and boxes == [] and out.region is None
    assert "visual_understanding" in out.text and MODELS_SETTING in out.text and "backend: transformers" in out.text
    assert out.text.startswith("I can't ")  # never a made-up description


@pytest.mark.parametrize(("command", "task", "about"), [
    ("caption", "caption", "caption"), ("Describe the video.", "caption", "Describe the video."),
    ("describe the red car", "question", "describe the red car"),
    ("find: the cat on the left", "grounding", "the cat on the left"),
    ("Where are the zebras?", "grounding", "the zebras"), ("grounding: clock", "grounding", "clock"),
    ("question: how many?", "question", "how many?"), ("how big is it?", "question", "how big is it?"),
])
def test_the_command_says_the_task(ctx, command, task, about):
    image = ctx.store.put_image(np.zeros((4, 4, 3), np.uint8))
    assert UnderstandInput(image=image, command=command).reading() == (task, about)


def test_an_image_or_a_video_but_not_both(ctx):
    image = ctx.store.put_image(np.zeros((8, 8, 3), np.uint8))
    video = ctx.store.put_video([np.zeros((8, 8, 3), np.uint8)] * 2, 2.0)
    for given in ({}, {"image": image, "video": video}):
        with pytest.raises(InvalidInput) as info:
            get_tool("H").run({"command": "caption", **given}, ctx)
        assert info.value.field == "image"
