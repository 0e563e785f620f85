"""Module C, image editing with diffusers: masked edits by SD inpainting or GLIGEN inpainting, global edits by
InstructPix2Pix.

The presence of a mask chooses. A mask (`inp.mask`), else a region (a box → the filled rectangle; a scribble →
its mask; points → small discs around the object points) makes a masked edit: the command says what to paint
there. With no mask and no region the command is an instruction for the whole image ("make it winter").

Weights (roles of the `image_editing` entry in the models file, `backend: stable_diffusion`):

- `inpaint`: a `StableDiffusionInpaintPipeline` folder (e.g. stable-diffusion-inpainting). The image is resized to
  multiples of 8 for the pipeline and the result back to the input's size; every pixel outside the mask is
  pasted back from the input, so only the masked area changes (operation `inpaint`).
- `gligen`: a `StableDiffusionGLIGENPipeline` inpainting folder (e.g. gligen-inpainting-text-box): the command is
  the phrase placed in the box (the region's box, or the mask's bounding box), the image is resized to the VAE's
  square sample size and back, pixels outside the mask pasted back (operation `gligen-inpaint`). Used when
  `options: {masked_with: gligen}`, or when `gligen` is configured and `inpaint` is not.
- `instruct`: a `StableDiffusionInstructPix2PixPipeline` folder (e.g. timbrooks/instruct-pix2pix) for edits with
  no mask (operation `instruct-pix2pix`).

Conditioning: the command and the signal's task-specific part [k, d] combine into `prompt_embeds` by the rule of
`tools.real.conditioning` (default: the command's encoding followed by the k signal tokens; unconditional side:
the empty prompt followed by k zero tokens). InstructPix2Pix guides with three branches (text + image, image
only, neither) and orders its batch [text, unconditional, unconditional] itself when given `prompt_embeds` and
`negative_prompt_embeds`, so the same pair goes in.

Options: `num_inference_steps` (30), `guidance_scale` (7.5), `strength` (inpainting, 1.0), `image_guidance_scale`
(InstructPix2Pix, 1.5), `gligen_scheduled_sampling_beta` (0.3), `masked_with` (inpaint | gligen), `conditioning`.
A seed makes a run reproducible; progress is reported per denoising step.
"""

from __future__ import annotations

import cv2
import numpy as np
from PIL import Image

from schemas import MODELS_SETTING, BackendUnavailable, BoxRegion, InvalidInput, ModelSpec, PointsRegion

from ..base import ToolContext
from ..specialists import EditImageInput, EditImageOutput
from .conditioning import encode_clip, prompt_condition
from .image_generation import as_uint8
from .loading import (
    device_of,
    generator,
    load_pipeline,
    model_spec,
    multiple_of_8,
    option,
    seeded,
    step_callback,
    step_progress,
)

MODULE = "image_editing"
BACKEND = "stable_diffusion"
MASKED_WITH = ("inpaint", "gligen")


def edit_image(inp: EditImageInput, ctx: ToolContext) -> EditImageOutput:
    """Edit inside the mask or region by inpainting (SD or GLIGEN), or the whole image by InstructPix2Pix."""
    spec = model_spec(ctx, MODULE, BACKEND)
    image = ctx.store.get_image(inp.image)
    mask = edit_mask(inp, ctx, image.shape[:2])
    if mask is not None and inp.area == "background":
        mask = ~mask  # the background: everything outside the object
    if mask is None:
        edited, operation = _instruct(inp, ctx, spec, image), "instruct-pix2pix"
    elif masked_role(spec) == "gligen":
        edited, operation = _gligen_inpaint(inp, ctx, spec, image, mask), "gligen-inpaint"
    else:
        edited, operation = _inpaint(inp, ctx, spec, image, mask), "inpaint"
    if mask is not None:
        edited = np.where(mask[..., None], edited, image)  # outside the mask: exactly the input's pixels
    return EditImageOutput(image=ctx.store.put_image(edited), operation=operation, backend=BACKEND)


def edit_mask(inp: EditImageInput, ctx: ToolContext, shape: tuple[int, int]) -> np.ndarray | None:
    """Where to edit: the mask, else the region as a mask, else None (a global edit)."""
    if inp.mask is not None:
        mask, what = ctx.store.get_mask(inp.mask), "mask"
    elif inp.region is None:
        return None
    elif isinstance(inp.region, BoxRegion):
        mask, what = np.zeros(shape, bool), "region"
        x1, y1, x2, y2 = inp.region.as_ints()
        mask[y1:y2, x1:x2] = True
    elif isinstance(inp.region, PointsRegion):
        mask, what = np.zeros(shape, np.uint8), "region"
        radius = max(3, round(min(shape) / 16))  # a small disc: about the size a click means
        for (x, y), label in zip(inp.region.points, inp.region.labels, strict=True):
            if label == 1:
                cv2.circle(mask, (round(x), round(y)), radius, 1, thickness=-1)
        mask = mask.astype(bool)
    else:
        mask, what = ctx.store.get_mask(inp.region.mask), "region"
    if not mask.any():
        raise InvalidInput(f"the {what} marks no pixel to edit", field=what,
                           fix="give a mask or region covering the part to change, or none to edit the whole image")
    return mask


