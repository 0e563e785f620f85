"""Image segmentation with OpenCV: GrabCut from a box, points or a scribble, or a named colour's pixels.

GrabCut runs on a copy whose longest side is at most `MAX_SIDE` pixels and the mask is upsampled, so
a large photo costs about what a 480p one does. Every result is cleaned the same way: the connected
component(s) the prompt points at, holes filled, a light morphological opening.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from memory import ArtifactStore
from schemas import BoxRegion, InvalidInput, PointsRegion, Region, ScribbleRegion
from tools.base import ToolContext
from tools.specialists import SegmentImageInput, SegmentImageOutput

from .colours import COLOURS, find_colours

MAX_SIDE = 640
"""GrabCut works on a copy no larger than this on its longest side."""

INIT_ITERATIONS = 5
REFINE_ITERATIONS = 2
MIN_SAMPLES = 16  # GrabCut's 5-component colour models need a few pixels on each side
RNG_SEED = 0  # of OpenCV's RNG before each GrabCut
LIKELY = 0.6  # seeds' colour at least this much likelier than the image's: the object's first guess
WINDOW_PAD = 0.15  # seeds' first guess of the object, grown by this fraction, bounds the probable foreground
CROP_MARGIN, CROP_MARGIN_MIN = 0.3, 16  # background kept around the undecided pixels, relative and least

_FG_LABELS = (cv2.GC_FGD, cv2.GC_PR_FGD)

# Hue in OpenCV's 0..180 scale, saturation and value in 0..255. Shading keeps hue and saturation and
# moves value, so chromatic colours are told apart by hue first; pink is a pale red/magenta, brown a
# dark orange, and white, gray and black have almost no saturation.
_HSV_RANGES: dict[str, list[tuple[tuple[int, int], tuple[int, int], tuple[int, int]]]] = {
    "red": [((0, 7), (140, 255), (60, 255)), ((170, 180), (140, 255), (60, 255))],
    "orange": [((8, 20), (120, 255), (150, 255))],
    "brown": [((5, 22), (80, 255), (30, 149))],
    "yellow": [((21, 35), (100, 255), (100, 255))],
    "green": [((36, 80), (80, 255), (40, 255))],
    "cyan": [((81, 100), (80, 255), (60, 255))],
    "blue": [((101, 128), (80, 255), (40, 255))],
    "purple": [((129, 147), (60, 255), (40, 255))],
    "magenta": [((148, 169), (150, 255), (80, 255))],
    "pink": [((150, 180), (40, 139), (150, 255)), ((0, 8), (40, 139), (150, 255))],
    "white": [((0, 180), (0, 40), (200, 255))],
    "gray": [((0, 180), (0, 40), (60, 199))],
    "black": [((0, 180), (0, 255), (0, 50))],
}
assert set(_HSV_RANGES) == set(COLOURS), "every named colour needs an HSV range"

_NEEDS_PROMPT_FIX = (
    "give a region (a box, points or a scribble on the object), name its colour in the command "
    "('segment the red object'), or configure a segmentation model (VITRON_MODELS_FILE)"
)


# -- helpers ---------------------------------------------------------------------------------------

def _disc(radius: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))


def _downscale(image: np.ndarray) -> tuple[np.ndarray, float]:
    """The image shrunk so its longest side is at most MAX_SIDE, and the factor applied."""
    h, w = image.shape[:2]
    scale = min(1.0, MAX_SIDE / max(h, w))
    if scale == 1.0:
        return image, 1.0
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA), scale


def _upscale(mask: np.ndarray, height: int, width: int) -> np.ndarray:
    if mask.shape == (height, width):
        return mask
    # Linear interpolation of the 0/1 mask then a 0.5 cut gives smooth edges instead of blocky ones.
    return cv2.resize(mask.astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR) > 0.5


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """`mask` with every background area that does not reach the image border filled in."""
    h, w = mask.shape
    padded = np.zeros((h + 2, w + 2), np.uint8)
    padded[1:-1, 1:-1] = mask
    flood = padded.copy()
    cv2.floodFill(flood, np.zeros((h + 4, w + 4), np.uint8), (0, 0), 1)
    return mask | (flood[1:-1, 1:-1] == 0)


def keep_components(mask: np.ndarray, seeds: np.ndarray | None = None) -> np.ndarray:
    """The connected components of `mask` that touch `seeds`; the largest one when none does (or no seeds)."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if count <= 1:
        return np.zeros_like(mask, bool)
    if seeds is not None:
        touched = np.unique(labels[seeds & mask])
        touched = touched[touched > 0]
        if touched.size:
            return np.isin(labels, touched)
    largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    return labels == largest


