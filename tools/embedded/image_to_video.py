"""Image to video without weights: a virtual camera zooming or panning over the image.

Each frame is a window on the image, resampled to the output size with sub-pixel accuracy; the window
eases from its start to its end position. A pan keeps the window zoomed in just enough to stay inside
the image. "Pan left" moves the camera (the window) left, so the content drifts right in the frame.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import cv2
import numpy as np

from schemas import UnsupportedOperation
from tools.base import ToolContext
from tools.specialists import ImageToVideoInput, VideoOutput

ZOOM = 1.5  # how far "zoom in" magnifies by the last frame
PAN = 0.25  # how far a pan travels, as a fraction of the image's side


@dataclass(frozen=True)
class Window:
    """A camera window: its magnification over the whole view and its centre, in view fractions (0..1)."""

    zoom: float
    cx: float = 0.5
    cy: float = 0.5


@dataclass(frozen=True)
class Move:
    """A camera move: the phrasing that asks for it and the window at its start and end."""

    name: str
    pattern: re.Pattern[str]
    start: Window
    end: Window


_PAN_ZOOM = 1 / (1 - PAN)  # the window fits inside the view for the whole pan
_HALF = PAN / 2


def _pan(verbs: str, direction: str) -> re.Pattern[str]:
    # "pan left", "panning to the left", "move the camera left", "slide leftwards".
    return re.compile(rf"\b(?:{verbs})\w*(?:\s+\w+){{0,5}}?\s+{direction}(?:wards?)?\b")


_SIDEWAYS, _UPDOWN = "pan|move|track|slide|truck", "pan|move|tilt|slide|crane|pedestal"

MOVES: tuple[Move, ...] = (
    Move("zoom in", re.compile(r"\b(?:zoom(?:s|ing)? in\w*|push(?:es|ing)? in|closer|dolly in|magnif\w*)\b"),
         Window(1.0), Window(ZOOM)),
    Move("zoom out", re.compile(r"\b(?:zoom(?:s|ing)? out|pull(?:s|ing)? (?:back|out)|dolly out|farther|wider)\b"),
         Window(ZOOM), Window(1.0)),
    Move("pan left", _pan(_SIDEWAYS, "left"), Window(_PAN_ZOOM, 0.5 + _HALF), Window(_PAN_ZOOM, 0.5 - _HALF)),
    Move("pan right", _pan(_SIDEWAYS, "right"), Window(_PAN_ZOOM, 0.5 - _HALF), Window(_PAN_ZOOM, 0.5 + _HALF)),
    Move("pan up", _pan(_UPDOWN, "up"), Window(_PAN_ZOOM, cy=0.5 + _HALF), Window(_PAN_ZOOM, cy=0.5 - _HALF)),
    Move("pan down", _pan(_UPDOWN, "down"), Window(_PAN_ZOOM, cy=0.5 - _HALF), Window(_PAN_ZOOM, cy=0.5 + _HALF)),
)
"""Every camera move the embedded backend makes; the error for an unknown command lists them."""


def parse_move(command: str) -> Move:
    """The camera move a command asks for; `UnsupportedOperation` (field "command") when none."""
    text = " ".join(command.lower().split())
    for move in MOVES:
        if move.pattern.search(text):
            return move
    raise UnsupportedOperation(f"cannot tell which camera move {command!r} asks for", field="command",
                               fix=f"the embedded backend makes these moves: {', '.join(m.name for m in MOVES)}")


def _ease(t: float) -> float:
    # Start and stop gently, like a camera operator would.
    return (1 - math.cos(math.pi * t)) / 2


def window_at(move: Move, t: float) -> Window:
    """The window a fraction `t` (0..1) of the way through the move."""
    s = _ease(t)
    # Zoom interpolates geometrically, so the apparent speed of the zoom is even.
    zoom = move.start.zoom * (move.end.zoom / move.start.zoom) ** s
    return Window(zoom, move.start.cx + (move.end.cx - move.start.cx) * s,
                  move.start.cy + (move.end.cy - move.start.cy) * s)


def _view(width: int, height: int, out_w: int, out_h: int) -> tuple[float, float]:
    """The largest window with the output's aspect ratio that fits in the image (its width, height)."""
    aspect = out_w / out_h
    return (width, width / aspect) if width / height <= aspect else (height * aspect, height)


def render_frame(image: np.ndarray, window: Window, out_w: int, out_h: int) -> np.ndarray:
    """The image seen through `window`, resampled to out_w x out_h (sub-pixel exact, antialiased)."""
    h, w = image.shape[:2]
    view_w, view_h = _view(w, h, out_w, out_h)
    win_w, win_h = view_w / window.zoom, view_h / window.zoom
    # The centre moves within the view (centred in the image), in view fractions.
    x0 = (w - view_w) / 2 + window.cx * view_w - win_w / 2
    y0 = (h - view_h) / 2 + window.cy * view_h - win_h / 2
    # Shrinking by more than 1:1 renders at k times the size, then box-averages k x k pixels: no aliasing.
    k = max(1, math.ceil(max(win_w / out_w, win_h / out_h) - 1e-9))
    sx, sy = win_w / (out_w * k), win_h / (out_h * k)
    # Output pixel centres (u + 0.5) map to source positions x0 + (u + 0.5) * sx, in pixel-centre terms.
    matrix = np.array([[sx, 0, x0 + 0.5 * sx - 0.5], [0, sy, y0 + 0.5 * sy - 0.5]], np.float64)
    frame = cv2.warpAffine(image, matrix, (out_w * k, out_h * k), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                           borderMode=cv2.BORDER_REFLECT)
    return frame if k == 1 else cv2.resize(frame, (out_w, out_h), interpolation=cv2.INTER_AREA)


def _output_size(inp: ImageToVideoInput, width: int, height: int) -> tuple[int, int]:
    # One side given: keep the image's aspect ratio for the other (within the schema's 4096 limit).
    if inp.width and inp.height:
        return inp.width, inp.height
    if inp.width:
        return inp.width, min(4096, max(1, round(inp.width * height / width)))
    if inp.height:
        return min(4096, max(1, round(inp.height * width / height))), inp.height
    return width, height


def _prescale(image: np.ndarray, out_w: int, out_h: int, zoom: float) -> np.ndarray:
    """Shrink a large image once (area averaging) to twice the output's detail at the closest zoom; saves work."""
    h, w = image.shape[:2]
    view_w, _ = _view(w, h, out_w, out_h)
    scale = 2 * out_w * zoom / view_w
    if scale >= 1.0:
        return image
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def image_to_video(inp: ImageToVideoInput, ctx: ToolContext) -> VideoOutput:
    """Backend of image_to_video: move a camera over the image, encoding frame by frame."""
    move = parse_move(inp.command)  # fail fast, before decoding anything
    image = ctx.store.get_image(inp.image)
    out_w, out_h = _output_size(inp, image.shape[1], image.shape[0])
    # Prescaling changes the image's size but not the windows, which are fractions of the view.
    source = _prescale(image, out_w, out_h, max(move.start.zoom, move.end.zoom))
    every = max(1, inp.num_frames // 50)
    with ctx.store.video_writer(inp.fps) as writer:
        for index in range(inp.num_frames):
            window = window_at(move, index / (inp.num_frames - 1))
            writer.write(render_frame(source, window, out_w, out_h))
            if (index + 1) % every == 0:
                ctx.progress(0.05 + 0.9 * (index + 1) / inp.num_frames,
                             f"image_to_video: {move.name}, frame {index + 1}/{inp.num_frames}")
    return VideoOutput(backend="opencv", video=writer.ref)
