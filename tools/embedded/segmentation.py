"""Image segmentation with OpenCV: GrabCut from a box, points or a scribble, or a named colour's pixels.

GrabCut decides on a copy whose longest side is at most `CUT_SIDE` pixels; the mask is then
upsampled to at most `MAX_SIDE` pixels, where a watershed snaps its edge onto the image's edges, and to the
image's size, so a large photo costs about what a small one does. Every result is one object: the component
the prompt points at (a box: the largest), holes filled, specks dropped.

A box is taken to be drawn around the object (Lempitsky et al.'s tight-box prior): where the mask stops short
of a side, the cheapest way through object-like pixels to that side is added as sure object and GrabCut runs
again. Points and scribbles say where the object is, not how far it reaches: a window is grown around them on
a small copy until the object found in it stops at its sides and agrees with every seed; seeds left in separate
pieces are joined by the cheapest path between them.
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

from .masks import fill_holes, keep_components
from .referring import referred_mask

MAX_SIDE = 640
"""Masks are drawn on a copy no larger than this on its longest side, then upsampled."""
CUT_SIDE = 320
"""GrabCut decides on a copy no larger than this; its edge is then snapped to the image's edges at MAX_SIDE."""

INIT_ITERATIONS = 5
REFINE_ITERATIONS = 2
MIN_SAMPLES = 16  # GrabCut's 5-component colour models need a few pixels on each side
RNG_SEED = 0  # of OpenCV's RNG before each GrabCut
CROP_MARGIN, CROP_MARGIN_MIN = 0.3, 16  # background kept around the undecided pixels, relative and least

# A box: the tight-box prior.
REACH_BAND = 0.04  # a tight box: the object comes this close (relative to the box's side) to each of its sides
REACH_ROUNDS = 2
MAX_PATH_COST = 0.5  # a path's mean cost: its pixels on average about as object-like as background-like, or more
PATH_SIDE = 160  # cheapest paths are searched on a copy no larger than this

# Points and scribbles: the window around the seeds.
SEED_COLOUR = 0.02  # a colour the seeds have: its bin holds this fraction of the seeds' commonest bin's count
COMPACT = 0.3  # seeds' colours around them filling less of their bounding box than this have leaked
GROW_SIDE = 160  # the window around seeds is first found on a copy no larger than this
GROW_ROUNDS, GROW_ITERATIONS = 6, 3
AROUND = 0.025  # how far around the seeds (relative to the image's longer side) GrabCut should agree with them
AGREE = 0.25  # of the pixels just around a seed in the seeds' colours, at least this many end up in the object
WINDOW_PAD = 0.15  # the object found on the small copy, padded by this fraction, bounds the cut at CUT_SIDE
WIDEN_ROUNDS = 2  # times that box may widen where the cut reaches its sides or drops a seed's surroundings

_FG_LABELS = (cv2.GC_FGD, cv2.GC_PR_FGD)


_NEEDS_PROMPT_FIX = (
    "give a region (a box, points or a scribble on the object), name its colour in the command "
    "('segment the red object'), or configure a segmentation model (VITRON_MODELS_FILE)"
)


# -- helpers ---------------------------------------------------------------------------------------

def _disc(radius: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))


def _downscale(image: np.ndarray, side: int = MAX_SIDE) -> tuple[np.ndarray, float]:
    """The image shrunk so its longest side is at most `side`, and the factor applied."""
    h, w = image.shape[:2]
    scale = min(1.0, side / max(h, w))
    if scale == 1.0:
        return image, 1.0
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA), scale


def _upscale(mask: np.ndarray, height: int, width: int) -> np.ndarray:
    if mask.shape == (height, width):
        return mask
    # Linear interpolation of the 0/1 mask then a 0.5 cut gives smooth edges instead of blocky ones.
    return cv2.resize(mask.astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR) > 0.5


