"""Named colours the embedded backends understand in commands ("make it blue", "the red object"), and which pixels
have them."""

from __future__ import annotations

import re

import cv2
import numpy as np

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "orange": (245, 130, 20),
    "yellow": (240, 215, 30),
    "green": (40, 170, 60),
    "cyan": (30, 200, 210),
    "blue": (30, 70, 220),
    "purple": (130, 50, 170),
    "magenta": (210, 40, 190),
    "pink": (240, 110, 170),
    "brown": (130, 80, 40),
    "white": (245, 245, 245),
    "black": (15, 15, 15),
    "gray": (128, 128, 128),
}
"""RGB of each named colour."""

SYNONYMS = {"grey": "gray", "violet": "purple", "teal": "cyan", "crimson": "red", "scarlet": "red",
            "navy": "blue", "lime": "green", "gold": "yellow", "golden": "yellow"}


def find_colours(text: str) -> list[str]:
    """The colour names in `text`, in order of appearance, synonyms mapped to the table's names."""
    found = []
    for word in re.findall(r"[a-z]+", text.lower()):
        name = SYNONYMS.get(word, word)
        if name in COLOURS:
            found.append(name)
    return found

HSV_RANGES: dict[str, list[tuple[tuple[int, int], tuple[int, int], tuple[int, int]]]] = {
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
"""Each named colour's (hue, saturation, value) ranges, hue in OpenCV's 0..180 scale, saturation and value in 0..255.
Shading keeps hue and saturation and moves value, so chromatic colours are told apart by hue first; pink is a pale
red/magenta, brown a dark orange, and white, gray and black have almost no saturation."""
assert set(HSV_RANGES) == set(COLOURS), "every named colour needs an HSV range"

CHROMATIC = tuple(c for c in COLOURS if c not in ("white", "black", "gray"))
"""The colours with a hue: what stands out from a grey or dim background."""


def colour_hits(hsv: np.ndarray, colour: str) -> np.ndarray:
    """The pixels of an HSV image (OpenCV's scales) in a named colour's ranges; uint8 0/255 [h, w]."""
    hit = np.zeros(hsv.shape[:2], np.uint8)
    for (h_lo, h_hi), (s_lo, s_hi), (v_lo, v_hi) in HSV_RANGES[colour]:
        hit |= cv2.inRange(hsv, (h_lo, s_lo, v_lo), (h_hi, s_hi, v_hi))
    return hit


def colour_names(image: np.ndarray) -> np.ndarray:
    """Each RGB pixel's colour, as an index into `COLOURS` (-1: none): the first colour whose HSV range holds it."""
    hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV)
    names = np.full(image.shape[:2], -1, np.int8)
    for index, colour in enumerate(COLOURS):
        names[(colour_hits(hsv, colour) > 0) & (names < 0)] = index
    return names
