"""Module H without a model: what the pixels tell exactly, and for anything else an answer that names the setting.

It answers, measuring the pixels (of the region when one is given; of evenly spaced frames of a video):

- the size, and a video's frames, frame rate and duration ("how big is it?", "how long is the video?");
- the main colours: each named colour's share of the pixels ("what colours are in it?");
- where a colour's regions are: connected pixels of one named colour, their boxes and sizes ("find the red
  object", "how many blue things are there?"); with no colour named, the regions of every chromatic colour
  ("find the objects");
- faces, by OpenCV's frontal-face cascade (its Haar cascade where this OpenCV ships one, else OpenCV's LBP cascade
  that ships with scikit-image).

A pixel's colour name is the first of `COLOURS` whose HSV range (the one segmentation's colour phrases use) holds
it, so the shares add up and a region has one colour. Anything else — a caption, "what is this?", "the cat on the
left" — gets an answer (`answered: false`) saying it needs a vision-language or grounding model and naming the
models-file setting. It never makes up a caption.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from typing import Any

import cv2
import numpy as np

from schemas import MODELS_SETTING, LabelledBox
from tools.base import ToolContext
from tools.specialists import UnderstandingTask, UnderstandInput, UnderstandOutput

from .colours import CHROMATIC, COLOURS, SYNONYMS, colour_names, find_colours

BACKEND = "opencv"
MIN_REGION = 0.001  # a region smaller than this share of the frame (or 16 pixels) is noise, not a region
MAX_BOXES = 50  # boxes kept in the artifact; the text names the first few
SHOWN = 5
FACE_SIDE = 640  # faces are searched on a copy at most this long; at least 1/12 of its shorter side large
COLOURS_INDEX = {colour: index for index, colour in enumerate(COLOURS)}


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


# Each request's words must all be known to what answers it: the words any request may use, then each answer's own.
_STOP = _words("""
a an the this that these those it its is are was were be been there here what whats which how me show tell please
can could would you do does did have has i see give list any some all every each and or to for with by at in on of
from about within inside picture pictures image images photo photograph video clip scene frame frames region box
whole entire overall shown visible seen
""")
_SIZE = _words("size sizes resolution dimension dimensions big large wide tall width height pixels pixel megapixels")
_SIZE_EXTRA = _words("how many much")
_DURATION = _words("long duration length lasts last seconds second fps framerate rate frames")
_DURATION_EXTRA = _words("how many frame per play plays run runs time")
_COLOUR = _words("colour color colours colors coloured colored hue hues tone tones")
_COLOUR_EXTRA = _words("main dominant mostly most mainly common predominant predominantly primary major biggest "
                       "largest share percent percentage kind kinds mix object objects thing things area part")
_REGION_NOUNS = _words("object objects thing things region regions shape shapes blob blobs patch patches spot spots "
                       "item items")
_REGION_EXTRA = _REGION_NOUNS | _words("one ones area areas part parts where find locate located location locations "
                                       "position positions count many number how boxes bounding coloured colored")
_FACES = _words("face faces")
_FACES_EXTRA = _words("human frontal where find locate count many number how boxes")
_COLOUR_WORDS = frozenset(COLOURS) | frozenset(SYNONYMS)


@dataclass(frozen=True)
class Answer:
    text: str
    answered: bool = True
    boxes: tuple[LabelledBox, ...] = ()


def understand(inp: UnderstandInput, ctx: ToolContext) -> UnderstandOutput:
    """Backend of visual_understanding: read the request, measure what it asks, say so in words."""
    task, subject = inp.reading()
    what = _intent(task, subject)
    ctx.progress(0.1, f"visual_understanding: {what[0] if what else 'reading the request'}")
    answer = _unanswerable(task, subject) if what is None else _answer(what, inp, ctx)
    boxes = answer.boxes[:MAX_BOXES]  # best first: by frame, then size
    return UnderstandOutput(
        backend=BACKEND, text=answer.text, task=task, answered=answer.answered,
        boxes=ctx.store.put_json([b.model_dump(mode="json") for b in boxes], kind="boxes") if boxes else None,
        region=boxes[0].region() if boxes else None)


# -- reading the request -------------------------------------------------------------------------------------------

Intent = tuple[str, tuple[str, ...]]  # ("size" | "duration" | "colours" | "regions" | "faces", colour names)


def _intent(task: UnderstandingTask, text: str) -> Intent | None:
    """What a request asks that the pixels answer, or None. Every word must belong to it: 'what colour is the
    car?' names a car, which only a model can find."""
    if task == "caption":
        return None
    words = set(re.findall(r"[a-z]+", text.lower().replace("'", "")))

    def only(*allowed: frozenset[str]) -> bool:
        return words <= _STOP.union(*allowed)

    colours = tuple(dict.fromkeys(find_colours(text)))
    if words & _FACES and only(_FACES, _FACES_EXTRA):
        return "faces", ()
    if colours and only(_COLOUR_WORDS, _REGION_EXTRA, _COLOUR):
        return "regions", colours
    if task == "grounding" and not colours and words & _REGION_NOUNS and only(_REGION_EXTRA, _COLOUR):
        return "regions", CHROMATIC
    if task == "grounding":
        return None
    if words & _COLOUR and only(_COLOUR, _COLOUR_EXTRA):
        return "colours", ()
    if words & _REGION_NOUNS and only(_REGION_EXTRA, _COLOUR):
        return "regions", CHROMATIC
    if words & _DURATION and only(_DURATION, _DURATION_EXTRA, _SIZE):
        return "duration", ()
    if words & _SIZE and only(_SIZE, _SIZE_EXTRA):
        return "size", ()
    return None


