"""Referring segmentation without a model: the candidates are regions of connected pixels of the named colour (of
any colour with a hue when none is named), the phrase picks one (`tools.referring`), its pixels are the mask.

"the blue object on the left", "the largest red one", "the second green shape from the top", "the object nearest the
centre", "the red object next to the blue one" (the other object's candidates are found the same way). Regions are
found as segmentation's colour phrases find them (the colour's HSV range, a light closing to join an object split by
highlights or noise, an opening, holes filled), on a copy at most `MAX_SIDE` long; a region smaller than `MIN_SHARE`
of the largest, or than `MIN_REGION` of the picture, is not a candidate. A phrase that names a thing but no colour
("the cat on the left", "the red object next to the cat") is not for this backend: `referred_mask` gives None and the
caller says what it needs.
"""

from __future__ import annotations

import cv2
import numpy as np

from schemas import InvalidInput, LabelledBox

from ..referring import Phrase, parse_phrase, pick
from .colours import CHROMATIC, COLOURS, colour_hits, colour_names
from .masks import fill_holes

MAX_SIDE = 640  # regions are found on a copy no larger than this, as segmentation's colour phrases are
MIN_REGION = 0.001  # of the picture (and at least 16 pixels): smaller is noise, not an object
MIN_SHARE = 0.1  # of the largest region's area: smaller is a speck of the colour, not one of the objects meant


def regions(image: np.ndarray, colours: tuple[str, ...] = ()) -> tuple[list[LabelledBox], list[np.ndarray]]:
    """The regions of connected pixels of `colours` (all chromatic colours when empty) in an RGB image: labelled boxes
    (label: the colour, score: its area relative to the largest), largest first, and each region's mask (bool, the
    image's size)."""
    height, width = image.shape[:2]
    scale = min(1.0, MAX_SIDE / max(height, width))
    small = image if scale == 1.0 else cv2.resize(image, (max(1, round(width * scale)), max(1, round(height * scale))),
                                                  interpolation=cv2.INTER_AREA)
    hsv = cv2.cvtColor(small, cv2.COLOR_RGB2HSV)
    hit = np.zeros(hsv.shape[:2], np.uint8)
    for colour in colours or CHROMATIC:
        hit |= colour_hits(hsv, colour)
    radius = max(1, round(0.004 * max(small.shape[:2])))
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    closed = cv2.morphologyEx(hit, cv2.MORPH_CLOSE, disc)
    opened = cv2.morphologyEx(closed, cv2.MORPH_OPEN, disc)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(opened if opened.any() else closed, connectivity=8)
    least = max(16.0, MIN_REGION * labels.size)
    kept = [i for i in range(1, count) if stats[i, cv2.CC_STAT_AREA] >= least]
    if not kept:
        return [], []
    largest = max(stats[i, cv2.CC_STAT_AREA] for i in kept)
    kept = [i for i in kept if stats[i, cv2.CC_STAT_AREA] >= MIN_SHARE * largest]
    names = colour_names(small) if not colours else None
    found: list[tuple[LabelledBox, np.ndarray]] = []
    for i in kept:
        piece = fill_holes(labels == i)
        if scale != 1.0:  # linear interpolation of the 0/1 mask, cut at 0.5: smooth edges, not blocky ones
            piece = cv2.resize(piece.astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR) > 0.5
        ys, xs = np.nonzero(piece)
        if xs.size == 0:
            continue
        label = colours[0] if names is None else _main_colour(names, labels == i)
        found.append((LabelledBox(label=label, score=round(float(stats[i, cv2.CC_STAT_AREA] / largest), 4),
                                  area=int(piece.sum()),
                                  box=(int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)), piece))
    found.sort(key=lambda f: -(f[0].area or 0))
    return [f[0] for f in found], [f[1] for f in found]


def _main_colour(names: np.ndarray, piece: np.ndarray) -> str:
    """The colour most of a region's pixels have (by `colour_names`)."""
    counts = np.bincount(names[piece].astype(np.int64) + 1, minlength=len(COLOURS) + 1)[1:]
    return list(COLOURS)[int(np.argmax(counts))] if counts.any() else "coloured"


def by_colour(phrase: Phrase) -> bool:
    """Whether this backend can find what the phrase names: a colour, or a place, size, order or relation among
    coloured objects ("the object on the left", "the one next to the blue one"); not a thing it has no model of ("the
    cat on the left", "the red object next to the cat")."""
    named = bool(phrase.colours) or (phrase.noun is None and (phrase.selector or phrase.relation) is not None)
    anchor = phrase.anchor
    return named and (anchor is None or bool(anchor.colours) or anchor.noun is None)


def referred_mask(image: np.ndarray, command: str) -> np.ndarray | None:
    """The mask of the object the command refers to by colour, place, size or order (bool, the image's size); None
    when the command names no colour and no place among coloured objects. `InvalidInput` when nothing of the colour
    is there, `AmbiguousTarget` when the phrase fits several objects equally."""
    phrase = parse_phrase(command)
    if not by_colour(phrase):
        return None
    colours = phrase.colours[:1]  # the first colour named is the object's ("the red car next to the blue one")
    boxes, masks = regions(image, colours)
    if not boxes:
        named = f"{colours[0]} object" if colours else "coloured object"
        raise InvalidInput(f"no {named} was found in the image", field="command",
                           fix="name the colour the object has, or give a region (box, points or scribble)")
    anchors = regions(image, phrase.anchor.colours[:1])[0] if phrase.anchor is not None else []
    height, width = image.shape[:2]
    return masks[pick(phrase, boxes, (width, height), anchors)]
