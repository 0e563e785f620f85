"""Rendered test scenes with exact ground truth: coloured shapes on real photo texture.

Backgrounds are the photos that ship with scikit-image; objects are shaded shapes of a named colour,
so every pixel's membership is known exactly. Videos move the object across a (slowly panning) photo.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from skimage import data

from tools.embedded.colours import COLOURS

PHOTOS = {"coffee": data.coffee, "astronaut": data.astronaut, "rocket": data.rocket, "chelsea": data.chelsea}
SHAPES = ("circle", "ellipse", "rectangle", "triangle", "star")
OBJECT_COLOURS = ("red", "green", "blue", "yellow", "purple", "orange")


@dataclass
class Scene:
    image: np.ndarray  # [h, w, 3] uint8 RGB
    mask: np.ndarray  # [h, w] bool, exact object pixels
    box: tuple[int, int, int, int]  # x1, y1, x2, y2 (exclusive)
    colour: str
    shape: str


@dataclass
class VideoScene:
    frames: list[np.ndarray]
    masks: list[np.ndarray]
    colour: str
    shape: str
    fps: float = 10.0

    def box(self, index: int) -> tuple[int, int, int, int]:
        return mask_box(self.masks[index])


def photo(name: str, width: int, height: int) -> np.ndarray:
    """A scikit-image photo, resized to cover (width, height) and centre-cropped."""
    image = PHOTOS[name]()
    if image.ndim == 2:
        image = np.stack([image] * 3, axis=-1)
    h, w = image.shape[:2]
    scale = max(width / w, height / h)
    resized = cv2.resize(image, (max(width, round(w * scale)), max(height, round(h * scale))),
                         interpolation=cv2.INTER_AREA)
    y0 = (resized.shape[0] - height) // 2
    x0 = (resized.shape[1] - width) // 2
    return np.ascontiguousarray(resized[y0 : y0 + height, x0 : x0 + width, :3])


def shape_mask(shape: str, width: int, height: int, centre: tuple[float, float], size: float,
               angle: float = 0.0) -> np.ndarray:
    """A filled shape of about `size` pixels across, as a bool mask."""
    canvas = np.zeros((height, width), np.uint8)
    cx, cy = centre
    r = size / 2
    if shape == "circle":
        cv2.circle(canvas, (round(cx), round(cy)), round(r), 255, -1)
    elif shape == "ellipse":
        cv2.ellipse(canvas, (round(cx), round(cy)), (round(r), round(r * 0.6)), angle, 0, 360, 255, -1)
    else:
        if shape == "rectangle":
            pts = [(-r, -r * 0.7), (r, -r * 0.7), (r, r * 0.7), (-r, r * 0.7)]
        elif shape == "triangle":
            pts = [(0, -r), (r, r * 0.8), (-r, r * 0.8)]
        elif shape == "star":
            pts = [((r if i % 2 == 0 else r * 0.5) * np.sin(i * np.pi / 5),
                    -(r if i % 2 == 0 else r * 0.5) * np.cos(i * np.pi / 5)) for i in range(10)]
        else:
            raise ValueError(f"unknown shape {shape}")
        a = np.deg2rad(angle)
        rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
        poly = (np.array(pts) @ rot.T + [cx, cy]).round().astype(np.int32)
        cv2.fillPoly(canvas, [poly], 255)
    return canvas > 0


def paint(background: np.ndarray, mask: np.ndarray, colour: str, rng: np.random.Generator) -> np.ndarray:
    """Paint a shaded object of `colour` into `mask`: a light-to-dark gradient plus faint noise."""
    h, w = mask.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    ys, xs = np.nonzero(mask)
    span = max(1.0, float(xs.max() - xs.min() + ys.max() - ys.min()))
    shade = 1.0 - 0.3 * ((xx - xs.min()) + (yy - ys.min())) / span
    rgb = np.array(COLOURS[colour], np.float32)
    obj = rgb[None, None, :] * shade[..., None] + rng.normal(0, 3, (h, w, 3))
    out = background.copy()
    out[mask] = np.clip(obj[mask], 0, 255).astype(np.uint8)
    return out


def mask_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(mask)
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def render_scene(seed: int, width: int = 480, height: int = 360) -> Scene:
    """One object of a known colour and shape on a photo; everything derives from `seed`."""
    rng = np.random.default_rng(seed)
    photo_name = list(PHOTOS)[seed % len(PHOTOS)]
    shape = SHAPES[seed % len(SHAPES)]
    colour = OBJECT_COLOURS[seed % len(OBJECT_COLOURS)]
    size = rng.uniform(0.25, 0.4) * min(width, height)
    centre = (rng.uniform(size, width - size), rng.uniform(size, height - size))
    mask = shape_mask(shape, width, height, centre, size, angle=float(rng.uniform(0, 90)))
    image = paint(photo(photo_name, width, height), mask, colour, rng)
    return Scene(image, mask, mask_box(mask), colour, shape)


def render_video(seed: int, frames: int = 30, width: int = 320, height: int = 240) -> VideoScene:
    """An object gliding across a slowly panning photo, turning a little, with exact per-frame masks."""
    rng = np.random.default_rng(seed)
    shape = SHAPES[seed % len(SHAPES)]
    colour = OBJECT_COLOURS[seed % len(OBJECT_COLOURS)]
    big = photo(list(PHOTOS)[seed % len(PHOTOS)], width + frames, height)
    size = 0.3 * min(width, height)
    start = np.array([size, rng.uniform(size, height - size)])
    end = np.array([width - size, rng.uniform(size, height - size)])
    out_frames, out_masks = [], []
    for t in range(frames):
        a = t / max(1, frames - 1)
        cx, cy = start + (end - start) * a
        mask = shape_mask(shape, width, height, (cx, cy), size, angle=10.0 * a)
        background = big[:, t : t + width]
        out_frames.append(paint(np.ascontiguousarray(background), mask, colour, rng))
        out_masks.append(mask)
    return VideoScene(out_frames, out_masks, colour, shape)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


@dataclass
class ObjectsScene:
    image: np.ndarray  # [h, w, 3] uint8 RGB
    masks: dict[str, np.ndarray]  # colour → its object's exact pixels

    def box(self, colour: str) -> tuple[int, int, int, int]:
        return mask_box(self.masks[colour])


def grey_photo(name: str, width: int, height: int) -> np.ndarray:
    """A scikit-image photo in greys (RGB): no pixel of it has a colour, so every coloured pixel is an object's."""
    grey = cv2.cvtColor(photo(name, width, height), cv2.COLOR_RGB2GRAY)
    return np.ascontiguousarray(np.stack([grey] * 3, axis=-1))


def render_objects(seed: int, colours: tuple[str, ...] = ("red", "blue", "green"), width: int = 480,
                   height: int = 360) -> ObjectsScene:
    """Shaded objects of distinct colours, apart from one another, on a grey photo; each object's pixels exactly."""
    rng = np.random.default_rng(seed)
    image = grey_photo(list(PHOTOS)[seed % len(PHOTOS)], width, height)
    cell = width // len(colours)  # one column each: the objects never touch
    masks = {}
    for index, colour in enumerate(colours):
        size = rng.uniform(0.45, 0.7) * min(cell, height)
        centre = (index * cell + cell / 2 + rng.uniform(-0.1, 0.1) * cell, rng.uniform(size, height - size))
        masks[colour] = shape_mask(SHAPES[(seed + index) % len(SHAPES)], width, height, centre, size,
                                   angle=float(rng.uniform(0, 90)))
        image = paint(image, masks[colour], colour, rng)
    return ObjectsScene(image, masks)
