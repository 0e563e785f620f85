"""Module B, image segmentation (OpenCV backend): masks against the scenes' exact ground truth."""

from __future__ import annotations

from functools import cache

import cv2
import numpy as np
import pytest

from schemas import InvalidInput
from tests.scenes import Scene, iou, render_scene
from tools import get_tool


@cache
def scene(seed: int) -> Scene:
    return render_scene(seed)


def segment(ctx, image: np.ndarray, **args) -> tuple[np.ndarray, object]:
    out = get_tool("B").run({"image": ctx.store.put_image(image), **args}, ctx)
    return ctx.store.get_mask(out.mask), out


def test_box_prompt_mean_iou_over_ten_scenes(ctx):
    scores = []
    for seed in range(10):
        s = scene(seed)
        mask, out = segment(ctx, s.image, region={"kind": "box", "box": list(s.box)})
        scores.append(iou(mask, s.mask))
        assert out.area == int(mask.sum()) and out.backend == "opencv"
        ys, xs = np.nonzero(mask)
        assert out.box.box == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
    assert np.mean(scores) >= 0.9, scores
    assert np.median(scores) >= 0.98, scores


def test_three_clicks_on_the_object(ctx):
    scores = []
    for seed in range(6):
        s = scene(seed)
        ys, xs = np.nonzero(cv2.erode(s.mask.astype(np.uint8), np.ones((9, 9), np.uint8)))
        pick = np.random.default_rng(seed).choice(len(xs), 3, replace=False)
        points = [[int(xs[i]), int(ys[i])] for i in pick]
        mask, _ = segment(ctx, s.image, region={"kind": "points", "points": points, "labels": [1, 1, 1]})
        scores.append(iou(mask, s.mask))
    assert np.mean(scores) >= 0.9, scores


def test_a_scribble_inside_the_object(ctx):
    s = scene(3)
    core = cv2.erode(s.mask.astype(np.uint8), np.ones((15, 15), np.uint8)) > 0
    ys, xs = np.nonzero(core)
    scribble = np.zeros_like(s.mask)
    cy = int(np.median(ys))
    row = xs[ys == cy]
    scribble[cy - 1 : cy + 2, row.min() : row.max()] = True  # one stroke across the object
    mask, _ = segment(ctx, s.image, region={"kind": "scribble", "mask": ctx.store.put_mask(scribble)})
    assert iou(mask, s.mask) >= 0.9


@pytest.mark.parametrize("seed", [1, 3, 4, 7, 8])  # scenes whose photo has no large patch of the object's colour
def test_a_colour_phrase_finds_the_object(ctx, seed):
    s = scene(seed)
    mask, _ = segment(ctx, s.image, command=f"segment the {s.colour} object")
    assert iou(mask, s.mask) >= 0.9


def test_the_largest_object_of_the_colour_wins(ctx):
    s = scene(1)
    image = s.image.copy()
    image[5:15, 5:15] = image[s.mask][0]  # a small patch of the same colour elsewhere
    mask, _ = segment(ctx, image, command=f"the {s.colour} one")
    assert iou(mask, s.mask) >= 0.9 and not mask[5:15, 5:15].any()


def test_no_region_and_no_colour_is_a_clear_error(ctx):
    with pytest.raises(InvalidInput, match="no region was given and the command names no colour") as info:
        segment(ctx, scene(0).image, command="segment the cat")
    assert "VITRON_MODELS_FILE" in info.value.message


def test_a_colour_that_is_not_there_is_a_clear_error(ctx):
    grey = np.full((120, 160, 3), 128, np.uint8)
    with pytest.raises(InvalidInput, match="no red object was found"):
        segment(ctx, grey, command="the red object")


def test_a_box_outside_the_image_is_refused(ctx):
    with pytest.raises(InvalidInput, match="region") as info:
        segment(ctx, scene(0).image, region={"kind": "box", "box": [10, 10, 900, 200]})
    assert info.value.field == "region"


def test_a_scribble_of_another_size_is_refused(ctx):
    scribble = ctx.store.put_mask(np.ones((10, 10), bool))
    with pytest.raises(InvalidInput, match="region"):
        segment(ctx, scene(0).image, region={"kind": "scribble", "mask": scribble})