def _unanswerable(task: UnderstandingTask, subject: str) -> Answer:
    what = {"caption": "describe what it shows", "grounding": f"find {subject!r}",
            "question": f"answer {subject!r}"}[task]
    model = "a grounding model" if task == "grounding" else "a vision-language model"
    entry = ("`grounding: /path/to/owlv2-or-grounding-dino`" if task == "grounding"
             else "`weights: /path/to/llava-or-qwen2-vl`")
    return Answer(
        f"I can't {what} from the pixels alone: that needs {model}. Configure one under visual_understanding in the "
        f"models file ({MODELS_SETTING}): `backend: transformers` with {entry}. Without one I can tell the size "
        "and duration, the main colours, where the regions of a named colour are, and where faces are.",
        answered=False)


# -- answering -----------------------------------------------------------------------------------------------------

def _answer(intent: Intent, inp: UnderstandInput, ctx: ToolContext) -> Answer:
    kind, colours = intent
    if kind in ("size", "duration"):
        return _size(inp, ctx, kind)
    pictures = _pictures(inp, ctx)
    if kind == "colours":
        return _colours(pictures, inp)
    if kind == "faces":
        return _faces(pictures, inp)
    return _regions(pictures, inp, colours)


@dataclass(frozen=True)
class _Picture:
    pixels: np.ndarray  # RGB, cropped to the region
    frame: int
    offset: tuple[int, int]  # where the crop starts in the whole picture


def _crop(inp: UnderstandInput, width: int, height: int) -> tuple[int, int, int, int]:
    if inp.region is None:
        return 0, 0, width, height
    x1, y1, x2, y2 = inp.region.as_ints()
    return max(0, x1), max(0, y1), min(width, x2), min(height, y2)


def _pictures(inp: UnderstandInput, ctx: ToolContext) -> list[_Picture]:
    """The image, or evenly spaced frames of the video, each cropped to the region."""
    if inp.image is not None:
        frames: Iterable[tuple[int, np.ndarray]] = [(0, ctx.store.get_image(inp.image))]
    else:
        ctx.progress(0.2, f"visual_understanding: reading {inp.num_frames} frames")
        frames = ctx.store.sample_frames(inp.video, inp.num_frames)[1]
    out = []
    for index, pixels in frames:
        x1, y1, x2, y2 = _crop(inp, pixels.shape[1], pixels.shape[0])
        out.append(_Picture(np.ascontiguousarray(pixels[y1:y2, x1:x2]), index, (x1, y1)))
    return out


def _where(inp: UnderstandInput) -> str:
    return "the region" if inp.region is not None else "the video" if inp.video is not None else "the image"


