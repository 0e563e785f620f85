"""Module B, image segmentation (OpenCV backend) on real photos: scikit-image's, against masks drawn by hand."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from tests.ground_truth import HandDrawn, hand_drawn
from tests.scenes import iou
from tools import get_tool

OBJECTS = {o.name: o for o in hand_drawn()}


def segment(ctx, obj: HandDrawn, region: dict) -> np.ndarray:
    out = get_tool("B").run({"image": ctx.store.put_image(obj.image), "region": region}, ctx)
    mask = ctx.store.get_mask(out.mask)
    assert out.area == int(mask.sum())
    return mask


def pieces(mask: np.ndarray) -> int:
    return cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)[0] - 1


def holes(mask: np.ndarray) -> int:
    """Background areas the mask encloses (not reaching the image's border)."""
    padded = np.pad(~mask, 1, constant_values=True)
    return cv2.connectedComponents(padded.astype(np.uint8), connectivity=4)[0] - 2


def test_the_masks_are_one_object_each():
    for obj in hand_drawn():
        assert pieces(obj.mask) == 1 and holes(obj.mask) == 0, obj.name
        ys, xs = np.nonzero(obj.mask)
        x1, y1, x2, y2 = obj.box
        assert x1 <= xs.min() and y1 <= ys.min() and xs.max() < x2 and ys.max() < y2, obj.name
        assert all(obj.mask[y, x] for x, y in obj.clicks), obj.name


def test_a_box_around_each_object(ctx):
    scores = {}
    for obj in hand_drawn():
        mask = segment(ctx, obj, {"kind": "box", "box": list(obj.box)})
        scores[obj.name] = iou(mask, obj.mask)
        assert pieces(mask) == 1 and holes(mask) == 0, obj.name  # one object: no islands, no holes
    assert np.mean(list(scores.values())) >= 0.85, scores
    assert min(scores.values()) >= 0.65, scores  # the cup alone: its red body on the red saucer is the hard one


@pytest.mark.parametrize("name", list(OBJECTS))
def test_two_clicks_on_the_object_give_the_object(ctx, name):
    obj = OBJECTS[name]
    region = {"kind": "points", "points": [list(c) for c in obj.clicks], "labels": [1] * len(obj.clicks)}
    mask = segment(ctx, obj, region)
    assert pieces(mask) == 1 and holes(mask) == 0  # one object, not a dot per click
    assert all(mask[y, x] for x, y in obj.clicks)
    assert iou(mask, obj.mask) >= 0.6, iou(mask, obj.mask)


def test_the_readme_examples_on_the_cat(ctx):
    # README: `vitron invoke B --image cat.jpg --box 0,0,405,300` and `--points "200,60,1;10,10,0"`, cat.jpg being
    # skimage.data.chelsea().
    cat = OBJECTS["chelsea_cat"]
    mask = segment(ctx, cat, {"kind": "box", "box": [0, 0, 405, 300]})
    assert pieces(mask) == 1 and iou(mask, cat.mask) >= 0.9
    mask = segment(ctx, cat, {"kind": "points", "points": [[200, 60], [10, 10]], "labels": [1, 0]})
    assert pieces(mask) == 1 and not mask[10, 10]
    assert iou(mask, cat.mask) >= 0.75
