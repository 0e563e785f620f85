"""The area a remove fills: the object's mask grown over what the object leaves around itself.

A mask, drawn or segmented, stops at the object's outline; the photo does not. The object's anti-aliased edge, its
halo and the shadow it casts on what it stands on lie just outside, and an inpainting that keeps them as its border
extends them inwards (a saucer's shadow becomes a dark blob where the saucer was). Inpainting pipelines grow the
hole first (LaMa's and Inpaint-Anything's dilated masks); here the growth is scaled to the object, and the contact
shadow is found as dark pixels attached to the object, much darker than the surroundings a little farther out.
"""

from __future__ import annotations

import cv2
import numpy as np

EDGE = 0.025
"""The soft edge and halo: the mask grows by this share of the object's size (its area's equivalent diameter)."""
MIN_EDGE = 0.006  # ...and by at least this share of the image's longer side (a small object's edge is still blurred)
REACH = 0.35
"""A contact shadow is looked for up to this share of the object's size away from it."""
SHADOW, PENUMBRA = 0.4, 0.6
"""A shadow is an area of pixels darker than PENUMBRA times the lit surroundings' brightness, most of them darker
than SHADOW times it."""
FADE = 0.3  # ...whose brightness grows with the distance from the object at least this much (a correlation)
LIT = 0.5  # surroundings darker than this share of their median are not lit (the shadow itself, say)
BOUNDED = 0.1  # a shadow has at most this share of its dark area farther than REACH from the object
SOFT = 0.14
"""A shadow's outer edge rises by at most this share of its step in brightness per pixel (on the image blurred by
one pixel, a sharp edge rises by about 0.4 of it, a penumbra ten pixels wide by 0.1)."""


def removal_hole(image: np.ndarray, mask: np.ndarray, *, shadow: bool = True) -> np.ndarray:
    """The pixels a remove replaces (bool): `mask` grown over its soft edge and, with `shadow`, over the contact
    shadow the object casts. Pixels outside it keep their values."""
    mask = mask.astype(bool)
    h, w = mask.shape
    size = 2.0 * np.sqrt(mask.sum() / np.pi)
    edge = max(2, round(EDGE * size), round(MIN_EDGE * max(h, w)))
    hole = cv2.dilate(mask.astype(np.uint8), _disc(edge)) > 0
    if shadow and not hole.all():
        hole |= contact_shadow(image, hole, reach=max(2 * edge, round(REACH * size)), edge=edge)
    # Slivers narrower than the edge between parts of the hole, or between it and the image's border, go too: too
    # thin to be filled from, they would stay as stray bits of the object or its shadow.
    pad = edge + 1
    closed = cv2.morphologyEx(np.pad(hole.astype(np.uint8), pad, constant_values=1), cv2.MORPH_CLOSE, _disc(edge))
    near = cv2.dilate(hole.astype(np.uint8), _disc(edge)) > 0  # (not the image's corners, which a closing rounds)
    return hole | ((closed[pad:-pad, pad:-pad] > 0) & near)


