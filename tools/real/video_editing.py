"""Module F, video editing with diffusers: every frame edited by Stable Diffusion, kept consistent over time.

With per-frame masks (from video segmentation, E) each frame is inpainted inside its mask with
`StableDiffusionInpaintPipeline` (weights role `inpaint`), and the pixels outside the mask are copied from the
frame; without masks the whole frame is edited by `StableDiffusionInstructPix2PixPipeline` (role `instruct`), the
command read as an instruction ("make it snowy"). A region without masks is refused: run video_segmentation on the
region first and pass its masks (tracking belongs to E, not here).

Temporal consistency, cheaply and streaming:
- shared initial noise: every frame starts from the same initial latents (drawn once from the seed), so the same
  content denoises the same way from frame to frame;
- latent blending: at every denoising step, the frame's latents are blended with the previous edited frame's
  latents at the same step, `(1 - blend) * current + blend * previous` (option `blend`, default 0.3; 0 turns it
  off), through the pipeline's `callback_on_step_end`. Only the previous frame's per-step latents are kept.
StableVideo's per-video atlas training (a neural layered atlas fitted for hours per video) is out of scope: this
backend edits frame by frame, so a video of any length streams through in bounded memory.

Conditioning: the rule of `tools.real.conditioning`: with a signal, the command's CLIP encoding followed by the
signal's k task-specific vectors ([1, 77 + k, d]), the unconditional side the empty prompt followed by k zeros;
without one, the command alone. InstructPix2Pix's pipeline has no SD `encode_prompt`, so its embeddings are built
from `signal_tokens` and `combine` here; both pipelines then take `prompt_embeds`/`negative_prompt_embeds`.

Frames are processed at their size rounded down to multiples of 8 and resized back. Options (models file):
`num_inference_steps` (25), `guidance_scale` (7.5), `image_guidance_scale` (1.5, InstructPix2Pix), `blend` (0.3),
`conditioning` (auto). Progress is reported per frame and per denoising step within it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import cv2
import numpy as np
import torch
from PIL import Image

from schemas import ArtifactRef, InvalidInput
from tools.base import ToolContext
from tools.specialists import EditVideoInput, EditVideoOutput

from .conditioning import encode_clip, prompt_condition
from .loading import device_of, generator, load_pipeline, model_spec, option, step_progress

BACKEND = "stable_diffusion"
MODULE = "video_editing"
_MASKS_FIX = "run video_segmentation (E) on this video first and pass its per-frame masks as `masks`"


def _frame_count(ctx: ToolContext, ref: ArtifactRef) -> int:
    return ref.shape[0] if ref.shape else ctx.store.video_info(ref).frames


def _masks(inp: EditVideoInput, ctx: ToolContext, frames: int) -> Iterator[np.ndarray] | None:
    """The per-frame masks as a stream (None: whole frames), checked against the video's frame count."""
    if inp.masks is None:
        return None
    masks = _frame_count(ctx, inp.masks)
    if masks != frames:
        raise InvalidInput(f"the masks have {masks} frames but the video has {frames}", field="masks", fix=_MASKS_FIX)
    return ctx.store.iter_frames(inp.masks)