def _cleanup(mask: np.ndarray, seeds: np.ndarray | None, radius: int) -> np.ndarray:
    """Opening (drops specks and thin bridges), the seeded or largest component, holes filled."""
    opened = cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_OPEN, _disc(radius)) > 0 if radius else mask
    if not opened.any():  # a thin object: keep it rather than erase it
        opened = mask
    return fill_holes(keep_components(opened, seeds))


def _grabcut(image: np.ndarray, labels: np.ndarray, iterations: int, *, rect: bool = False) -> np.ndarray:
    """GrabCut from a label map; the foreground as bool. Too few samples on a side: the labels as they are.

    Works on a crop around the undecided pixels plus a margin of background: the graph gets smaller
    and the background model learns from the object's surroundings rather than the whole image.
    `rect=True` starts from the bounding rectangle of the non-background labels (GC_INIT_WITH_RECT).
    """
    fg = np.isin(labels, _FG_LABELS)
    open_ = labels != cv2.GC_BGD
    if fg.sum() < MIN_SAMPLES or (~open_).sum() < MIN_SAMPLES:
        return fg
    ys, xs = np.nonzero(open_)
    margin = max(CROP_MARGIN_MIN, CROP_MARGIN * max(np.ptp(xs) + 1, np.ptp(ys) + 1))
    x1, y1, x2, y2 = _padded_box(open_, margin)
    crop_rgb = image[y1:y2, x1:x2]
    crop = labels[y1:y2, x1:x2].copy()
    if (crop == cv2.GC_BGD).sum() < MIN_SAMPLES:
        crop_rgb, crop, (x1, y1, x2, y2) = image, labels.copy(), (0, 0, *labels.shape[::-1])
    # GrabCut treats the three channels alike (GMMs and Euclidean edge weights), so RGB needs no swap.
    crop_rgb = np.ascontiguousarray(crop_rgb)
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    # GrabCut's k-means draws from OpenCV's per-thread RNG: seeded here, the same pixels give the same mask on any
    # thread, however many cuts that thread made before (a workflow rerun, a cached step's signature rely on it).
    cv2.setRNGSeed(RNG_SEED)
    if rect:
        ry, rx = np.nonzero(crop != cv2.GC_BGD)
        box = (int(rx.min()), int(ry.min()), int(np.ptp(rx)) + 1, int(np.ptp(ry)) + 1)
        cv2.grabCut(crop_rgb, crop, box, bgd, fgd, iterations, cv2.GC_INIT_WITH_RECT)
    else:
        cv2.grabCut(crop_rgb, crop, None, bgd, fgd, iterations, cv2.GC_INIT_WITH_MASK)
    out = np.zeros(labels.shape, bool)
    out[y1:y2, x1:x2] = np.isin(crop, _FG_LABELS)
    return out


def _padded_box(mask: np.ndarray, pad: float) -> tuple[int, int, int, int]:
    """Bounding box (x1, y1, x2, y2, exclusive) of `mask`, grown by `pad` pixels and clipped to the image."""
    ys, xs = np.nonzero(mask)
    h, w = mask.shape
    return (max(0, int(xs.min() - pad)), max(0, int(ys.min() - pad)),
            min(w, int(xs.max() + 1 + pad)), min(h, int(ys.max() + 1 + pad)))


# -- prompts ---------------------------------------------------------------------------------------