def _size(inp: UnderstandInput, ctx: ToolContext, kind: str) -> Answer:
    if inp.image is not None:
        shape = inp.image.shape if len(inp.image.shape) >= 2 else ctx.store.get_image(inp.image).shape
        height, width = shape[:2]
        text = f"The image is {width}×{height} pixels."
        if kind == "duration":
            text = f"An image has no duration. {text}"
    else:
        info = ctx.store.video_info(inp.video)
        width, height = info.width, info.height
        seconds = info.frames / info.fps if info.fps else 0.0
        text = (f"The video is {width}×{height} pixels, {info.frames} frames at {info.fps:g} frames per second: "
                f"{seconds:.2f} seconds.")
    if inp.region is not None:
        x1, y1, x2, y2 = _crop(inp, width, height)
        text += f" The region is {x2 - x1}×{y2 - y1} pixels."
    return Answer(text)


def _colours(pictures: list[_Picture], inp: UnderstandInput) -> Answer:
    counts = np.zeros(len(COLOURS) + 1, np.int64)
    for picture in pictures:
        counts += np.bincount(colour_names(picture.pixels).ravel() + 1, minlength=len(COLOURS) + 1)
    total = int(counts.sum())
    if total == 0:
        return Answer(f"{_where(inp).capitalize()} has no pixels to count.")
    shares = sorted(((int(n), colour) for n, colour in zip(counts[1:], COLOURS, strict=True) if n), reverse=True)
    listed = [(n, colour) for n, colour in shares if n >= 0.01 * total][:6]
    rest = total - sum(n for n, _ in listed)
    looked = f" ({len(pictures)} frames)" if inp.video is not None else ""
    named = ", ".join(f"{colour} {_percent(n, total)}" for n, colour in listed) or "of no one named colour"
    other = f"; {_percent(rest, total)} are of other colours or of none" if rest and listed else ""
    return Answer(f"By named colour, the pixels of {_where(inp)}{looked} are {named}{other}.")


