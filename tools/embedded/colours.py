"""Named colours the embedded backends understand in commands ("make it blue", "the red object")."""

from __future__ import annotations

import re

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