def _box_mask(image: np.ndarray, region: BoxRegion, scale: float) -> np.ndarray:
    h, w = image.shape[:2]
    bx1, by1, bx2, by2 = (v * scale for v in region.box)
    x1, y1 = min(w - 1, math.floor(bx1)), min(h - 1, math.floor(by1))
    x2, y2 = max(x1 + 1, min(w, math.ceil(bx2))), max(y1 + 1, min(h, math.ceil(by2)))
    labels = np.full((h, w), cv2.GC_BGD, np.uint8)
    labels[y1:y2, x1:x2] = cv2.GC_PR_FGD
    if (x1, y1, x2, y2) == (0, 0, w, h):
        # A box around the whole image leaves no outside to learn the background from: use its rim.
        labels[[0, -1], :] = cv2.GC_PR_BGD
        labels[:, [0, -1]] = cv2.GC_PR_BGD
        fg = _grabcut(image, labels, INIT_ITERATIONS)
    else:
        fg = _grabcut(image, labels, INIT_ITERATIONS, rect=True)
    fg = _cleanup(fg, None, 1)
    if not fg.any():
        return fg
    # Refine in mask mode: relearn both colour models from the cleaned result, so background pixels
    # first taken into the object stop pulling the object model towards them.
    inside = labels != cv2.GC_BGD
    labels[inside] = np.where(fg[inside], cv2.GC_PR_FGD, cv2.GC_PR_BGD)
    return _grabcut(image, labels, REFINE_ITERATIONS)


def _points_mask(image: np.ndarray, region: PointsRegion, scale: float) -> tuple[np.ndarray, np.ndarray]:
    h, w = image.shape[:2]
    radius = max(2, round(0.012 * max(h, w)))
    positive = np.zeros((h, w), np.uint8)
    negative = np.zeros((h, w), np.uint8)
    for (x, y), label in zip(region.points, region.labels, strict=True):
        centre = (min(w - 1, round(x * scale)), min(h - 1, round(y * scale)))
        cv2.circle(positive if label == 1 else negative, centre, radius, 1, -1)
    positive, negative = positive > 0, negative > 0
    positive &= ~negative  # a click marked both ways counts as background: the safer reading
    if not positive.any():
        raise InvalidInput("the object points all lie on background points", field="region",
                           fix="click the object with label 1 away from the label-0 clicks")
    return _seeded_mask(image, positive, negative), positive


