"""Module D, video generation with diffusers: text to video with `TextToVideoSDPipeline` (ZeroScope, ModelScope).

Weights: role `main`, a diffusers folder saved with `save_pretrained` for `TextToVideoSDPipeline`
(e.g. cerspense/zeroscope_v2_576w: a `UNet3DConditionModel`, a CLIP text encoder, an SD VAE, a DDIM scheduler).

Conditioning: the rule of `tools.real.conditioning` (`prompt_condition`): with a signal, the command's CLIP encoding
followed by the signal's k task-specific vectors ([1, 77 + k, d]; d is the UNet's cross-attention width, 1024 for
ZeroScope), the unconditional side the empty prompt followed by k zeros; without one, the command alone.

Options (models file): `num_inference_steps` (25), `guidance_scale` (9.0), `conditioning` (auto).

Progress is reported per denoising step (the first 80%), then per decoded frame. Frames are decoded from the
latents one at a time and written to the store one by one, so decoding memory does not grow with the frame count.

`decode_and_write` is shared with image_to_video (G).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from schemas import ArtifactRef
from tools.base import ToolContext
from tools.specialists import GenerateVideoInput, VideoOutput

from .conditioning import prompt_condition
from .loading import device_of, generator, load_pipeline, model_spec, option, step_callback

BACKEND = "text_to_video"
DECODE_FROM = 0.8  # progress: denoising until here, then decoding frame by frame

def to_uint8(images: torch.Tensor) -> np.ndarray:
    """Decoded VAE output in [-1, 1], [n, 3, H, W] → RGB uint8 [n, H, W, 3]."""
    images = (images.float() / 2 + 0.5).clamp(0, 1)
    return (images.permute(0, 2, 3, 1).cpu().numpy() * 255).round().astype(np.uint8)


def decode_and_write(pipe: Any, latents: torch.Tensor, fps: float, ctx: ToolContext, label: str, *,
                     start: float = DECODE_FROM, end: float = 1.0) -> ArtifactRef:
    """Decode video latents [1, C, F, h, w] one frame at a time and write each to the store; the video's ref."""
    vae = pipe.vae
    frames = latents.shape[2]
    with ctx.store.video_writer(fps) as writer:
        for index in range(frames):
            frame = latents[:, :, index].to(dtype=vae.dtype) / vae.config.scaling_factor
            with torch.no_grad():
                writer.write(to_uint8(vae.decode(frame).sample)[0])
            ctx.progress(start + (end - start) * (index + 1) / frames, f"{label}: frame {index + 1}/{frames}")
    return writer.ref


def generate_video(inp: GenerateVideoInput, ctx: ToolContext) -> VideoOutput:
    """Backend `text_to_video` of video_generation: the command (and signal) to a video, frames streamed out."""
    from diffusers import TextToVideoSDPipeline

    module = "video_generation"
    spec = model_spec(ctx, module, BACKEND)
    steps = option(spec, "num_inference_steps", 25, low=1, high=1000)
    guidance = option(spec, "guidance_scale", 9.0, low=0.0)
    pipe = load_pipeline(TextToVideoSDPipeline, spec, module)
    device = device_of(spec)
    condition = prompt_condition(pipe, inp.command, inp.signal, ctx, spec, module, device=device)
    latents = pipe(
        **condition, num_frames=inp.num_frames, height=inp.height, width=inp.width, num_inference_steps=steps,
        guidance_scale=guidance, generator=generator(inp.seed, device), output_type="latent",
        callback=step_callback(ctx, module, steps, end=DECODE_FROM), callback_steps=1,
    ).frames
    return VideoOutput(video=decode_and_write(pipe, latents, inp.fps, ctx, module), backend=BACKEND)
