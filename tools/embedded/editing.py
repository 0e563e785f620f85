"""Image edits with OpenCV: a command parser and the edits, applied inside a mask (or outside it).

`parse_edit` turns a command into an `EditOp`; `apply_edit` applies it to one RGB image, so the video
backend shares it frame by frame. Every edit composites with the mask: pixels outside the edited area
keep their exact values. The remove edit's area is the mask grown (`hole.removal_hole`): over the object's
anti-aliased edge and halo, by a ring scaled to its size, and on a still image over the shadow it casts, which
the fill would otherwise carry inwards.

With no mask or region, the object an edit is about is the one its command names by colour, and by place, size,
order or relation among the coloured objects ("make the red object on the left blue", "blur the largest object",
"pixelate the one next to the blue one"): the words outside the edit's own (and its new colour), read as a referring
phrase (`tools.referring`) and handed to segmentation. Place and size words count only where the command names an
object (a colour, "object", "one", "shape"…): "make the left side brighter" and "darken it a little" edit the whole
picture.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import cv2
import numpy as np

from memory import ArtifactStore
from schemas import InvalidInput, Region, UnsupportedOperation
from tools.base import ToolContext
from tools.referring import parse_phrase
from tools.specialists import EditImageInput, EditImageOutput

from .colours import COLOURS, SYNONYMS, find_colours
from .hole import removal_hole
from .inpaint import inpaint

Area = Literal["object", "background"]

_COLOUR_WORDS = r"\b(?:recolou?r\w*|colou?r\w*|paint|dye|tint)\b"
_RECOLOUR_VERBS = r"\b(?:make|change|turn|paint|colou?r\w*|recolou?r\w*|dye|tint|replace|set|switch|convert)\b"
_BACKGROUND = re.compile(r"\b(?:background|backdrop|surroundings)\b")
# Words that name one of the picture's objects, so a place or size beside them picks it ("the one on the left")
_OBJECT_WORDS = re.compile(r"\b(?:objects?|things?|items?|shapes?|ones?|blobs?|regions?|patch(?:es)?|spots?|"
                           r"pieces?)\b")
# Degree, not size: "darken it a little", "a bit brighter"
_DEGREE = re.compile(r"\b(?:a (?:little|tiny|small) bit|a (?:little|bit|touch|tad)|slightly|little by little)\b")


@dataclass(frozen=True)
class Operation:
    """One edit the parser knows: its name, the phrasing that asks for it, an example command."""

    name: str
    pattern: re.Pattern[str]
    example: str
    needs_mask: bool = False  # the edit means nothing on a whole image (recolour, remove)


def _op(name: str, pattern: str, example: str, needs_mask: bool = False) -> Operation:
    return Operation(name, re.compile(pattern), example, needs_mask)


# Checked in order: the first match wins. Stylise phrases come first because they name colours
# ("black and white") or verbs ("remove the colour") that other operations use; recolour comes last
# because "make"/"turn" appear in many commands.
OPERATIONS: tuple[Operation, ...] = (
    _op("grayscale", r"\b(?:gr[ae]y[- ]?scale\w*|black[- ]and[- ]white|b ?& ?w|monochrome|desaturat\w*|"
        r"colou?rless|(?:remove|drop|strip) (?:the |all )?colou?rs?|no colou?rs?)", "make it black and white"),
    _op("sepia", r"\b(?:sepia|vintage|old[- ](?:photo|fashioned)|antique)\b", "give it a sepia look"),
    _op("sketch", r"\b(?:sketch\w*|pencil|drawing|line art)\b", "turn it into a pencil sketch"),
    _op("cartoon", r"\b(?:cartoon\w*|comic\w*|toon)\b", "make it look like a cartoon"),
    _op("remove", r"\b(?:remov\w*|eras\w*|delet\w*|get rid of|take (?:it |them )?(?:out|away)|inpaint\w*|"
        r"eliminat\w*)", "remove it", needs_mask=True),
    _op("blur", r"\b(?:blur\w*|defocus\w*|bokeh|out of focus|soften)\b", "blur it"),
    _op("pixelate", r"\b(?:pixel\w*|mosaic\w*|censor\w*)\b", "pixelate it"),
    _op("brighten", r"\b(?:brighten\w*|brighter|lighten\w*|lighter)\b", "make it brighter"),
    _op("darken", r"\b(?:darken\w*|darker|dimmer|dim)\b", "make it darker"),
    _op("recolour", _RECOLOUR_VERBS, "make it blue", needs_mask=True),
)
"""Every operation `parse_edit` understands; the error for an unknown command lists them."""


def known_operations() -> str:
    """The operations with an example each, for error messages and help."""
    ops = ", ".join(f"{op.name} ('{op.example}')" for op in OPERATIONS)
    return (f"{ops}; say 'the background' to edit around the object instead ('make the background white', "
            "'blur the background')")


@dataclass(frozen=True)
class EditOp:
    """A parsed edit: the operation's name, where it applies, and its parameters."""

    name: str
    area: Area = "object"
    params: dict[str, Any] = field(default_factory=dict, hash=False)

    @property
    def colour(self) -> str | None:
        """The colour asked for (recolour, background fill)."""
        return self.params.get("colour")

    @property
    def source(self) -> str | None:
        """The colour of the object the command names ("make the RED car blue"), if it names one."""
        return self.params.get("source")

    @property
    def needs_mask(self) -> bool:
        return self.area == "background" or any(o.needs_mask for o in OPERATIONS if o.name == self.name)

    @property
    def label(self) -> str:
        """A short name of the edit, e.g. 'recolour:blue', 'blur:background', 'background:white'."""
        if self.name == "fill":
            return f"background:{self.colour}"
        if self.colour:
            return f"{self.name}:{self.colour}"
        return f"{self.name}:background" if self.area == "background" else self.name

    @property
    def referent(self) -> str | None:
        """The object the command names by place, size or order ("the red object on the left"), if it does."""
        return self.params.get("referent")

    @property
    def refers(self) -> bool:
        """Whether the command says which object to edit (a colour, a place, size or order) without a mask."""
        return self.source is not None or self.referent is not None

    @property
    def object_phrase(self) -> str:
        """How to ask a segmenter for the object this edit is about."""
        if self.referent:
            return self.referent
        return f"the {self.source} object" if self.source else "the object"