def contact_shadow(image: np.ndarray, hole: np.ndarray, *, reach: int, edge: int) -> np.ndarray:
    """The shadow the object in `hole` casts around it (bool, grown by `edge` over its soft border; empty if none).

    A dark area attached to the hole is taken as its shadow only where all of these hold: it is much darker than the
    lit surface around it; it ends within `reach` of the object (a dark surface, a black background, goes on); it
    grows lighter away from the object; and its edge away from the object is soft (a penumbra), not the sharp
    outline of another dark object. A dark object with all of these next to the object goes with it."""
    lum = cv2.GaussianBlur(image.astype(np.float32) @ np.float32([0.299, 0.587, 0.114]), (0, 0), 1.0)
    dist = cv2.distanceTransform((~hole).astype(np.uint8), cv2.DIST_L2, 5)
    ring = (dist > 0) & (dist <= 2 * reach)  # the surroundings, out past where a shadow may reach
    if not ring.any():
        return np.zeros_like(hole)
    reference = _lit_brightness(lum, ring, reach)
    # Dark areas out to twice the reach, so that one that goes on past the reach shows it.
    dark = ring & (lum < PENUMBRA * reference)
    # Thin dark lines (wood grain, a crack, a gap) are no shadow: an opening keeps areas only.
    dark = cv2.morphologyEx(dark.astype(np.uint8), cv2.MORPH_OPEN, _disc(max(1, edge // 2))) > 0
    count, labels = cv2.connectedComponents(dark.astype(np.uint8), connectivity=8)
    if count <= 1:
        return np.zeros_like(hole)
    index = np.arange(count)
    area = np.bincount(labels[dark], minlength=count)
    attached = np.bincount(labels[dark & (dist <= 2)], minlength=count) > 0
    beyond = np.bincount(labels[dark & (dist > reach)], minlength=count) / np.maximum(area, 1)
    keep = attached & (beyond <= BOUNDED) & (index > 0)
    slope = np.hypot(cv2.Sobel(lum, cv2.CV_32F, 1, 0, ksize=3), cv2.Sobel(lum, cv2.CV_32F, 0, 1, ksize=3)) / 8
    keep[keep] = [_cast(lum, slope, dist, labels == i, hole, reference) for i in index[keep]]
    if not keep.any():
        return np.zeros_like(hole)
    found = keep[labels] & (dist <= reach)
    # The penumbra fades into the lit surface: take the shadow's border too, and close the gaps its highlights leave.
    found = cv2.morphologyEx(found.astype(np.uint8), cv2.MORPH_CLOSE, _disc(edge))
    return (cv2.dilate(found, _disc(edge)) > 0) & ~hole


def _lit_brightness(lum: np.ndarray, ring: np.ndarray, reach: int) -> np.ndarray:
    """How bright the surroundings are near each pixel where they are lit: a local mean over `ring` leaving out its
    dark part (a shadow would lower its own reference). Where the ring is dark throughout (an object on a black
    cloth), its plain mean: nothing there is much darker than its surroundings."""
    lit = ring & (lum >= LIT * float(np.median(lum[ring])))
    lit_sum, lit_count = _box_sum(lum * lit, reach), _box_sum(lit.astype(np.float32), reach)
    ring_sum, ring_count = _box_sum(lum * ring, reach), _box_sum(ring.astype(np.float32), reach)
    return np.where(lit_count > 0.05 * ring_count, lit_sum / np.maximum(lit_count, 1e-6),
                    ring_sum / np.maximum(ring_count, 1e-6))


def _cast(lum: np.ndarray, slope: np.ndarray, dist: np.ndarray, area: np.ndarray, hole: np.ndarray,
          reference: np.ndarray) -> bool:
    """Whether the dark `area` next to the hole looks like a shadow the object casts: much darker than the lit
    surface (most of it under SHADOW times its brightness), lighter the farther it lies from the object (a contact
    shadow fades out; a dark object next to it does not), and fading out at its edge away from the object (the
    brightness `slope` there, for the step from the area's brightness to the lit surface's, is that of a blur
    several pixels wide)."""
    ratio = lum[area] / np.maximum(reference[area], 1e-6)
    if float(np.median(ratio)) > SHADOW:
        return False
    near, light = dist[area], lum[area]
    if near.std() == 0 or light.std() == 0 or np.corrcoef(near, light)[0, 1] < FADE:
        return False
    outer = (cv2.dilate(area.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0) & ~area & ~hole
    if not outer.any():  # nothing but the hole and the image's border around it
        return False
    step = float(np.median(reference[area]) - np.median(lum[area]))
    return float(np.median(slope[outer])) <= SOFT * max(step, 1.0)


def _box_sum(values: np.ndarray, radius: int) -> np.ndarray:
    """Sum of `values` over the (2 radius + 1)-wide square around each pixel; a box filter costs the same at any
    radius."""
    k = (2 * radius + 1, 2 * radius + 1)
    return cv2.boxFilter(values.astype(np.float32), -1, k, normalize=False, borderType=cv2.BORDER_CONSTANT)


def _disc(radius: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