def _cleanup(mask: np.ndarray, seeds: np.ndarray | None, radius: int) -> np.ndarray:
    """Opening (drops specks and thin bridges, but not the seeds' own pixels: a path joining two parts stays), the
    seeded or largest component, holes filled."""
    opened = cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_OPEN, _disc(radius)) > 0 if radius else mask
    if not opened.any():  # a thin object: keep it rather than erase it
        opened = mask
    if seeds is not None:
        opened |= mask & seeds
    return fill_holes(keep_components(opened, seeds))


@dataclass(frozen=True)
class _Cut:
    """A GrabCut result: the foreground (bool, image-sized) and the two colour models it ended with."""

    fg: np.ndarray
    bgd: np.ndarray | None = None  # OpenCV's 1x65 GMM arrays; None when GrabCut did not run
    fgd: np.ndarray | None = None

    def log_odds(self, image: np.ndarray) -> np.ndarray:
        """Per pixel, log p(colour | object) - log p(colour | background) under the two GMMs."""
        return _gmm_log_likelihood(self.fgd, image) - _gmm_log_likelihood(self.bgd, image)


def _gmm_log_likelihood(model: np.ndarray, image: np.ndarray) -> np.ndarray:
    """Log-likelihood of each pixel under one of GrabCut's 5-component GMMs (weights, means, covariances)."""
    m = model.ravel()
    weights, means, covs = m[:5], m[5:20].reshape(5, 3), m[20:65].reshape(5, 3, 3)
    x = image.reshape(-1, 3).astype(np.float64)
    total = np.zeros(len(x))
    for k in np.flatnonzero(weights > 0):
        cov = covs[k] + 0.01 * np.eye(3)  # as GrabCut regularises a flat component
        d = x - means[k]
        mahalanobis = np.einsum("ni,ij,nj->n", d, np.linalg.inv(cov), d)
        total += weights[k] * np.exp(-0.5 * mahalanobis) / np.sqrt((2 * np.pi) ** 3 * np.linalg.det(cov))
    return np.log(total + 1e-300).reshape(image.shape[:2])


def _grabcut(image: np.ndarray, labels: np.ndarray, iterations: int, *, rect: bool = False) -> _Cut:
    """GrabCut from a label map. Too few samples on a side: the labels as they are.

    Works on a crop around the undecided pixels plus a margin of background: the graph gets smaller
    and the background model learns from the object's surroundings rather than the whole image.
    `rect=True` starts from the bounding rectangle of the non-background labels (GC_INIT_WITH_RECT).
    """
    fg = np.isin(labels, _FG_LABELS)
    open_ = labels != cv2.GC_BGD
    if fg.sum() < MIN_SAMPLES or (~open_).sum() < MIN_SAMPLES:
        return _Cut(fg)
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
    return _Cut(out, bgd, fgd)


def _padded_box(mask: np.ndarray, pad: float) -> tuple[int, int, int, int]:
    """Bounding box (x1, y1, x2, y2, exclusive) of `mask`, grown by `pad` pixels and clipped to the image."""
    ys, xs = np.nonzero(mask)
    h, w = mask.shape
    return (max(0, int(xs.min() - pad)), max(0, int(ys.min() - pad)),
            min(w, int(xs.max() + 1 + pad)), min(h, int(ys.max() + 1 + pad)))


# -- prompts ---------------------------------------------------------------------------------------

def _box_mask(image: np.ndarray, region: BoxRegion, scale: float) -> tuple[np.ndarray, np.ndarray | None]:
    """GrabCut inside the box, then the parts it missed on the way to the box's sides; the mask and its seeds."""
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
        cut = _grabcut(image, labels, INIT_ITERATIONS)
    else:
        cut = _grabcut(image, labels, INIT_ITERATIONS, rect=True)
    fg = _cleanup(cut.fg, None, 1)
    if not fg.any():
        return fg, None
    fg, seeds = _reach_sides(image, labels, _Cut(fg, cut.bgd, cut.fgd), (x1, y1, x2, y2))
    # Refine in mask mode: relearn both colour models from the cleaned result, so background pixels
    # first taken into the object stop pulling the object model towards them.
    inside = labels != cv2.GC_BGD
    labels[inside] = np.where(fg[inside], cv2.GC_PR_FGD, cv2.GC_PR_BGD)
    if seeds is not None:
        labels[seeds] = cv2.GC_FGD
    return _grabcut(image, labels, REFINE_ITERATIONS).fg, seeds


