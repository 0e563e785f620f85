"""Mask clean-up shared by the embedded segmenters: holes filled, stray components dropped."""

from __future__ import annotations

import cv2
import numpy as np


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
