"""Modules D (text to video) and G (image to video) with diffusers: tiny random `TextToVideoSDPipeline` and
`I2VGenXLPipeline` saved as diffusers folders and loaded back through a models file, as a user configures them."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from schemas import MODELS_SETTING, BackendUnavailable, InvalidInput, ModelsFile, SignalEmbedding, VitronSettings
from tests.tools.tiny_diffusion import TEXT_WIDTH
from tests.tools.tiny_video_diffusion import models_file, tiny_image_to_video, tiny_text_to_video
from tools import ToolContext, get_tool

STEPS = {"num_inference_steps": 2}
T2V = {"command": "a cat", "num_frames": 4, "width": 64, "height": 64, "fps": 8, "seed": 0}


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("weights")
    return {"t2v": tiny_text_to_video(root / "t2v"), "i2v": tiny_image_to_video(root / "i2v")}


def context(tmp_path: Path, ctx: ToolContext, module: str, backend: str, **entry) -> ToolContext:
    """`ctx` reading a models file that configures `module` with `backend` and `entry`."""
    entry.setdefault("options", STEPS)
    path = models_file(tmp_path / "models.yaml", module, backend=backend, **entry)
    return ToolContext(ctx.store, ctx.settings, ctx.progress, models_file=ModelsFile.load(path))


def signal(seed: int, width: int = TEXT_WIDTH, k: int = 2) -> SignalEmbedding:
    rng = np.random.default_rng(seed)
    return SignalEmbedding(task_specific=rng.normal(size=(k, width)).astype(np.float32),
                           task_invariant=rng.normal(size=(1, 8)).astype(np.float32))


def frames(ctx: ToolContext, ref) -> np.ndarray:
    return np.stack(list(ctx.store.iter_frames(ref)))


def image(seed: int = 0, height: int = 32, width: int = 32) -> np.ndarray:
    """A smooth colour image (gradients and a disc), so the VAE and CLIP see structure, not noise."""
    y, x = np.mgrid[0:height, 0:width] / max(height, width)
    disc = ((x - 0.5) ** 2 + (y - 0.5) ** 2 < 0.08)[..., None]
    rgb = np.stack([x, y, 1 - x], axis=-1) * 200 + disc * np.array([40, -60, 30]) * (1 + seed)
    return np.clip(rgb, 0, 255).astype(np.uint8)


# -- D: text to video -------------------------------------------------------------------------------

def t2v(ctx: ToolContext, **extra) -> np.ndarray:
    out = get_tool("D").run({**T2V, **extra}, ctx)
    assert out.backend == "text_to_video"
    return frames(ctx, out.video)


def test_text_to_video_writes_the_asked_frames_reporting_steps_then_frames(tmp_path, settings, progress_log):
    # The user's way in: a models file named by the settings, a context from the settings.
    path = models_file(tmp_path / "models.yaml", "D", backend="text_to_video", options=STEPS,
                       weights=tiny_text_to_video(tmp_path / "t2v"))
    ctx = ToolContext.from_settings(VitronSettings(home=settings.home, models_file=path),
                                    progress=lambda f, m: progress_log.append((f, m)))
    out = get_tool("video_generation").run({**T2V, "width": 80, "height": 64, "num_frames": 5, "fps": 12}, ctx)
    assert out.backend == "text_to_video"
    assert out.video.kind == "video" and out.video.media_type == "video/mp4"
    info = ctx.store.video_info(out.video)
    assert (info.frames, info.height, info.width, info.fps) == (5, 64, 80, 12)
    video = frames(ctx, out.video)
    assert video.shape == (5, 64, 80, 3) and video.dtype == np.uint8 and video.std() > 0
    messages = [m for _, m in progress_log if ": step" in m or ": frame" in m]
    assert messages == ["video_generation: step 1/2", "video_generation: step 2/2"] + [
        f"video_generation: frame {i}/5" for i in range(1, 6)]
    fractions = [f for f, _ in progress_log]
    assert fractions == sorted(fractions)


def test_text_to_video_is_reproducible_with_a_seed(tmp_path, ctx, weights):
    ctx = context(tmp_path, ctx, "D", "text_to_video", weights=weights["t2v"])
    first = t2v(ctx)
    assert np.array_equal(first, t2v(ctx))
    assert not np.array_equal(first, t2v(ctx, seed=1))


def test_the_signal_embedding_conditions_the_video(tmp_path, ctx, weights):
    ctx = context(tmp_path, ctx, "D", "text_to_video", weights=weights["t2v"])
    plain, a, b = t2v(ctx), t2v(ctx, signal=signal(1)), t2v(ctx, signal=signal(2))
    assert not np.array_equal(a, b) and not np.array_equal(plain, a)
    assert np.array_equal(a, t2v(ctx, signal=signal(1)))


def test_text_to_video_leaves_out_a_signal_of_the_wrong_width(tmp_path, ctx, weights):
    ctx = context(tmp_path, ctx, "D", "text_to_video", weights=weights["t2v"])
    assert np.array_equal(t2v(ctx, signal=signal(1, width=TEXT_WIDTH + 3)), t2v(ctx))
    (note,) = ctx.notes
    assert f"[k, {TEXT_WIDTH}]" in note and "--module video_generation" in note


def test_text_to_video_names_the_setting_and_the_path_of_missing_weights(tmp_path, ctx):
    missing = tmp_path / "no-such-zeroscope"
    ctx = context(tmp_path, ctx, "D", "text_to_video", weights=missing)
    with pytest.raises(BackendUnavailable, match=re.escape(str(missing))) as info:
        t2v(ctx)
    assert info.value.field == MODELS_SETTING and MODELS_SETTING in str(info.value)


def test_a_wrong_option_is_named(tmp_path, ctx, weights):
    ctx = context(tmp_path, ctx, "D", "text_to_video", weights=weights["t2v"], options={"num_inference_steps": 0})
    with pytest.raises(InvalidInput) as info:
        t2v(ctx)
    assert info.value.field == "options.num_inference_steps"


# -- G: image to video ------------------------------------------------------------------------------

def i2v(ctx: ToolContext, picture: np.ndarray | None = None, **extra):
    args = {"image": ctx.store.put_image(image() if picture is None else picture), "command": "the cat walks",
            "num_frames": 4, "fps": 8, "seed": 0, **extra}
    out = get_tool("G").run(args, ctx)
    assert out.backend == "i2vgen_xl"
    return out


def test_image_to_video_keeps_the_image_size_reporting_steps_then_frames(tmp_path, ctx, weights, progress_log):
    ctx = context(tmp_path, ctx, "G", "i2vgen_xl", weights=weights["i2v"])
    out = i2v(ctx, image(height=32, width=47))  # an odd side: rounded to a multiple of 8
    assert out.video.kind == "video" and out.video.media_type == "video/mp4"
    info = ctx.store.video_info(out.video)
    assert (info.frames, info.height, info.width, info.fps) == (4, 32, 48, 8)
    assert frames(ctx, out.video).std() > 0
    messages = [m for _, m in progress_log if ": step" in m or ": frame" in m]
    assert messages == ["image_to_video: step 1/2", "image_to_video: step 2/2"] + [
        f"image_to_video: frame {i}/4" for i in range(1, 5)]
    fractions = [f for f, _ in progress_log]
    assert fractions == sorted(fractions)


def test_image_to_video_takes_the_asked_size(tmp_path, ctx, weights):
    ctx = context(tmp_path, ctx, "G", "i2vgen_xl", weights=weights["i2v"])
    info = ctx.store.video_info(i2v(ctx, width=48, height=40, num_frames=3).video)
    assert (info.frames, info.height, info.width) == (3, 40, 48)


def video(ctx: ToolContext, **extra) -> np.ndarray:
    return frames(ctx, i2v(ctx, **extra).video)


def test_image_to_video_is_reproducible_with_a_seed(tmp_path, ctx, weights):
    ctx = context(tmp_path, ctx, "G", "i2vgen_xl", weights=weights["i2v"])
    first = video(ctx)
    assert np.array_equal(first, video(ctx))
    assert not np.array_equal(first, video(ctx, seed=1))


def test_image_to_video_follows_the_image_and_the_signal(tmp_path, ctx, weights):
    ctx = context(tmp_path, ctx, "G", "i2vgen_xl", weights=weights["i2v"])
    plain, a, b = video(ctx), video(ctx, signal=signal(1)), video(ctx, signal=signal(2))
    assert not np.array_equal(a, b) and not np.array_equal(plain, a)
    assert not np.array_equal(plain, video(ctx, picture=image(seed=1)))


def test_image_to_video_leaves_out_a_signal_of_the_wrong_width(tmp_path, ctx, weights):
    ctx = context(tmp_path, ctx, "G", "i2vgen_xl", weights=weights["i2v"])
    i2v(ctx, signal=signal(1, width=8))
    (note,) = ctx.notes
    assert "image_to_video: the planner's signal was left out" in note


def test_image_to_video_names_the_setting_and_the_path_of_missing_weights(tmp_path, ctx):
    missing = tmp_path / "no-such-i2vgen"
    ctx = context(tmp_path, ctx, "G", "i2vgen_xl", weights=missing)
    with pytest.raises(BackendUnavailable, match=re.escape(str(missing))) as info:
        i2v(ctx)
    assert info.value.field == MODELS_SETTING and MODELS_SETTING in str(info.value)
