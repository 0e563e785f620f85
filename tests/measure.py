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