def parse_edit(command: str, area: Area | None = None) -> EditOp:
    """The edit a command asks for, on `area` (default: the background where the command says so, else the object);
    `UnsupportedOperation` (field "command") when it asks for none."""
    text = " ".join(command.lower().split())
    background = area == "background" if area is not None else bool(_BACKGROUND.search(text))
    for op in OPERATIONS:
        found = op.pattern.search(text)
        if found is None:
            continue
        # Colours named outside the operation's own words ("make the RED car black and white").
        rest = text[: found.start()] + " " + text[found.end() :]
        colours = find_colours(rest)
        if op.name != "recolour":
            source, referent = _object(rest, colours[-1] if colours else None)
            params = {"source": source, "referent": referent}
            if background and op.name == "remove":  # "remove the background" leaves a white one
                return EditOp("fill", "background", {"colour": "white", **params})
            return EditOp(op.name, "background" if background else "object", params)
        if not colours:
            if re.search(_COLOUR_WORDS, text):
                raise UnsupportedOperation(
                    f"{command!r} asks for a new colour but names none", field="command",
                    fix=f"name one of: {', '.join(COLOURS)}")
            continue
        # The last colour is the target; the one before it names the object ("make the red car blue").
        source, referent = _object(_without_last_colour(rest), colours[-2] if len(colours) > 1 else None)
        params = {"colour": colours[-1], "source": source, "referent": referent}
        return EditOp("fill", "background", params) if background else EditOp("recolour", "object", params)
    raise UnsupportedOperation(f"cannot tell which edit {command!r} asks for", field="command",
                               fix=f"ask for one of: {known_operations()}")