def _reach_sides(image: np.ndarray, labels: np.ndarray, cut: _Cut,
                 box: tuple[int, int, int, int]) -> tuple[np.ndarray, np.ndarray | None]:
    """The tight-box prior by pinpointing (Lempitsky et al., ICCV 2009): a box drawn around an object touches it
    on every side, so where the mask stops short of a side, the cheapest path through object-like pixels from
    the mask to that side becomes sure foreground and GrabCut runs again. The mask and the seeds (None if none).

    A mask short of all four sides is taken for a loose box, not a missed part; a path through pixels that look
    more like the background than the object is not taken.
    """
    x1, y1, x2, y2 = box
    if cut.fgd is None or min(x2 - x1, y2 - y1) < 8:
        return cut.fg, None
    fg = cut.fg
    band_x, band_y = max(2, round(REACH_BAND * (x2 - x1))), max(2, round(REACH_BAND * (y2 - y1)))
    seeds = np.zeros_like(fg)
    for _ in range(REACH_ROUNDS):
        ys, xs = np.nonzero(fg[y1:y2, x1:x2])
        if xs.size == 0:
            break
        short = {"left": xs.min() > band_x, "top": ys.min() > band_y,
                 "right": xs.max() < x2 - x1 - 1 - band_x, "bottom": ys.max() < y2 - y1 - 1 - band_y}
        if not any(short.values()) or all(short.values()):
            break
        sides = {"left": np.s_[:, :band_x], "right": np.s_[:, x2 - x1 - band_x :],
                 "top": np.s_[:band_y, :], "bottom": np.s_[y2 - y1 - band_y :, :]}
        bands = []
        for side in (side for side, miss in short.items() if miss):
            band = np.zeros((y2 - y1, x2 - x1), bool)
            band[sides[side]] = True
            bands.append(band)
        # From the mask's core: what was found stays found.
        core = cv2.erode(fg.astype(np.uint8), _disc(max(1, round(0.01 * max(x2 - x1, y2 - y1))))) > 0
        core = core if core.any() else fg
        if not _add_paths(image, cut, core, bands, (x1, y1, x2, y2), seeds):
            break
        fg, cut = _recut(image, labels, fg, seeds, core)
        if cut.fgd is None:
            break
    return fg, (seeds if seeds.any() else None)


def _add_paths(image: np.ndarray, cut: _Cut, sources: np.ndarray, targets: list[np.ndarray],
               window: tuple[int, int, int, int], seeds: np.ndarray, max_cost: float = MAX_PATH_COST) -> bool:
    """Draw into `seeds` the cheapest paths inside `window` from `sources` to each target (bool, the window's size),
    through pixels GrabCut's models find object-like; whether any path was cheap enough (`max_cost`) to draw."""
    x1, y1, x2, y2 = window
    # Thick enough to cover the rounding of a path found on a smaller copy: its ends still touch what they join.
    thickness = max(3, round(0.01 * max(x2 - x1, y2 - y1)))
    # Object-likeness in [0, 1] from GrabCut's own colour models; a path costs what it crosses.
    odds = np.clip(cut.log_odds(image[y1:y2, x1:x2]), -30, 30)
    cost = (1.0 - 1.0 / (1.0 + np.exp(-odds)) + 0.02).astype(np.float32)
    paths = _cheapest_paths(cost, sources[y1:y2, x1:x2], targets, max_cost)
    for path in paths:
        cv2.polylines(seeds.view(np.uint8), [path + np.int32([x1, y1])], False, 1, thickness)
    return bool(paths)


