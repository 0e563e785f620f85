"""Module A, image generation with diffusers: Stable Diffusion (1.x/2.x or SDXL), GLIGEN for phrases in boxes.

Weights (roles of the `image_generation` entry in the models file, `backend: stable_diffusion`):

- `main` (`weights:`): a diffusers folder loaded with `AutoPipelineForText2Image`, so an SD 1.5/2.x folder
  (`StableDiffusionPipeline`) and an SDXL folder (`StableDiffusionXLPipeline`) both work.
- `gligen` (optional): a `StableDiffusionGLIGENPipeline` folder (e.g. gligen-1-4-generation-text-box), used when
  the invocation carries phrases with boxes; boxes are given in output pixels and passed normalised to [0, 1].

Conditioning: the command text and the signal's task-specific part [k, d] combine into `prompt_embeds` by the
rule of `tools.real.conditioning` (default: the command's encoding followed by the k signal tokens; the
unconditional side is the empty prompt followed by k zero tokens). For SDXL, d is the UNet's 2048-d
cross-attention width (both text encoders side by side); the pooled embedding stays the text's (the empty
prompt's in `signal` mode, where the command is ignored), and the unconditional side is all zeros when the
pipeline was trained that way (`force_zeros_for_empty_prompt`).

Options: `num_inference_steps` (30), `guidance_scale` (7.5), `gligen_scheduled_sampling_beta` (0.3),
`conditioning` (auto | text | signal | both). A seed makes a run reproducible; progress is reported per
denoising step.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from schemas import MODELS_SETTING, BackendUnavailable, InvalidInput, ModelSpec, SignalEmbedding

from ..base import ToolContext
from ..specialists import GenerateImageInput, ImageOutput
from .conditioning import combine, prompt_condition, signal_mode, signal_tokens
from .loading import device_of, generator, load_pipeline, model_spec, option, seeded, step_callback, step_progress

MODULE = "image_generation"
BACKEND = "stable_diffusion"
_SD_PIPELINES = ("StableDiffusionPipeline", "StableDiffusionXLPipeline")


def generate_image(inp: GenerateImageInput, ctx: ToolContext) -> ImageOutput:
    """Generate an `inp.height` x `inp.width` image from the command (and signal); GLIGEN when boxes are given."""
    spec = model_spec(ctx, MODULE, BACKEND)
    if inp.boxes:
        return _generate_with_boxes(inp, ctx, spec)
    device = device_of(spec)
    steps = option(spec, "num_inference_steps", 30)
    from diffusers import AutoPipelineForText2Image

    pipe = load_pipeline(AutoPipelineForText2Image, spec, MODULE, "main")
    kind = type(pipe).__name__
    if kind not in _SD_PIPELINES:
        raise BackendUnavailable(
            f"{MODULE} weights 'main' at {spec.weights['main']} hold a {kind}; {BACKEND} runs Stable Diffusion "
            "1.x/2.x and SDXL", field=MODELS_SETTING,
            fix="point `weights:` of image_generation at a Stable Diffusion or SDXL diffusers folder",
        )
    if kind == "StableDiffusionXLPipeline":
        condition = sdxl_condition(pipe, inp.command, inp.signal, ctx, spec, device=device)
    else:
        condition = prompt_condition(pipe, inp.command, inp.signal, ctx, spec, MODULE, device=device)
    result = pipe(
        **condition, height=inp.height, width=inp.width, num_inference_steps=steps,
        guidance_scale=option(spec, "guidance_scale", 7.5), generator=generator(inp.seed, device),
        callback_on_step_end=step_progress(ctx, MODULE, steps, end=0.95), output_type="np",
    )
    return ImageOutput(image=ctx.store.put_image(as_uint8(result.images[0])), backend=BACKEND)


def _generate_with_boxes(inp: GenerateImageInput, ctx: ToolContext, spec: ModelSpec) -> ImageOutput:
    if "gligen" not in spec.weights:
        raise BackendUnavailable(
            f"{MODULE} got phrases in boxes, but no GLIGEN weights are configured to place them",
            field=MODELS_SETTING,
            fix="add `gligen: /path/to/gligen-1-4-generation-text-box` (a StableDiffusionGLIGENPipeline folder) "
            "under image_generation in the models file, or send no boxes",
        )
    boxes = []
    for i, item in enumerate(inp.boxes):
        x1, y1, x2, y2 = item.box.box
        if x2 > inp.width or y2 > inp.height:
            raise InvalidInput(f"box {item.box.box} of {item.phrase!r} leaves the {inp.width}x{inp.height} image",
                               field=f"boxes.{i}.box", fix=f"keep x2 <= {inp.width} and y2 <= {inp.height}")
        boxes.append([x1 / inp.width, y1 / inp.height, x2 / inp.width, y2 / inp.height])
    device = device_of(spec)
    steps = option(spec, "num_inference_steps", 30)
    from diffusers import StableDiffusionGLIGENPipeline

    pipe = load_pipeline(StableDiffusionGLIGENPipeline, spec, MODULE, "gligen")
    condition = prompt_condition(pipe, inp.command, inp.signal, ctx, spec, MODULE, "gligen", device=device)
    with seeded(inp.seed, device):
        result = pipe(
            **condition, height=inp.height, width=inp.width, gligen_phrases=[b.phrase for b in inp.boxes],
            gligen_boxes=boxes, num_inference_steps=steps,
            gligen_scheduled_sampling_beta=option(spec, "gligen_scheduled_sampling_beta", 0.3),
            guidance_scale=option(spec, "guidance_scale", 7.5), generator=generator(inp.seed, device),
            callback=step_callback(ctx, MODULE, steps, end=0.95), output_type="np",
        )
    return ImageOutput(image=ctx.store.put_image(as_uint8(result.images[0])), backend=BACKEND)


def sdxl_condition(pipe: Any, command: str, signal: SignalEmbedding | None, ctx: ToolContext, spec: ModelSpec, *,
                   device: torch.device) -> dict[str, torch.Tensor]:
    """The conditioning rule for SDXL: prompt embeddings by `combine`, plus the pooled text embeddings."""
    tokens = signal_tokens(signal, int(pipe.unet.config.cross_attention_dim), ctx, spec, MODULE, device=device)
    mode = signal_mode(spec.options, signal, tokens)
    text, text_pooled = encode_sdxl(pipe, command, device)
    empty, empty_pooled = encode_sdxl(pipe, "", device)
    if pipe.config.get("force_zeros_for_empty_prompt", False):
        # SDXL base was trained with zeros as the unconditional input; its own pipeline guides against zeros.
        empty, empty_pooled = torch.zeros_like(empty), torch.zeros_like(empty_pooled)
    positive, negative = combine(text, empty, tokens, mode)
    pooled = empty_pooled if mode == "signal" else text_pooled
    return {"prompt_embeds": positive, "negative_prompt_embeds": negative,
            "pooled_prompt_embeds": pooled, "negative_pooled_prompt_embeds": empty_pooled}


def encode_sdxl(pipe: Any, text: str, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """SDXL's prompt encoding [1, 77, d] (both text encoders side by side) and its pooled embedding."""
    with torch.no_grad():
        embeds, _, pooled, _ = pipe.encode_prompt(prompt=text, device=device, num_images_per_prompt=1,
                                                  do_classifier_free_guidance=False)
    return embeds, pooled


# -- shared with the image editing backend ------------------------------------------------

def as_uint8(image: np.ndarray) -> np.ndarray:
    """A pipeline's float [0, 1] HxWx3 output as the store's uint8 RGB."""
    return (np.clip(np.asarray(image, dtype=np.float32), 0.0, 1.0) * 255.0).round().astype(np.uint8)