def _scribble_mask(image: np.ndarray, scribble: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    h, w = image.shape[:2]
    if scribble.shape != (h, w):
        # INTER_AREA keeps any pixel a thin stroke touched; the stroke stays a stroke when shrunk.
        scribble = cv2.resize(scribble.astype(np.float32), (w, h), interpolation=cv2.INTER_AREA) > 0.05
    if not scribble.any():
        raise InvalidInput("the scribble mask is empty", field="region", fix="paint over the object")
    return _seeded_mask(image, scribble, np.zeros((h, w), bool)), scribble


_LAB_BINS = (8, 32)  # lightness coarsely (shading changes it), chroma finely


def _lab_index(image: np.ndarray) -> np.ndarray:
    """Each RGB pixel's bin in a Lab histogram of `_LAB_BINS` bins."""
    lab = cv2.cvtColor(image, cv2.COLOR_RGB2LAB).astype(np.int32)
    nl, nab = _LAB_BINS
    return ((lab[..., 0] * nl >> 8) * nab + (lab[..., 1] * nab >> 8)) * nab + (lab[..., 2] * nab >> 8)


def _spread(hist: np.ndarray) -> np.ndarray:
    """A [1, 2, 1] blur along every axis of a histogram, without wrapping around its ends."""
    for axis in range(hist.ndim):
        padded = np.pad(hist, [(1, 1) if a == axis else (0, 0) for a in range(hist.ndim)])
        lo = np.take(padded, range(0, hist.shape[axis]), axis=axis)
        hi = np.take(padded, range(2, hist.shape[axis] + 2), axis=axis)
        hist = lo + 2 * hist + hi
    return hist


@dataclass(frozen=True)
class ColourModel:
    """How much likelier each colour is on the object than in the background, from Lab histograms."""

    odds: np.ndarray  # per histogram bin, P(c | object) / (P(c | object) + P(c | background)), flat

    @classmethod
    def fit(cls, image: np.ndarray, object_pixels: np.ndarray, background: np.ndarray | None = None) -> ColourModel:
        """Learn from an RGB image: `object_pixels` (bool) against `background` (bool; default the whole image)."""
        index = _lab_index(image)
        nl, nab = _LAB_BINS
        shape, size = (nl, nab, nab), nl * nab * nab
        fg = _spread(np.bincount(index[object_pixels], minlength=size).reshape(shape).astype(np.float32))
        bg_index = index.ravel() if background is None else index[background]
        bg = np.bincount(bg_index, minlength=size).reshape(shape).astype(np.float32)
        fg /= max(float(fg.sum()), 1.0)
        bg /= max(float(bg.sum()), 1.0)
        return cls((fg / np.maximum(fg + bg, 1e-12)).ravel())

    def likeness(self, image: np.ndarray) -> np.ndarray:
        """Per pixel of an RGB image, the odds in [0, 1] that its colour belongs to the object."""
        return self.odds[_lab_index(image)]

    def blend(self, other: ColourModel, rate: float) -> ColourModel:
        return ColourModel((1 - rate) * self.odds + rate * other.odds)


def _seeded_mask(image: np.ndarray, positive: np.ndarray, negative: np.ndarray) -> np.ndarray:
    """GrabCut with sure foreground at `positive` and sure background at `negative`.

    Seeds do not say how far the object reaches, so the pixels whose colour is likelier among the
    seeds than in the image, connected to the seeds, give a first guess; its padded bounding box bounds
    the probable foreground, as a box prompt would.
    """
    h, w = positive.shape
    likely = ColourModel.fit(image, positive).likeness(image) > LIKELY
    likely = cv2.morphologyEx(likely.astype(np.uint8), cv2.MORPH_CLOSE, _disc(2)) > 0
    likely = keep_components(likely & ~negative, positive) | positive
    x1, y1, x2, y2 = _padded_box(likely, 4)
    pad_x, pad_y = round(WINDOW_PAD * (x2 - x1)), round(WINDOW_PAD * (y2 - y1))
    for _ in range(3):
        x1, y1, x2, y2 = max(0, x1 - pad_x), max(0, y1 - pad_y), min(w, x2 + pad_x), min(h, y2 + pad_y)
        labels = np.full((h, w), cv2.GC_BGD, np.uint8)
        labels[y1:y2, x1:x2] = np.where(likely[y1:y2, x1:x2], cv2.GC_PR_FGD, cv2.GC_PR_BGD)
        labels[negative] = cv2.GC_BGD
        labels[positive] = cv2.GC_FGD
        fg = keep_components(_grabcut(image, labels, INIT_ITERATIONS), positive)
        # The first guess can fall short of the object: widen the window while the object reaches
        # one of its sides (other than the image border).
        if not ((x1 > 0 and fg[:, x1].any()) or (y1 > 0 and fg[y1, :].any())
                or (x2 < w and fg[:, x2 - 1].any()) or (y2 < h and fg[y2 - 1, :].any())):
            break
        pad_x, pad_y = max(4, (x2 - x1) // 2), max(4, (y2 - y1) // 2)
    # Refine in mask mode: relearn the colour models from the cleaned result.
    free = np.isin(labels, (cv2.GC_PR_FGD, cv2.GC_PR_BGD))
    labels[free] = np.where(fg[free], cv2.GC_PR_FGD, cv2.GC_PR_BGD)
    return _grabcut(image, labels, REFINE_ITERATIONS)


# -- public API ------------------------------------------------------------------------------------

def region_mask(image: np.ndarray, region: Region, store: ArtifactStore) -> np.ndarray:
    """The object a box, points or scribble points at in an RGB image, by GrabCut; bool [h, w]."""
    h, w = image.shape[:2]
    small, scale = _downscale(image)
    seeds: np.ndarray | None = None
    if isinstance(region, BoxRegion):
        fg = _box_mask(small, region, scale)
    elif isinstance(region, PointsRegion):
        fg, seeds = _points_mask(small, region, scale)
    elif isinstance(region, ScribbleRegion):
        scribble = store.get_mask(region.mask)
        if scribble.shape != (h, w):
            raise InvalidInput(f"scribble mask is {scribble.shape[1]}x{scribble.shape[0]}, the image {w}x{h}",
                               field="region", fix="draw the scribble on the same image")
        fg, seeds = _scribble_mask(small, scribble)
    else:
        raise InvalidInput(f"unknown region {type(region).__name__}", field="region",
                           fix="give a box, points or a scribble")
    fg = _cleanup(fg, seeds, 1)
    if not fg.any():
        raise InvalidInput(f"no object was found in the {region.kind} region", field="region",
                           fix=f"draw the {region.kind} closer around (or on) one object")
    return _upscale(fg, h, w)


def colour_mask(image: np.ndarray, colour: str) -> np.ndarray:
    """The largest object of a named colour (see `COLOURS`) in an RGB image; bool [h, w]."""
    if colour not in _HSV_RANGES:
        raise InvalidInput(f"unknown colour {colour!r}", field="command", fix=f"name one of {sorted(COLOURS)}")
    h, w = image.shape[:2]
    small, _ = _downscale(image)
    hsv = cv2.cvtColor(small, cv2.COLOR_RGB2HSV)
    hit = np.zeros(hsv.shape[:2], np.uint8)
    for (h_lo, h_hi), (s_lo, s_hi), (v_lo, v_hi) in _HSV_RANGES[colour]:
        hit |= cv2.inRange(hsv, (h_lo, s_lo, v_lo), (h_hi, s_hi, v_hi))
    radius = max(1, round(0.004 * max(small.shape[:2])))
    # Closing first joins an object split by highlights or noise; then the usual cleanup.
    closed = cv2.morphologyEx(hit, cv2.MORPH_CLOSE, _disc(radius)) > 0
    mask = _cleanup(closed, None, radius)
    if mask.sum() < max(16, 1e-4 * mask.size):  # a few stray pixels are not an object
        raise InvalidInput(f"no {colour} object was found in the image", field="command",
                           fix="name the colour the object has, or give a region (box, points or scribble)")
    return _upscale(mask, h, w)


def object_mask(image: np.ndarray, command: str, region: Region | None, store: ArtifactStore) -> np.ndarray:
    """The object a region points at, else the one the command names by colour; bool [h, w]."""
    if region is not None:
        return region_mask(image, region, store)
    colours = find_colours(command)
    if colours:
        return colour_mask(image, colours[0])
    raise InvalidInput(f"cannot tell which object {command!r} means: no region was given and the command "
                       "names no colour", field="region", fix=_NEEDS_PROMPT_FIX)


def refine_mask(image: np.ndarray, mask: np.ndarray, band: int, iterations: int = REFINE_ITERATIONS) -> np.ndarray:
    """GrabCut around a rough mask of an RGB image: its eroded core is sure object, outside its dilation
    sure background, the band between undecided; bool [h, w] (empty if GrabCut drops everything)."""
    mask = mask.astype(bool)
    band = max(1, int(band))
    core = cv2.erode(mask.astype(np.uint8), _disc(band)) > 0
    reach = cv2.dilate(mask.astype(np.uint8), _disc(band)) > 0
    labels = np.full(mask.shape, cv2.GC_BGD, np.uint8)
    labels[reach] = cv2.GC_PR_BGD
    labels[mask] = cv2.GC_PR_FGD
    labels[core] = cv2.GC_FGD
    return _grabcut(image, labels, iterations)


def mask_box(mask: np.ndarray) -> BoxRegion:
    """The bounding box of a non-empty mask, (x1, y1, x2, y2) with x2, y2 exclusive."""
    ys, xs = np.nonzero(mask)
    return BoxRegion(box=(int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1))


def segment_image(inp: SegmentImageInput, ctx: ToolContext) -> SegmentImageOutput:
    """Backend of image_segmentation: find the object, store its mask, report its box and area."""
    image = ctx.store.get_image(inp.image)
    how = f"{inp.region.kind} region" if inp.region is not None else "colour"
    ctx.progress(0.1, f"image_segmentation: segmenting from the {how}")
    mask = object_mask(image, inp.command, inp.region, ctx.store)
    ctx.progress(0.9, "image_segmentation: storing the mask")
    return SegmentImageOutput(backend="opencv", mask=ctx.store.put_mask(mask), box=mask_box(mask),
                              area=int(mask.sum()))