def _recut(image: np.ndarray, labels: np.ndarray, fg: np.ndarray, seeds: np.ndarray,
           keep: np.ndarray) -> tuple[np.ndarray, _Cut]:
    """GrabCut again from the mask so far, with the seeds and `keep` (what was found stays found) sure object."""
    relabelled = labels.copy()
    free = np.isin(labels, (cv2.GC_PR_FGD, cv2.GC_PR_BGD))
    relabelled[free] = np.where(fg[free], cv2.GC_PR_FGD, cv2.GC_PR_BGD)
    relabelled[seeds | keep] = cv2.GC_FGD
    cut = _grabcut(image, relabelled, INIT_ITERATIONS)
    return _cleanup(cut.fg, seeds | keep, 1), cut


def _cheapest_paths(cost: np.ndarray, sources: np.ndarray, targets: list[np.ndarray],
                    max_cost: float) -> list[np.ndarray]:
    """For each target (bool, `cost`'s shape), the cheapest 8-connected path from `sources` to it, as int32 (x, y)
    vertices; only paths whose mean cost is at most `max_cost`."""
    h, w = cost.shape
    factor = min(1.0, PATH_SIDE / max(h, w))  # searched on a small copy: the path only needs to be about right
    sh, sw = max(1, round(h * factor)), max(1, round(w * factor))

    def small(mask: np.ndarray) -> np.ndarray:
        return cv2.resize(mask.astype(np.uint8), (sw, sh), interpolation=cv2.INTER_AREA) > 0

    small_cost = cv2.resize(cost, (sw, sh), interpolation=cv2.INTER_AREA)
    small_sources = small(sources)
    if not small_sources.any():
        return []
    dist = _geodesic(small_cost, small_sources)
    paths = []
    for target in targets:
        reach = np.where(small(target), dist, np.inf)
        end = np.unravel_index(int(np.argmin(reach)), reach.shape)
        if not np.isfinite(reach[end]):
            continue
        path = _trace(dist, small_cost, end)
        if dist[end] / len(path) > max_cost:
            continue
        paths.append(np.round((np.array(path, np.float64)[:, ::-1] + 0.5) / factor - 0.5).astype(np.int32))
    return paths


_STEPS = [(dy, dx, math.hypot(dy, dx)) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if dy or dx]


def _geodesic(cost: np.ndarray, sources: np.ndarray) -> np.ndarray:
    """Least total cost from a source to each pixel, a step costing its length times the cost of the pixel entered.

    Bellman-Ford sweeps over whole arrays: each sweep lets every path grow by one step, so it converges in as many
    sweeps as the longest cheapest path has steps; on a copy of at most PATH_SIDE pixels a side that stays cheap.
    """
    h, w = cost.shape
    dist = np.where(sources, 0.0, np.inf).astype(np.float32)
    for _ in range(4 * (h + w)):
        padded = np.pad(dist, 1, constant_values=np.inf)
        best = dist.copy()
        for dy, dx, step in _STEPS:
            np.minimum(best, padded[1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w] + step * cost, out=best)
        if np.array_equal(best, dist):
            break
        dist = best
    return dist


def _trace(dist: np.ndarray, cost: np.ndarray, end: tuple[int, int]) -> list[tuple[int, int]]:
    """The cheapest path back from `end` to a source of `dist` (where it is 0), as (y, x) pixels."""
    h, w = dist.shape
    y, x = int(end[0]), int(end[1])
    path = [(y, x)]
    for _ in range(h * w):
        if dist[y, x] <= 0:
            break
        best, step_to = np.inf, None
        for dy, dx, step in _STEPS:
            ny, nx = y + dy, x + dx
            if 0 <= ny < h and 0 <= nx < w and dist[ny, nx] + step * cost[y, x] < best:
                best, step_to = dist[ny, nx] + step * cost[y, x], (ny, nx)
        if step_to is None or dist[step_to] >= dist[y, x]:
            break
        y, x = step_to
        path.append((y, x))
    return path


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
    return _seeded_mask(image, positive, negative)


