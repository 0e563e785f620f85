"""Module G, image to video (OpenCV backend): camera moves over a rendered scene."""

from __future__ import annotations

from functools import cache
from itertools import pairwise

import cv2
import numpy as np
import pytest

from schemas import UnsupportedOperation
from tests.scenes import Scene, render_scene
from tools import get_tool
from tools.embedded.image_to_video import MOVES, parse_move


@cache
def scene(seed: int) -> Scene:
    return render_scene(seed)  # 480 x 360


def animate(ctx, command: str, **extra) -> list[np.ndarray]:
    out = get_tool("G").run({"image": ctx.store.put_image(scene(0).image), "command": command, **extra}, ctx)
    return list(ctx.store.iter_frames(out.video))


CODEC = 5  # H.264 (4:2:0, crf 16) alone moves a frame of this busy photo by about 3 on average


def looks_like(frame: np.ndarray, crop: np.ndarray) -> float:
    """Mean abs difference between a frame and a crop of the image resized to the frame's size."""
    h, w = frame.shape[:2]
    shrinking = crop.shape[1] > w
    expected = cv2.resize(crop, (w, h), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)
    return float(np.abs(frame.astype(int) - expected).mean())


def test_frame_count_size_and_fps_are_as_asked(ctx, progress_log):
    image = ctx.store.put_image(scene(0).image)
    out = get_tool("image_to_video").run({"image": image, "command": "zoom in", "num_frames": 9, "fps": 12,
                                          "width": 240, "height": 180}, ctx)
    info = ctx.store.video_info(out.video)
    assert (info.frames, info.width, info.height, info.fps) == (9, 240, 180, 12.0)
    assert sum(1 for _ in ctx.store.iter_frames(out.video)) == 9
    fractions = [f for f, _ in progress_log]
    assert len(fractions) >= 9 and fractions == sorted(fractions) and fractions[-1] == 1.0


@pytest.mark.parametrize(("size", "want"), [({}, (480, 360)), ({"width": 161, "height": 121}, (161, 121)),
                                            ({"width": 240}, (240, 180)), ({"width": 100, "height": 100}, (100, 100))])
def test_output_size_defaults_to_the_image_and_keeps_odd_sizes(ctx, size, want):
    frames = animate(ctx, "pan right", num_frames=3, **size)
    assert len(frames) == 3 and all(f.shape == (want[1], want[0], 3) for f in frames)


def test_zoom_in_ends_on_the_magnified_centre(ctx):
    image = scene(0).image
    frames = animate(ctx, "slowly zoom in", num_frames=8)
    centre = image[60:300, 80:400]  # the middle 1/1.5 of each side
    assert looks_like(frames[0], image) < CODEC
    assert looks_like(frames[-1], centre) < CODEC
    assert looks_like(frames[-1], image) > 4 * looks_like(frames[-1], centre)
    # Smooth: every frame is nearer the end than the one before.
    gaps = [looks_like(f, centre) for f in frames]
    assert all(a > b for a, b in pairwise(gaps))


def test_zoom_out_starts_on_the_centre_and_ends_on_the_whole(ctx):
    image = scene(0).image
    frames = animate(ctx, "zoom out", num_frames=5, width=240, height=180)
    assert looks_like(frames[0], image[60:300, 80:400]) < CODEC
    assert looks_like(frames[-1], image) < CODEC


@pytest.mark.parametrize(("command", "first", "last"), [
    # A pan travels a quarter of the image in a window three quarters wide (or high).
    ("pan right", (slice(45, 315), slice(0, 360)), (slice(45, 315), slice(120, 480))),
    ("pan to the left", (slice(45, 315), slice(120, 480)), (slice(45, 315), slice(0, 360))),
    ("tilt up", (slice(90, 360), slice(60, 420)), (slice(0, 270), slice(60, 420))),
    ("pan down", (slice(0, 270), slice(60, 420)), (slice(90, 360), slice(60, 420))),
])
def test_pans_move_the_window_the_right_way(ctx, command, first, last):
    image = scene(0).image
    frames = animate(ctx, command, num_frames=6)
    assert looks_like(frames[0], image[first]) < CODEC
    assert looks_like(frames[-1], image[last]) < CODEC
    assert looks_like(frames[-1], image[first]) > 4 * looks_like(frames[-1], image[last])


def test_pan_right_moves_the_content_left(ctx):
    frames = animate(ctx, "pan right", num_frames=12, width=240, height=180)
    grey = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY).astype(np.float32) for f in frames]
    shifts = [cv2.phaseCorrelate(a, b)[0][0] for a, b in pairwise(grey)]
    assert all(s < 0 for s in shifts)  # every step, the picture slides left
    assert -sum(shifts) == pytest.approx(240 / 3, rel=0.1)  # a quarter of the image = a third of the window


@pytest.mark.parametrize(("command", "move"), [
    ("zoom in", "zoom in"), ("Slowly zoom in on the cat", "zoom in"), ("push in", "zoom in"),
    ("zoom out", "zoom out"), ("pull back to reveal the room", "zoom out"),
    ("pan left", "pan left"), ("pan the camera slowly to the left", "pan left"), ("move right", "pan right"),
    ("tilt up", "pan up"), ("pan downwards", "pan down"),
])
def test_move_phrasings(command, move):
    assert parse_move(command).name == move


def test_unknown_move_lists_the_known_ones(ctx):
    with pytest.raises(UnsupportedOperation) as info:
        animate(ctx, "make the cat dance")
    assert info.value.field == "command"
    for move in MOVES:
        assert move.name in info.value.message