def masked_role(spec: ModelSpec) -> str:
    """Which weights make a masked edit: `options.masked_with`, else inpaint when configured, else gligen."""
    chosen = spec.options.get("masked_with")
    if chosen is not None and chosen not in MASKED_WITH:
        raise InvalidInput(f"unknown masked_with {chosen!r}", field="options.masked_with",
                           fix=f"set it to one of {', '.join(MASKED_WITH)} in the models file")
    role = chosen or ("gligen" if "gligen" in spec.weights and "inpaint" not in spec.weights else "inpaint")
    if role not in spec.weights:
        example = {"inpaint": "stable-diffusion-inpainting", "gligen": "gligen-inpainting-text-box"}[role]
        raise BackendUnavailable(
            f"{MODULE} ({BACKEND}) has no {role!r} weights for an edit inside a mask or region",
            field=MODELS_SETTING,
            fix=f"add `{role}: /path/to/{example}` under image_editing in the models file"
            + ("" if chosen else " (or `gligen: …` for GLIGEN inpainting)")
            + ("; a single `weights:` path is ambiguous here: name its role" if "main" in spec.weights else ""),
        )
    return role


def _steps(spec: ModelSpec) -> int:
    return option(spec, "num_inference_steps", 30)


def _resized(image: np.ndarray, width: int, height: int, interpolation: int = cv2.INTER_AREA) -> np.ndarray:
    if image.shape[:2] == (height, width):
        return image
    return cv2.resize(image, (width, height), interpolation=interpolation)


def _inpaint(inp: EditImageInput, ctx: ToolContext, spec: ModelSpec, image: np.ndarray,
             mask: np.ndarray) -> np.ndarray:
    from diffusers import StableDiffusionInpaintPipeline

    device, steps = device_of(spec), _steps(spec)
    pipe = load_pipeline(StableDiffusionInpaintPipeline, spec, MODULE, "inpaint")
    condition = prompt_condition(pipe, inp.command, inp.signal, ctx, spec, MODULE, "inpaint", device=device)
    height, width = image.shape[:2]
    h8, w8 = multiple_of_8(height), multiple_of_8(width)  # the pipeline needs multiples of 8
    mask_image = _resized(mask.astype(np.uint8) * 255, w8, h8, cv2.INTER_NEAREST)
    result = pipe(
        **condition, image=Image.fromarray(_resized(image, w8, h8)), mask_image=Image.fromarray(mask_image),
        height=h8, width=w8, num_inference_steps=steps, strength=option(spec, "strength", 1.0),
        guidance_scale=option(spec, "guidance_scale", 7.5), generator=generator(inp.seed, device),
        callback_on_step_end=step_progress(ctx, MODULE, steps, end=0.95), output_type="np",
    )
    return _resized(as_uint8(result.images[0]), width, height, cv2.INTER_CUBIC)


def _gligen_inpaint(inp: EditImageInput, ctx: ToolContext, spec: ModelSpec, image: np.ndarray,
                    mask: np.ndarray) -> np.ndarray:
    from diffusers import StableDiffusionGLIGENPipeline

    device, steps = device_of(spec), _steps(spec)
    pipe = load_pipeline(StableDiffusionGLIGENPipeline, spec, MODULE, "gligen")
    condition = prompt_condition(pipe, inp.command, inp.signal, ctx, spec, MODULE, "gligen", device=device)
    height, width = image.shape[:2]
    if isinstance(inp.region, BoxRegion) and inp.mask is None:
        x1, y1, x2, y2 = inp.region.box
    else:  # the mask's bounding box: GLIGEN places its phrase in a box
        ys, xs = np.nonzero(mask)
        x1, y1, x2, y2 = xs.min(), ys.min(), xs.max() + 1, ys.max() + 1
    box = [float(x1) / width, float(y1) / height, float(x2) / width, float(y2) / height]
    # GLIGEN inpaints at the VAE's square sample size (it centre-crops anything else); resize whole, then back.
    size = int(pipe.vae.config.sample_size)
    with seeded(inp.seed, device):
        result = pipe(
            **condition, height=size, width=size, gligen_phrases=[inp.command], gligen_boxes=[box],
            gligen_inpaint_image=Image.fromarray(_resized(image, size, size)), num_inference_steps=steps,
            gligen_scheduled_sampling_beta=option(spec, "gligen_scheduled_sampling_beta", 0.3),
            guidance_scale=option(spec, "guidance_scale", 7.5), generator=generator(inp.seed, device),
            callback=step_callback(ctx, MODULE, steps, end=0.95), output_type="np",
        )
    return _resized(as_uint8(result.images[0]), width, height, cv2.INTER_CUBIC)


def _instruct(inp: EditImageInput, ctx: ToolContext, spec: ModelSpec, image: np.ndarray) -> np.ndarray:
    from diffusers import StableDiffusionInstructPix2PixPipeline

    device, steps = device_of(spec), _steps(spec)
    pipe = load_pipeline(StableDiffusionInstructPix2PixPipeline, spec, MODULE, "instruct")
    height, width = image.shape[:2]
    h8, w8 = multiple_of_8(height), multiple_of_8(width)
    result = pipe(
        **prompt_condition(pipe, inp.command, inp.signal, ctx, spec, MODULE, "instruct", device=device,
                           encode=encode_clip),
        image=Image.fromarray(_resized(image, w8, h8)),
        num_inference_steps=steps, guidance_scale=option(spec, "guidance_scale", 7.5),
        image_guidance_scale=option(spec, "image_guidance_scale", 1.5), generator=generator(inp.seed, device),
        callback_on_step_end=step_progress(ctx, MODULE, steps, end=0.95), output_type="np",
    )
    return _resized(as_uint8(result.images[0]), width, height, cv2.INTER_CUBIC)
