"""Module G, image to video with diffusers: `I2VGenXLPipeline` animates the image as the command describes.

Weights: role `main`, a diffusers folder saved with `save_pretrained` for `I2VGenXLPipeline` (ali-vilab/i2vgen-xl:
an `I2VGenXLUNet`, CLIP text and vision encoders with their image processor, an SD VAE, a DDIM scheduler).

Conditioning: the rule of `tools.real.conditioning` (`signal_tokens` and `combine`): with a signal, the command's
encoding followed by the signal's k task-specific vectors ([1, 77 + k, d], d the UNet's cross-attention width, 1024
for I2VGen-XL), the unconditional side the empty prompt followed by k zeros; without one, the command alone. The
text is encoded as I2VGenXL's own pipeline does (`clip_skip=1`: the last-but-one CLIP layer through the final
norm); we build the embeddings ourselves because its `encode_prompt` has another signature. Its UNet takes text
of any length: it appends the image's context tokens to the prompt tokens, so 77 + k tokens need no truncation.

Size: `width`/`height` from the input, else the image's; both rounded to multiples of 8 (the VAE's factor).
Options (models file): `num_inference_steps` (50), `guidance_scale` (9.0), `conditioning` (auto).
Progress is reported per denoising step (a hook on the UNet: this pipeline has no step callback), then per
decoded frame; frames are decoded one at a time and written to the store one by one.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from PIL import Image

from tools.base import ToolContext
from tools.specialists import ImageToVideoInput, VideoOutput

from .conditioning import encode_clip, prompt_condition
from .loading import device_of, generator, load_pipeline, model_spec, multiple_of_8, option, seeded
from .video_generation import DECODE_FROM, decode_and_write

BACKEND = "i2vgen_xl"
MODULE = "image_to_video"


class _StepProgress:
    """A forward hook on the UNet: one call per denoising step (guidance batches both sides in one call)."""

    def __init__(self, ctx: ToolContext, total: int) -> None:
        self.ctx, self.total, self.done = ctx, max(total, 1), 0

    def __call__(self, module: Any, args: Any, output: Any) -> None:
        self.done = min(self.done + 1, self.total)
        self.ctx.progress(DECODE_FROM * self.done / self.total, f"{MODULE}: step {self.done}/{self.total}")


def image_to_video(inp: ImageToVideoInput, ctx: ToolContext) -> VideoOutput:
    """Backend `i2vgen_xl` of image_to_video: the image and command (and signal) to a video, frames streamed out."""
    from diffusers import I2VGenXLPipeline

    spec = model_spec(ctx, MODULE, BACKEND)
    steps = option(spec, "num_inference_steps", 50, low=1, high=1000)
    guidance = option(spec, "guidance_scale", 9.0, low=0.0)
    pipe = load_pipeline(I2VGenXLPipeline, spec, MODULE)
    device = device_of(spec)
    # I2VGenXL reads the prompt from CLIP's last-but-one layer (its `clip_skip=1`).
    condition = prompt_condition(pipe, inp.command, inp.signal, ctx, spec, MODULE, device=device,
                                 encode=partial(encode_clip, penultimate=True))
    image = ctx.store.get_image(inp.image)
    height, width = image.shape[:2]
    hook = pipe.unet.register_forward_hook(_StepProgress(ctx, steps))
    try:
        with seeded(inp.seed, device):
            latents = pipe(
                image=Image.fromarray(image), **condition, num_frames=inp.num_frames,
                width=multiple_of_8(inp.width or width), height=multiple_of_8(inp.height or height),
                target_fps=max(1, round(inp.fps)), num_inference_steps=steps, guidance_scale=guidance,
                generator=generator(inp.seed, device), output_type="latent",
            ).frames
    finally:
        hook.remove()
    return VideoOutput(video=decode_and_write(pipe, latents, inp.fps, ctx, MODULE), backend=BACKEND)