class LatentBlend:
    """`callback_on_step_end`: blends each step's latents with the previous frame's at that step, and reports."""

    def __init__(self, blend: float) -> None:
        self.blend = blend
        self.previous: list[torch.Tensor] = []  # the previous edited frame's latents after each step
        self.current: list[torch.Tensor] = []
        self.report: Any = None

    def next_frame(self, report: Any) -> None:
        if self.current:
            self.previous, self.current = self.current, []
        self.report = report

    def __call__(self, pipe: Any, step: int, timestep: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
        latents = kwargs["latents"]
        if self.blend > 0 and step < len(self.previous):
            latents = torch.lerp(latents, self.previous[step].to(latents), self.blend)
        self.current.append(latents.detach().clone())
        if self.report is not None:
            self.report(pipe, step, timestep, kwargs)  # progress; raises JobCancelled when the job is cancelled
        return {"latents": latents}


def edit_video(inp: EditVideoInput, ctx: ToolContext) -> EditVideoOutput:
    """Backend `stable_diffusion` of video_editing: inpaint inside per-frame masks, or InstructPix2Pix whole frames."""
    from diffusers import StableDiffusionInpaintPipeline, StableDiffusionInstructPix2PixPipeline
    from diffusers.utils.torch_utils import randn_tensor

    if inp.masks is None and inp.region is not None:
        raise InvalidInput("the real video_editing backend edits inside per-frame masks, not a first-frame region",
                           field="region", fix=_MASKS_FIX)
    instruct = inp.masks is None
    spec = model_spec(ctx, MODULE, BACKEND)
    steps = option(spec, "num_inference_steps", 25, low=1, high=1000)
    guidance = option(spec, "guidance_scale", 7.5, low=0.0)
    blend = option(spec, "blend", 0.3, low=0.0, high=1.0)
    extra: dict[str, Any] = {}
    if instruct:
        extra["image_guidance_scale"] = option(spec, "image_guidance_scale", 1.5, low=0.0)
    pipeline_class = StableDiffusionInstructPix2PixPipeline if instruct else StableDiffusionInpaintPipeline
    role = "instruct" if instruct else "inpaint"
    pipe = load_pipeline(pipeline_class, spec, MODULE, role)
    device = device_of(spec)
    # InstructPix2Pix has no `encode_prompt`: its prompt goes through the CLIP encoder directly.
    condition = prompt_condition(pipe, inp.command, inp.signal, ctx, spec, MODULE, role, device=device,
                                 encode=encode_clip if instruct else None)

    info = ctx.store.video_info(inp.video)
    total = max(1, _frame_count(ctx, inp.video))
    masks = _masks(inp, ctx, total)
    scale = int(pipe.vae_scale_factor)
    side = max(8, scale)  # the pipelines' image processors round sizes down to multiples of the VAE's factor
    width, height = max(side, info.width // side * side), max(side, info.height // side * side)
    # Shared initial noise: drawn once from the seed, every frame starts from it.
    noise = randn_tensor((1, int(pipe.vae.config.latent_channels), height // scale, width // scale),
                         generator=generator(inp.seed, device), device=device, dtype=condition["prompt_embeds"].dtype)
    blender = LatentBlend(blend)
    operation = f"{'instruct-pix2pix' if instruct else 'inpaint'}:{inp.command}"
    with ctx.store.video_writer(info.fps) as writer:
        for index, frame in enumerate(ctx.store.iter_frames(inp.video)):
            mask = None if masks is None else next(masks, None)
            if masks is not None and mask is None:
                raise InvalidInput(f"the masks end at frame {index}, before the video does", field="masks",
                                   fix=_MASKS_FIX)
            if mask is not None and inp.area == "background":
                mask = ~mask  # the background: everything outside the object
            label = f"{MODULE}: frame {index + 1}/{total}"
            start, end = 0.02 + 0.96 * index / total, 0.02 + 0.96 * (index + 1) / total
            ctx.progress(start, label)
            if mask is not None and not mask.any():
                writer.write(frame)  # the object is not in this frame: nothing to edit
                continue
            blender.next_frame(step_progress(ctx, label, steps, start=start, end=end))
            small = frame if (width, height) == (info.width, info.height) else cv2.resize(
                frame, (width, height), interpolation=cv2.INTER_AREA)
            args: dict[str, Any] = {"image": Image.fromarray(small), **extra}
            if mask is not None:
                args["mask_image"] = Image.fromarray(mask.astype(np.uint8) * 255).resize((width, height), Image.NEAREST)
                args.update(height=height, width=width)
            edited = pipe(
                **args, **condition, num_inference_steps=steps, guidance_scale=guidance, latents=noise.clone(),
                generator=generator(inp.seed, device),  # the VAE samples the image latents from it (inpainting)
                callback_on_step_end=blender, output_type="np",
            ).images[0]
            edited = (np.clip(edited, 0, 1) * 255).round().astype(np.uint8)
            if edited.shape[:2] != frame.shape[:2]:
                edited = cv2.resize(edited, (info.width, info.height), interpolation=cv2.INTER_CUBIC)
            if mask is not None:
                edited = np.where(mask[..., None], edited, frame)  # outside the mask: the frame as it was
            writer.write(edited)
    return EditVideoOutput(video=writer.ref, operation=operation, backend=BACKEND)
