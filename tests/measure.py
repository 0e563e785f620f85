"""Measurements the tests make on pixels: hue, brightness, and masks grown or shrunk by a few pixels."""

from __future__ import annotations

import cv2
import numpy as np


def hue(rgb: np.ndarray) -> np.ndarray:
    """Hue in degrees of RGB uint8 colours (any leading shape)."""
    pixels = np.asarray(rgb, np.uint8).reshape(-1, 1, 3)
    return cv2.cvtColor(pixels, cv2.COLOR_RGB2HSV_FULL)[:, 0, 0].astype(float) * 360 / 256


def hue_gap(a: np.ndarray, b: float) -> np.ndarray:
    """Distance in degrees around the hue circle."""
    return np.abs((a - b + 180) % 360 - 180)


def luminance(rgb: np.ndarray) -> np.ndarray:
    return rgb.astype(float) @ [0.299, 0.587, 0.114]


def shrink(mask: np.ndarray, pixels: int = 2) -> np.ndarray:
    """The mask eroded by `pixels` (edges blur in codecs and in edits: tests look inside them)."""
    return cv2.erode(mask.astype(np.uint8), np.ones((2 * pixels + 1,) * 2, np.uint8)) > 0


def grow(mask: np.ndarray, pixels: int) -> np.ndarray:
    return cv2.dilate(mask.astype(np.uint8), np.ones((2 * pixels + 1,) * 2, np.uint8)) > 0


def changed(edited: np.ndarray, original: np.ndarray) -> np.ndarray:
    """The pixels an edit changed (bool)."""
    return (edited != original).any(axis=-1)


def ring(area: np.ndarray, pixels: int) -> np.ndarray:
    """The pixels within `pixels` of `area`, outside it."""
    dist = cv2.distanceTransform((~area).astype(np.uint8), cv2.DIST_L2, 5)
    return (dist > 0) & (dist <= pixels)


def dark_share(edited: np.ndarray, original: np.ndarray, darker: float = 0.35, around: int = 40) -> float:
    """Share of the changed pixels much darker (under `darker` times) than the median brightness of the original
    photo in a ring `around` pixels wide around them: a shadow or a dark rim carried into a fill shows here."""
    area = changed(edited, original)
    surroundings = float(np.median(luminance(original[ring(area, around)])))
    return float(np.mean(luminance(edited[area]) < darker * surroundings))


def copied_from(edited: np.ndarray, original: np.ndarray, source: np.ndarray, patch: int = 7,
                step: int = 6) -> float:
    """Share of the changed area that looks copied from `source` (bool, pixels of the original): for patches
    sampled `step` pixels apart inside the changed area, how often the closest patch among those of the original
    that the change did not touch is centred on `source` (at half size, sums of squared differences)."""
    area = changed(edited, original)
    out, photo = (cv2.resize(image, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA).astype(np.float32)
                  for image in (edited, original))
    size = (out.shape[1], out.shape[0])
    area = cv2.resize(area.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST) > 0
    source = cv2.resize((source & ~changed(edited, original)).astype(np.uint8), size,
                        interpolation=cv2.INTER_NEAREST) > 0
    r = patch // 2
    kernel = np.ones((patch, patch), np.uint8)
    untouched = ~(cv2.dilate(area.astype(np.uint8), kernel) > 0)[r:-r, r:-r]  # candidate centres, as matchTemplate's
    ys, xs = np.nonzero(cv2.erode(area.astype(np.uint8), kernel, borderValue=0) > 0)  # whole patches only
    keep = (ys % step == 0) & (xs % step == 0)
    hits = []
    for y, x in zip(ys[keep], xs[keep], strict=True):
        scores = cv2.matchTemplate(photo, out[y - r : y + r + 1, x - r : x + r + 1], cv2.TM_SQDIFF)
        scores[~untouched] = np.inf
        by, bx = np.unravel_index(int(np.argmin(scores)), scores.shape)
        hits.append(source[by + r, bx + r])
    return float(np.mean(hits))
