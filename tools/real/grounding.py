"""Grounding for B and E with real weights (the Grounded-SAM recipe's first half): a zero-shot detector finds the
phrase's subject (and the other object a relation names: "the plate" of "the cup next to the plate"), the phrase's
place, size, order or relation picks one box (`tools.referring.pick`), SAM segments from it.

The detector is `AutoModelForZeroShotObjectDetection` (Grounding DINO, OWLv2), run as module H runs it
(`tools.real.understanding.ground`). Which weights: the `grounding:` role of the module's own models-file entry
(`image_segmentation: {backend: sam, weights: …, grounding: /path/to/detector}`), else the `grounding:` of H's entry
(`visual_understanding: {backend: transformers, grounding: …}`); the options `box_threshold`, `text_threshold` and
`max_boxes` are read from the entry the weights come from.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from schemas import BoxRegion, InvalidInput, LabelledBox, ModelSpec

from ..base import ToolContext
from ..referring import Phrase, pick
from .loading import option
from .understanding import BACKEND as UNDERSTANDING_BACKEND
from .understanding import GROUNDING, Picture, ground, load
from .understanding import MODULE as UNDERSTANDING

ROLE = GROUNDING


def detector(ctx: ToolContext, module: str) -> tuple[str, ModelSpec] | None:
    """The models-file entry whose `grounding` weights `module` grounds with, and its module name: its own entry's,
    else H's (with the transformers backend); None when neither has one."""
    own = ctx.models.spec(module)
    if own is not None and ROLE in own.weights:
        return module, own
    shared = ctx.models.spec(UNDERSTANDING)
    if shared is not None and shared.backend == UNDERSTANDING_BACKEND and ROLE in shared.weights:
        return UNDERSTANDING, shared
    return None


def candidates(ctx: ToolContext, module: str, image: np.ndarray, text: str, frame: int = 0) -> list[LabelledBox]:
    """The detector's boxes for `text` on an RGB image (best first, in its pixels, on `frame`); `[]` without a
    detector configured."""
    found = detector(ctx, module)
    if found is None:
        return []
    entry, spec = found
    loaded = load(spec, ROLE, entry)
    height, width = image.shape[:2]
    picture = Picture(Image.fromarray(np.ascontiguousarray(image)), frame, (0, 0), (width, height))
    return ground(loaded, spec, [picture], [text], ctx, module=module)


def grounded_region(ctx: ToolContext, module: str, image: np.ndarray, phrase: Phrase, frame: int = 0) -> BoxRegion:
    """The box of the object `phrase` refers to on an RGB image (a frame of a video: `frame`), found by the detector
    and picked by the phrase. `InvalidInput` when nothing is found, `AmbiguousTarget` when several fit equally."""
    boxes = candidates(ctx, module, image, phrase.what, frame)
    if not boxes:
        entry = detector(ctx, module)
        threshold = option(entry[1], "box_threshold", 0.3, low=0.0, high=1.0) if entry else 0.3
        where = f" on frame {frame}" if frame else ""
        raise InvalidInput(f"the grounding detector found no {phrase.what!r}{where} with a score of at least "
                           f"{threshold:g}", field="command",
                           fix="name what is in the picture, lower `box_threshold` in the entry's options, or give a "
                               "region (a box, points or a scribble)")
    anchors = candidates(ctx, module, image, phrase.anchor.what, frame) if phrase.anchor is not None else []
    height, width = image.shape[:2]
    chosen = boxes[pick(phrase, boxes, (width, height), anchors)]
    return BoxRegion(box=chosen.box, frame=frame)