def _object(rest: str, source: str | None) -> tuple[str | None, str | None]:
    """The colour of the object the words outside the edit's own name (`source`, read from the colours named), and
    the phrase that names it by place, size, order or relation as segmentation reads it ("the red object on the
    left", "the object next to the blue object"); None for a phrase when they name none of these of an object."""
    rest = _DEGREE.sub(" ", rest)
    if source is None and not _OBJECT_WORDS.search(rest):
        return None, None  # "make the left side brighter": a part of the picture, not one of its objects
    try:
        phrase = parse_phrase(rest)
    except InvalidInput:  # "the left one on the right": segmentation says so, if it is asked (no mask given)
        return source, " ".join(rest.split())
    if phrase.relation is not None:  # its own colour, not the one of the object it is beside
        source = phrase.colours[0] if phrase.colours else None
    elif phrase.selector is None:
        return source, None
    return source, replace(phrase, noun=None, colours=(source,) if source else ()).described()


def _without_last_colour(text: str) -> str:
    """`text` without its last colour word: a recolour's new colour, which names no object."""
    for word in reversed(list(re.finditer(r"[a-z]+", text))):
        if SYNONYMS.get(word[0], word[0]) in COLOURS:
            return text[: word.start()] + text[word.end() :]
    return text


# -- the edits -----------------------------------------------------------------------------------

def _luminance(image: np.ndarray) -> np.ndarray:
    return image.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)


def mean_luminance(image: np.ndarray, mask: np.ndarray) -> float | None:
    """Mean luminance inside the mask (the recolour's reference), None for an empty mask."""
    return float(_luminance(image)[mask].mean()) if mask.any() else None


def _recolour(image: np.ndarray, mask: np.ndarray, op: EditOp) -> np.ndarray:
    # Each pixel's luminance relative to the object's mean sets how dark or light its new colour is:
    # darker pixels scale the target towards black, lighter ones blend it towards white. Both keep the
    # target's hue exactly (every channel difference scales by the same factor) and never clip.
    reference = op.params.get("luminance") or mean_luminance(image, mask > 0) or 1.0
    ratio = _luminance(image)[..., None] / max(reference, 1.0)
    target = np.array(COLOURS[op.colour], np.float32)
    dark = target * ratio
    light = 255.0 - (255.0 - target) / np.maximum(ratio, 1.0)
    return np.where(ratio <= 1.0, dark, light)


def _normalised_blur(image: np.ndarray, weight: np.ndarray, sigma: float) -> np.ndarray:
    # Blur only the pixels of the edited area (normalised convolution), so the object's colour does
    # not halo into a blurred background and the background does not smear into a blurred object.
    h, w = weight.shape
    weighted = image.astype(np.float32) * weight[..., None]
    weight = weight.astype(np.float32)
    # A wide blur loses nothing at a lower resolution and costs far less there.
    factor = max(1.0, sigma / 4.0)
    if factor >= 2.0:
        small = (max(1, round(w / factor)), max(1, round(h / factor)))
        weighted = cv2.resize(weighted, small, interpolation=cv2.INTER_AREA)
        weight = cv2.resize(weight, small, interpolation=cv2.INTER_AREA)
        sigma = sigma / factor
    blurred = cv2.GaussianBlur(weighted, (0, 0), sigma) / np.maximum(cv2.GaussianBlur(weight, (0, 0), sigma),
                                                                     1e-6)[..., None]
    return blurred if factor < 2.0 else cv2.resize(blurred, (w, h), interpolation=cv2.INTER_LINEAR)


def _blur(image: np.ndarray, weight: np.ndarray, op: EditOp) -> np.ndarray:
    # Strong enough to read as "blurred" at any resolution: about 1.5% of the longer side.
    return _normalised_blur(image, weight, max(2.0, 0.015 * max(image.shape[:2])))


