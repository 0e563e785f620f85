"""Hand-drawn masks of objects in the photos that ship with scikit-image, for segmentation quality on real photos.

Each object's outline was traced by hand as polygon vertices on zoomed crops of the photo and rasterised into
`<name>.png` (0 or 255); `objects.json` keeps, per object, the photo, what the mask covers, the box a user would
draw (the mask's bounding box grown by 4 pixels), two clicks a user would make on its main parts, the mask's area
and the traced outline.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import cv2
import numpy as np
from skimage import data

HERE = Path(__file__).parent


@dataclass(frozen=True)
class HandDrawn:
    name: str
    photo: str  # the scikit-image function that returns the photo
    object: str
    image: np.ndarray  # [h, w, 3] uint8 RGB
    mask: np.ndarray  # [h, w] bool
    box: tuple[int, int, int, int]  # x1, y1, x2, y2 (exclusive)
    clicks: list[tuple[int, int]]  # (x, y), each on the object


@cache
def hand_drawn() -> tuple[HandDrawn, ...]:
    """Every hand-drawn object, in the order of `objects.json`."""
    table = json.loads((HERE / "objects.json").read_text())
    objects = []
    for name, entry in table.items():
        image = getattr(data, entry["photo"])()[..., :3]
        mask = cv2.imread(str(HERE / f"{name}.png"), cv2.IMREAD_GRAYSCALE) > 0
        assert mask.shape == image.shape[:2] and int(mask.sum()) == entry["area"], name
        objects.append(HandDrawn(name, entry["photo"], entry["object"], np.ascontiguousarray(image), mask,
                                 tuple(entry["box"]), [tuple(c) for c in entry["clicks"]]))
    return tuple(objects)
