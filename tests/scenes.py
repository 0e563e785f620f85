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
    background: np.ndarray | None = None  # [h, w, 3] the photo without the object (what removing it should give back)


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
    background = photo(photo_name, width, height)
    image = paint(background, mask, colour, rng)
    return Scene(image, mask, mask_box(mask), colour, shape, background)


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


def two_of_a_colour(width: int = 320, height: int = 240,
                    sides: tuple[int, int] = (60, 62)) -> tuple[np.ndarray, list[np.ndarray]]:
    """Two red squares of about the same size side by side, a blue circle between them lower down, on a grey photo:
    the image and the three masks (left red, right red, blue)."""
    rng = np.random.default_rng(0)
    image = grey_photo("coffee", width, height)
    masks = [shape_mask("rectangle", width, height, (60, 80), sides[0]),
             shape_mask("rectangle", width, height, (260, 80), sides[1]),
             shape_mask("circle", width, height, (160, 180), 50)]
    for mask, colour in zip(masks, ("red", "red", "blue"), strict=True):
        image = paint(image, mask, colour, rng)
    return image, masks


@dataclass
class ReferringScene:
    image: np.ndarray  # [h, w, 3] uint8 RGB
    masks: list[np.ndarray]  # each object's exact pixels
    colours: list[str]  # each object's colour; several objects may share one

    def box(self, index: int) -> tuple[int, int, int, int]:
        return mask_box(self.masks[index])


def render_referring(seed: int, width: int = 480, height: int = 360, *, grey: bool = True) -> ReferringScene:
    """Three to five shaded objects on a grey photo (`grey=False`: in its colours), their colours drawn from three of
    `OBJECT_COLOURS` (so some share one), each in its own cell of a 3×2 grid (they never touch); each object's pixels
    exactly."""
    rng = np.random.default_rng(seed)
    image = (grey_photo if grey else photo)(list(PHOTOS)[seed % len(PHOTOS)], width, height)
    columns, rows = 3, 2
    cell_w, cell_h = width / columns, height / rows
    palette = [str(c) for c in rng.permutation(OBJECT_COLOURS)[:3]]
    masks, colours = [], []
    for cell in rng.permutation(columns * rows)[: int(rng.integers(3, 6))]:
        size = rng.uniform(0.4, 0.7) * min(cell_w, cell_h)
        margin = 0.62 * size + 2  # a turned rectangle's corner reaches 0.61 of its size from the centre
        x0, y0 = (cell % columns) * cell_w, (cell // columns) * cell_h
        centre = (x0 + rng.uniform(margin, cell_w - margin), y0 + rng.uniform(margin, cell_h - margin))
        colour = palette[int(rng.integers(len(palette)))]
        mask = shape_mask(SHAPES[int(rng.integers(len(SHAPES)))], width, height, centre, size,
                          angle=float(rng.uniform(0, 90)))
        image = paint(image, mask, colour, rng)
        masks.append(mask)
        colours.append(colour)
    return ReferringScene(image, masks, colours)


_SIDES = {"left": (0, 1), "right": (0, -1), "top": (1, 1), "bottom": (1, -1)}
_NTH = {1: "", 2: "second ", 3: "third "}


def referring_phrases(scene: ReferringScene, seed: int) -> list[tuple[str, int]]:
    """For each object that a phrase of colour, place, size or order tells apart clearly (places at least 0.6 of the
    objects' size apart, areas at least a third apart), one such phrase, drawn at random: (phrase, object index)."""
    rng = np.random.default_rng(seed)
    boxes = [scene.box(i) for i in range(len(scene.masks))]
    centres = [((x1 + x2) / 2, (y1 + y2) / 2) for x1, y1, x2, y2 in boxes]
    extents = [(x2 - x1, y2 - y1) for x1, y1, x2, y2 in boxes]
    areas = [int(m.sum()) for m in scene.masks]
    cases = []
    for target, colour in enumerate(scene.colours):
        forms = []
        for named in (True, False):
            group = [i for i in range(len(boxes)) if not named or scene.colours[i] == colour]
            what = f"{colour} object" if named else "object"
            if named and len(group) == 1:
                forms += [f"the {colour} object", f"the {colour} one", f"segment the {colour} shape"]
            if len(group) < 2:
                continue
            for side, (axis, sign) in _SIDES.items():
                order = sorted(group, key=lambda i: sign * centres[i][axis])
                for nth in (1, 2, 3):
                    if nth > len(order) or order[nth - 1] != target:
                        continue
                    near = [order[j] for j in (nth - 2, nth) if 0 <= j < len(order)]
                    if all(abs(centres[target][axis] - centres[j][axis]) >= 0.6 * (extents[target][axis]
                                                                                  + extents[j][axis]) / 2
                           for j in near):
                        at = "on" if side in ("left", "right") else "at"
                        forms.append(f"the {what} {at} the {side}" if nth == 1 else
                                     f"the {_NTH[nth]}{what} from the {side}")
            by_size = sorted(group, key=lambda i: -areas[i])
            for word, index in (("largest", 0), ("smallest", -1)):
                others = [i for i in group if i != target]
                if by_size[index] == target and all(min(areas[i], areas[target]) / max(areas[i], areas[target])
                                                    <= 0.67 for i in others):
                    forms.append(f"the {word} {what}")
        if forms:
            cases.append((forms[int(rng.integers(len(forms)))], target))
    return cases