def _pixelate(image: np.ndarray, weight: np.ndarray, op: EditOp) -> np.ndarray:
    # Each block takes the mean of its edited pixels only; blocks are aligned to the image grid.
    h, w = image.shape[:2]
    block = max(4, round(np.sqrt(weight.sum()) / 12))
    ph, pw = -h % block, -w % block
    img = np.pad(image.astype(np.float32) * weight[..., None], ((0, ph), (0, pw), (0, 0)))
    wts = np.pad(weight.astype(np.float32), ((0, ph), (0, pw)))
    nh, nw = img.shape[0] // block, img.shape[1] // block
    sums = img.reshape(nh, block, nw, block, 3).sum(axis=(1, 3))
    counts = wts.reshape(nh, block, nw, block).sum(axis=(1, 3))
    means = sums / np.maximum(counts, 1e-6)[..., None]
    return np.repeat(np.repeat(means, block, axis=0), block, axis=1)[:h, :w]


def _gamma(value: float) -> Callable[[np.ndarray, np.ndarray, EditOp], np.ndarray]:
    # A gamma curve brightens or darkens smoothly without clipping highlights or crushing shadows.
    table = (255.0 * (np.arange(256) / 255.0) ** value).astype(np.float32)
    return lambda image, weight, op: table[image]


def _grayscale(image: np.ndarray, weight: np.ndarray, op: EditOp) -> np.ndarray:
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    return np.repeat(grey[..., None], 3, axis=2)


_SEPIA = np.array([[0.393, 0.769, 0.189], [0.349, 0.686, 0.168], [0.272, 0.534, 0.131]], np.float32)


def _sepia(image: np.ndarray, weight: np.ndarray, op: EditOp) -> np.ndarray:
    return image.astype(np.float32) @ _SEPIA.T


def _sketch(image: np.ndarray, weight: np.ndarray, op: EditOp) -> np.ndarray:
    # Colour dodge of the grey image by its blurred negative: flat areas go paper-white, edges dark.
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    blurred = cv2.GaussianBlur(255 - grey, (0, 0), max(2.0, 0.01 * max(grey.shape)))
    sketch = cv2.divide(grey, 255 - blurred, scale=256)
    return np.repeat(sketch[..., None], 3, axis=2)


def _cartoon(image: np.ndarray, weight: np.ndarray, op: EditOp) -> np.ndarray:
    # Flatten colours (edge-preserving smoothing, then a few levels per channel) and ink the edges.
    smooth = image
    for _ in range(2):
        smooth = cv2.bilateralFilter(smooth, 9, 60, 7)
    levels = 6
    step = 256 // levels
    flat = (smooth // step) * step + step // 2
    grey = cv2.medianBlur(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), 5)
    edges = cv2.adaptiveThreshold(grey, 255, cv2.ADAPTIVE_THRESH_MEAN_C, cv2.THRESH_BINARY, 9, 5)
    return np.where(edges[..., None] > 0, flat, 0)


def _fill(image: np.ndarray, weight: np.ndarray, op: EditOp) -> np.ndarray:
    return np.broadcast_to(np.array(COLOURS[op.colour], np.float32), image.shape)


_EDITS: dict[str, Callable[[np.ndarray, np.ndarray, EditOp], np.ndarray]] = {
    "recolour": _recolour, "blur": _blur, "pixelate": _pixelate, "brighten": _gamma(0.6),
    "darken": _gamma(1.7), "grayscale": _grayscale, "sepia": _sepia, "sketch": _sketch, "cartoon": _cartoon,
    "fill": _fill,
}


def _remove(image: np.ndarray, mask: np.ndarray, *, frame: bool = False) -> np.ndarray:
    # The hole is the mask grown over the object's soft edge and the shadow it casts: left as the fill's border,
    # they would be extended inwards. Not a frame's shadow: found frame by frame, its edge would flicker.
    h, w = mask.shape
    hole = removal_hole(image, mask, shadow=not frame)
    if not frame:
        # Patches of the surroundings copied in (exemplar-based, coarse to fine): a large hole gets the
        # background's texture, not a smear of its rim.
        return inpaint(image, hole)
    # A video's frames get diffusion, which is fast and changes smoothly with the mask (patches chosen frame by
    # frame would flicker). Large holes are filled at a reduced scale, then only the hole is taken from the
    # upscaled fill.
    scale = min(1.0, 160.0 / max(1.0, float(np.sqrt(hole.sum()))))
    if scale < 0.9:
        small_size = (max(1, round(w * scale)), max(1, round(h * scale)))
        small = cv2.resize(image, small_size, interpolation=cv2.INTER_AREA)
        small_hole = cv2.resize(hole.astype(np.uint8), small_size, interpolation=cv2.INTER_AREA) > 0
        filled = cv2.inpaint(small, cv2.dilate(small_hole.astype(np.uint8), np.ones((3, 3), np.uint8)), 5,
                             cv2.INPAINT_TELEA)
        filled = cv2.resize(filled, (w, h), interpolation=cv2.INTER_CUBIC)
    else:
        filled = cv2.inpaint(image, hole.astype(np.uint8), 5, cv2.INPAINT_TELEA)
    out = image.copy()
    out[hole] = filled[hole]
    return out