def _percent(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%"


def _regions(pictures: list[_Picture], inp: UnderstandInput, colours: tuple[str, ...]) -> Answer:
    boxes: list[LabelledBox] = []
    least = 16
    for picture in pictures:
        names = colour_names(picture.pixels)
        least = max(16, round(MIN_REGION * names.size))
        for colour in colours:
            hit = (names == COLOURS_INDEX[colour]).astype(np.uint8)
            count, _, stats, _ = cv2.connectedComponentsWithStats(hit, connectivity=8)
            total = int(hit.sum())
            ox, oy = picture.offset
            boxes += [LabelledBox(label=colour, score=round(area / total, 4), area=area, frame=picture.frame,
                                  box=(x + ox, y + oy, x + w + ox, y + h + oy))
                      for x, y, w, h, area in stats[1:count].tolist() if area >= least]
    named = " or ".join(colours) if len(colours) <= 3 else "one-colour"
    looked = f" on the {len(pictures)} frames looked at" if inp.video is not None else ""
    if not boxes:
        return Answer(f"No {named} region of at least {least} connected pixels in {_where(inp)}{looked}.")
    boxes.sort(key=lambda b: (b.frame, -(b.area or 0)))
    first = [b for b in boxes if b.frame == boxes[0].frame]
    listed = "; ".join(f"{b.label} at {_box_text(b.box)}, {b.area} pixels" for b in first[:SHOWN])
    listed += f"; and {len(first) - SHOWN} more" if len(first) > SHOWN else ""
    noun = "region" if len(first) == 1 else "regions"
    if inp.video is None:
        return Answer(f"{len(first)} {named} {noun} of connected pixels: {listed}.", boxes=tuple(boxes))
    frames = sorted({b.frame for b in boxes})
    return Answer(f"{named.capitalize()} regions are on {len(frames)} of the {len(pictures)} frames looked at "
                  f"({', '.join(map(str, frames))}). On frame {boxes[0].frame}, {len(first)} {noun} of connected "
                  f"pixels: {listed}.", boxes=tuple(boxes))


def _faces(pictures: list[_Picture], inp: UnderstandInput) -> Answer:
    finder = face_finder()
    if finder is None:
        return Answer(
            "Finding faces needs OpenCV's face cascades, which this OpenCV does not ship: install "
            "opencv-python-headless below 5 (its Haar cascades) or scikit-image (OpenCV's LBP cascade), or configure "
            f"a grounding model (`grounding:` under visual_understanding in the models file, {MODELS_SETTING}).",
            answered=False)
    name, find = finder
    boxes = []
    for picture in pictures:
        ox, oy = picture.offset
        boxes += [LabelledBox(label="face", box=(x1 + ox, y1 + oy, x2 + ox, y2 + oy), frame=picture.frame)
                  for x1, y1, x2, y2 in find(picture.pixels)]
    if not boxes:
        return Answer(f"{name} finds no face in {_where(inp)}"
                      + (f" on the {len(pictures)} frames looked at." if inp.video else "."))
    boxes.sort(key=lambda b: (b.frame, -_box_area(b.box)))
    first = [b for b in boxes if b.frame == boxes[0].frame]
    listed = "; ".join(_box_text(b.box) for b in first[:SHOWN]) + (" …" if len(first) > SHOWN else "")
    noun = "face" if len(first) == 1 else "faces"
    where = f" on frame {boxes[0].frame}" if inp.video is not None else ""
    return Answer(f"{name} finds {len(first)} {noun}{where}: {listed}.", boxes=tuple(boxes))


FaceFinder = tuple[str, Any]


@cache
def face_finder() -> FaceFinder | None:
    """(its name, a function of an RGB image giving face boxes): OpenCV's Haar cascade where this OpenCV ships it
    (4.x), else OpenCV's LBP cascade from scikit-image; None without either."""
    haar = getattr(getattr(cv2, "data", None), "haarcascades", None)
    if haar is not None and hasattr(cv2, "CascadeClassifier"):
        cascade = cv2.CascadeClassifier(str(haar) + "haarcascade_frontalface_default.xml")
        if not cascade.empty():
            def haar_faces(image: np.ndarray) -> list[tuple[int, int, int, int]]:
                grey, scale, side = _grey_for_faces(image)
                found = cascade.detectMultiScale(grey, scaleFactor=1.1, minNeighbors=5, minSize=(side, side))
                return [_scaled((x, y, x + w, y + h), scale) for x, y, w, h in np.reshape(found, (-1, 4)).tolist()]

            return "OpenCV's Haar frontal-face cascade", haar_faces
    try:
        from skimage import data
        from skimage.feature import Cascade
    except ImportError:
        return None
    filename = data.lbp_frontal_face_cascade_filename()

    def lbp_faces(image: np.ndarray) -> list[tuple[int, int, int, int]]:
        grey, scale, side = _grey_for_faces(image)
        # A detector per call: skimage's holds scratch state, and jobs run on several threads.
        found = Cascade(filename).detect_multi_scale(img=grey.astype(np.float64) / 255, scale_factor=1.2,
                                                     step_ratio=1, min_size=(side, side), max_size=grey.shape,
                                                     min_neighbor_number=8)
        return [_scaled((d["c"], d["r"], d["c"] + d["width"], d["r"] + d["height"]), scale) for d in found]

    return "OpenCV's LBP frontal-face cascade", lbp_faces


def _grey_for_faces(image: np.ndarray) -> tuple[np.ndarray, float, int]:
    """Greyscale, shrunk to at most FACE_SIDE on its longest side; the factor; the smallest face side searched."""
    h, w = image.shape[:2]
    scale = min(1.0, FACE_SIDE / max(h, w))
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    if scale < 1.0:
        grey = cv2.resize(grey, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    return grey, scale, max(24, min(grey.shape) // 12)


def _scaled(box: tuple[int, int, int, int], scale: float) -> tuple[int, int, int, int]:
    x1, y1, x2, y2 = box
    return round(x1 / scale), round(y1 / scale), round(x2 / scale), round(y2 / scale)


def _box_area(box: tuple[float, float, float, float]) -> float:
    return (box[2] - box[0]) * (box[3] - box[1])


def _box_text(box: tuple[float, float, float, float]) -> str:
    return "(" + ", ".join(f"{v:g}" for v in box) + ")"