def _scribble_mask(image: np.ndarray, scribble: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    h, w = image.shape[:2]
    if scribble.shape != (h, w):
        # INTER_AREA keeps any pixel a thin stroke touched; the stroke stays a stroke when shrunk.
        scribble = cv2.resize(scribble.astype(np.float32), (w, h), interpolation=cv2.INTER_AREA) > 0.05
    if not scribble.any():
        raise InvalidInput("the scribble mask is empty", field="region", fix="paint over the object")
    return _seeded_mask(image, scribble, np.zeros((h, w), bool))


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


def _seed_colours(image: np.ndarray, seeds: np.ndarray, other: np.ndarray | None = None) -> np.ndarray:
    """The pixels of `other` (default `image`) whose colour the seeds in `image` have: their Lab histogram bin,
    spread to its neighbours, holds at least SEED_COLOUR of the seeds' commonest bin's count. Unlike odds against
    the whole image, this does not fade when the object fills most of the photo.

    Colours are sampled inside the seeds, off their rim: a click near a thin object's edge would take in the
    background's colour too.
    """
    inner = cv2.erode(seeds.astype(np.uint8), _disc(1)) > 0
    index = _lab_index(image)
    nl, nab = _LAB_BINS
    counts = np.bincount(index[inner if inner.any() else seeds], minlength=nl * nab * nab)
    present = _spread(counts.reshape(nl, nab, nab).astype(np.float32)).ravel()
    return present[index if other is None else _lab_index(other)] >= SEED_COLOUR * present.max()


def _seeded_mask(image: np.ndarray, positive: np.ndarray, negative: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """GrabCut with sure foreground at `positive` and sure background at `negative`, inside a window found for
    them first; seeds left in separate pieces are joined by the cheapest path between them. The mask and its sure
    foreground (the seeds and any path)."""
    found = _seed_object(image, positive, negative)
    # What the small copy found, padded as a box drawn around it would be, bounds the cut at this size: the seeds'
    # colours only began it, so the object's other colours come back here.
    h, w = positive.shape
    ys, xs = np.nonzero(found | positive)
    pad = max(4.0, WINDOW_PAD * max(np.ptp(xs), np.ptp(ys)))
    window = (max(0, int(xs.min() - pad)), max(0, int(ys.min() - pad)),
              min(w, int(xs.max() + 1 + pad)), min(h, int(ys.max() + 1 + pad)))
    likes = _seed_colours(image, positive)
    arounds = _surroundings(positive, likes)
    # First the cautious cut: only what was found and the seeds' colours start as object. Kept if it agrees with
    # every seed and stays inside the box; otherwise the object has colours that neither showed, and the box
    # starts as object (as a drawn box would).
    labels = _window_labels(window, positive, negative, likes, guess=found | likes)
    cut = _grabcut(image, labels, INIT_ITERATIONS)
    fg = keep_components(cut.fg, positive)
    cautious = not (any(_touches(fg, window)) or any(fg[around].mean() < AGREE for around in arounds))
    for _ in range(0 if cautious else WIDEN_ROUNDS + 1):
        labels = _window_labels(window, positive, negative, likes)
        cut = _grabcut(image, labels, INIT_ITERATIONS)
        fg = keep_components(cut.fg, positive)
        # The object's other colours can carry it past that box: widen it on each side the cut reaches, and on
        # every side if the cut drops what is around a seed (that part's colour lies outside the box too).
        x1, y1, x2, y2 = window
        dx, dy = max(4, round(WINDOW_PAD * 2 * (x2 - x1))), max(4, round(WINDOW_PAD * 2 * (y2 - y1)))
        every = any(fg[around].mean() < AGREE for around in arounds)
        left, top, right, bottom = _touches(fg, window)
        wider = (max(0, x1 - dx) if x1 > 0 and (every or left) else x1,
                 max(0, y1 - dy) if y1 > 0 and (every or top) else y1,
                 min(w, x2 + dx) if x2 < w and (every or right) else x2,
                 min(h, y2 + dy) if y2 < h and (every or bottom) else y2)
        if wider == window:
            break
        window = wider
    seeds = positive.copy()
    fg, cut = _join_seeds(image, labels, cut, positive, seeds, window)
    # Refine in mask mode: relearn the colour models from the cleaned result.
    free = np.isin(labels, (cv2.GC_PR_FGD, cv2.GC_PR_BGD))
    labels[free] = np.where(fg[free], cv2.GC_PR_FGD, cv2.GC_PR_BGD)
    labels[seeds] = cv2.GC_FGD
    cut = _grabcut(image, labels, REFINE_ITERATIONS)
    fg, _ = _join_seeds(image, labels, cut, positive, seeds, window)
    return fg, seeds


def _join_seeds(image: np.ndarray, labels: np.ndarray, cut: _Cut, positive: np.ndarray, seeds: np.ndarray,
                window: tuple[int, int, int, int]) -> tuple[np.ndarray, _Cut]:
    """The cut's pieces that hold seeds; if there are several, paths from the largest piece's seeds to the others'
    are added to `seeds` (sure foreground) and GrabCut runs again, so that the seeds end in one piece."""
    fg = keep_components(cut.fg, positive)
    _, parts = cv2.connectedComponents(fg.astype(np.uint8))
    touched = [i for i in np.unique(parts[positive]) if i > 0]
    if len(touched) < 2 or cut.fgd is None:
        return fg, cut
    sizes = [int((parts == i).sum()) for i in touched]
    main = positive & (parts == touched[int(np.argmax(sizes))])
    x1, y1, x2, y2 = window
    others = [(positive & (parts == i))[y1:y2, x1:x2] for i in touched if not (main & (parts == i)).any()]
    # Seed to seed, so that the seeds and the paths (all sure foreground) are one piece whatever GrabCut does next;
    # the seeds say the pieces are one object, so they are joined however unlike it the way between them looks.
    if not _add_paths(image, cut, main, others, window, seeds, max_cost=math.inf):
        return fg, cut
    return _recut(image, labels, fg, seeds, cv2.erode(fg.astype(np.uint8), _disc(1)) > 0)


def _touches(mask: np.ndarray, window: tuple[int, int, int, int]) -> tuple[bool, bool, bool, bool]:
    """Whether `mask` reaches the window's left, top, right, bottom side, where that side is not the image's."""
    h, w = mask.shape
    x1, y1, x2, y2 = window
    return (x1 > 0 and bool(mask[y1:y2, x1].any()), y1 > 0 and bool(mask[y1, x1:x2].any()),
            x2 < w and bool(mask[y1:y2, x2 - 1].any()), y2 < h and bool(mask[y2 - 1, x1:x2].any()))


def _surroundings(seeds: np.ndarray, likes: np.ndarray) -> list[np.ndarray]:
    """Per seed (each piece of `seeds`), the pixels of the seeds' colours (`likes`) just around it: a cut that
    keeps the seed but drops most of these disagrees with it."""
    h, w = seeds.shape
    count, pieces = cv2.connectedComponents(seeds.astype(np.uint8))
    reach = _disc(max(2, round(AROUND * max(h, w))))
    arounds = [(cv2.dilate((pieces == i).astype(np.uint8), reach) > 0) & ~seeds & likes for i in range(1, count)]
    return [around for around in arounds if around.any()]


def _window_labels(window: tuple[int, int, int, int], positive: np.ndarray, negative: np.ndarray,
                   likes: np.ndarray, guess: np.ndarray | None = None) -> np.ndarray:
    """GrabCut's labels for seeds in a window: probable object inside (where `guess` is, if given: else probable
    background), sure background outside. Where the window meets the image's border there is no outside: the rim
    there, where the seeds' colours are not (`likes`), stands in for the background."""
    h, w = positive.shape
    x1, y1, x2, y2 = window
    labels = np.full((h, w), cv2.GC_BGD, np.uint8)
    labels[y1:y2, x1:x2] = cv2.GC_PR_FGD if guess is None else np.where(guess[y1:y2, x1:x2], cv2.GC_PR_FGD,
                                                                         cv2.GC_PR_BGD)
    rim = np.zeros((h, w), bool)
    rim[y1:y2, 0] = x1 == 0
    rim[y1:y2, -1] |= x2 == w
    rim[0, x1:x2] |= y1 == 0
    rim[-1, x1:x2] |= y2 == h
    labels[rim] = np.where(likes[rim], cv2.GC_PR_BGD, cv2.GC_BGD)
    labels[negative] = cv2.GC_BGD
    labels[positive] = cv2.GC_FGD
    return labels


def _seed_object(image: np.ndarray, positive: np.ndarray, negative: np.ndarray) -> np.ndarray:
    """The seeds' object as found on a small copy (bool, the image's size): GrabCut from the seeds' colours in a
    window that starts around the seeds (around their colours connected to them, unless those leak far) and grows
    on each side the object found in it reaches, and on every side while the cut disagrees with a seed: the pixels
    just around it, of its colours, end up background because the window is inside the object, whose colours
    are all around it and so in the background's model."""
    h, w = positive.shape
    factor = min(1.0, GROW_SIDE / max(h, w))
    sh, sw = max(1, round(h * factor)), max(1, round(w * factor))
    small = cv2.resize(image, (sw, sh), interpolation=cv2.INTER_AREA)
    pos = cv2.resize(positive.astype(np.uint8), (sw, sh), interpolation=cv2.INTER_AREA) > 0
    if not pos.any():  # seeds thinner than a pixel of the small copy
        pos = cv2.resize(positive.astype(np.uint8), (sw, sh), interpolation=cv2.INTER_NEAREST) > 0
    neg = cv2.resize(negative.astype(np.uint8), (sw, sh), interpolation=cv2.INTER_AREA) > 0
    likes = _seed_colours(image, positive, small)
    arounds = _surroundings(pos, likes)
    # First guess: the seeds' colours connected to them (a plain object is all of it), unless that is mostly gaps
    # in its bounding box (it leaked along thin structures of a similar colour): then just around the seeds.
    guess = keep_components(likes & ~neg, pos) | pos
    ys, xs = np.nonzero(guess)
    if guess.sum() < COMPACT * (np.ptp(xs) + 1) * (np.ptp(ys) + 1):
        ys, xs = np.nonzero(pos)
    pad = max(0.05 * max(sh, sw), 0.15 * max(np.ptp(xs), np.ptp(ys)))
    x1, y1 = max(0, int(xs.min() - pad)), max(0, int(ys.min() - pad))
    x2, y2 = min(sw, int(xs.max() + 1 + pad)), min(sh, int(ys.max() + 1 + pad))
    fg = pos
    for round_ in range(GROW_ROUNDS + 1):
        labels = _window_labels((x1, y1, x2, y2), pos, neg, likes, guess=likes)
        fg = keep_components(_grabcut(small, labels, GROW_ITERATIONS).fg, pos)
        grow = dict(zip(("left", "top", "right", "bottom"), _touches(fg, (x1, y1, x2, y2)), strict=True))
        if any(fg[around].mean() < AGREE for around in arounds):  # inside the object: its colours are all around
            grow = dict.fromkeys(grow, True)
        if (x1, y1, x2, y2) == (0, 0, sw, sh) or not any(grow.values()) or round_ == GROW_ROUNDS:
            break
        dx, dy = max(2, (x2 - x1) // 2), max(2, (y2 - y1) // 2)
        x1, x2 = (max(0, x1 - dx) if grow["left"] else x1), (min(sw, x2 + dx) if grow["right"] else x2)
        y1, y2 = (max(0, y1 - dy) if grow["top"] else y1), (min(sh, y2 + dy) if grow["bottom"] else y2)
    return _upscale(fg, h, w)


# -- public API ------------------------------------------------------------------------------------

def region_mask(image: np.ndarray, region: Region, store: ArtifactStore) -> np.ndarray:
    """The object a box, points or scribble points at in an RGB image, by GrabCut; bool [h, w]."""
    h, w = image.shape[:2]
    small, scale = _downscale(image)
    coarse, coarse_scale = _downscale(small, CUT_SIDE)
    seeds: np.ndarray | None = None
    if isinstance(region, BoxRegion):
        fg, seeds = _box_mask(coarse, region, scale * coarse_scale)
    elif isinstance(region, PointsRegion):
        fg, seeds = _points_mask(coarse, region, scale * coarse_scale)
    elif isinstance(region, ScribbleRegion):
        scribble = store.get_mask(region.mask)
        if scribble.shape != (h, w):
            raise InvalidInput(f"scribble mask is {scribble.shape[1]}x{scribble.shape[0]}, the image {w}x{h}",
                               field="region", fix="draw the scribble on the same image")
        fg, seeds = _scribble_mask(coarse, scribble)
    else:
        raise InvalidInput(f"unknown region {type(region).__name__}", field="region",
                           fix="give a box, points or a scribble")
    fg = _cleanup(fg, seeds, 1)
    if not fg.any():
        raise InvalidInput(f"no object was found in the {region.kind} region", field="region",
                           fix=f"draw the {region.kind} closer around (or on) one object")
    if coarse_scale < 1.0:
        sh, sw = small.shape[:2]
        up = _upscale(fg, sh, sw)
        fg = _snap_to_edges(small, up, max(2, round(1.5 / coarse_scale)))
        if seeds is not None:  # a thin path joining two parts stays, so the object stays one piece
            seeds = _upscale(seeds, sh, sw) & up
            fg |= seeds
        fg = fill_holes(keep_components(fg, seeds))
    return _upscale(fg, h, w)


def _snap_to_edges(image: np.ndarray, mask: np.ndarray, band: int) -> np.ndarray:
    """`mask` with its edge moved, within `band` pixels, onto the image's edges: a watershed flooded from the
    mask's eroded core and from the background beyond its dilation meets where the colour changes most."""
    if not mask.any():
        return mask
    core = cv2.erode(mask.astype(np.uint8), _disc(band)) > 0
    if not core.any():  # thinner than the band: nothing to snap from
        return mask
    reach = cv2.dilate(mask.astype(np.uint8), _disc(band)) > 0
    markers = np.where(reach, 0, 1).astype(np.int32)
    markers[core] = 2
    cv2.watershed(np.ascontiguousarray(image[..., ::-1]), markers)
    # Watershed lines (-1) lie between the two floods: counted in, as the mask's outline. OpenCV also marks the
    # image's border -1: there the mask stays as it was.
    snapped = (markers == 2) | ((markers == -1) & reach)
    snapped[[0, -1], :] = mask[[0, -1], :]
    snapped[:, [0, -1]] = mask[:, [0, -1]]
    return snapped


def object_mask(image: np.ndarray, command: str, region: Region | None, store: ArtifactStore) -> np.ndarray:
    """The object a region points at, else the one the command names by colour, place, size or order; bool [h, w]."""
    if region is not None:
        return region_mask(image, region, store)
    if (referred := referred_mask(image, command)) is not None:  # "the blue one on the left": tools.referring
        return referred
    raise InvalidInput(f"cannot tell which object {command!r} means: no region was given and the command "
                       "names no colour of it", field="region", fix=_NEEDS_PROMPT_FIX)


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
    return _grabcut(image, labels, iterations).fg


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