def apply_edit(image: np.ndarray, mask: np.ndarray | None, op: EditOp, *, frame: bool = False) -> np.ndarray:
    """Apply `op` to an RGB uint8 image inside `mask` (outside it for background edits; everywhere when None).
    Remove repaints the mask grown over the object's edge and, on a still image, its contact shadow; every pixel
    outside the area edited keeps its value.

    `frame`: the image is one frame of a video, edited frame by frame (remove then fills by diffusion, which does
    not flicker, instead of copying patches)."""
    if mask is None:
        if op.needs_mask:
            what = "the object" if op.area == "object" else "the object to keep"
            raise InvalidInput(f"{op.label} needs a mask or region marking {what}", field="mask",
                               fix="give a mask from image segmentation, or a region (box, points or "
                                   "scribble) on the object")
        area = np.ones(image.shape[:2], bool)
    else:
        if mask.shape != image.shape[:2]:
            raise InvalidInput(f"mask is {mask.shape[1]}x{mask.shape[0]} but the image is "
                               f"{image.shape[1]}x{image.shape[0]}", field="mask",
                               fix="use a mask made from the same image")
        mask = mask.astype(bool)
        area = ~mask if op.area == "background" else mask
    if not area.any():
        return image.copy()
    if op.name == "remove":
        return _remove(image, area, frame=frame)
    edited = _EDITS[op.name](image, area.astype(np.float32), op)
    edited = np.clip(np.rint(edited), 0, 255).astype(np.uint8)
    return np.where(area[..., None], edited, image)


def with_reference(op: EditOp, image: np.ndarray, mask: np.ndarray | None) -> EditOp:
    """`op` with the recolour's reference luminance fixed from this image, so later frames match it."""
    if op.name != "recolour" or mask is None or "luminance" in op.params:
        return op
    reference = mean_luminance(image, mask.astype(bool))
    return op if reference is None else replace(op, params={**op.params, "luminance": reference})


# -- the backend -----------------------------------------------------------------------------------

def object_mask_for(image: np.ndarray, op: EditOp, region: Region | None, store: ArtifactStore) -> np.ndarray | None:
    """The mask of the object an edit is about: from a region, or the colour, place, size or order the command names;
    else None."""
    if region is None and not op.refers:
        return None
    from .segmentation import object_mask  # GrabCut and colour segmentation load only when needed

    return object_mask(image, op.object_phrase, region, store)


def edit_image(inp: EditImageInput, ctx: ToolContext) -> EditImageOutput:
    """Backend of image_editing: parse the command, find the mask, apply the edit, store the image."""
    op = parse_edit(inp.command, inp.area)  # fail fast, before decoding anything
    image = ctx.store.get_image(inp.image)
    if inp.mask is not None:
        mask = ctx.store.get_mask(inp.mask)
        if not mask.any():
            raise InvalidInput("the mask is empty", field="mask", fix="give a mask that covers the object")
    else:
        if inp.region is not None or op.refers:
            ctx.progress(0.2, f"image_editing: finding {op.object_phrase}")
        mask = object_mask_for(image, op, inp.region, ctx.store)
    ctx.progress(0.5, f"image_editing: {op.label}")
    edited = apply_edit(image, mask, op)
    ctx.progress(0.9, "image_editing: storing the image")
    return EditImageOutput(backend="opencv", image=ctx.store.put_image(edited), operation=op.label)
