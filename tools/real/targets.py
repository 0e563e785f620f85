"""The backends' side of signal alignment: what each configured backend makes of an instruction itself, which a
planner's signal for that instruction is fitted to (`vitron planner align`), and the width each backend reads.

- Diffusion backends: the prompt encoding the backend computes for the instruction at run time (the same text
  encoder, layer and pipeline), read at the end-of-text token: CLIP's summary of the whole text, and a vector the
  UNet sees in every prompt (SD pads prompts with it), so an adapted signal is one more in-distribution token.
- SAM: its prompt encoder's sparse embedding (the two corner tokens) of the instruction's ground-truth box. A
  planner that reads only text knows where an object is only as far as its words say, so the ground-truth box of
  an instruction is the part of a square frame its position words name (`place_box`: "on the left" the left
  half, "at the top" the top half, "top left" both, "in the middle" the centre), and the whole frame when they
  name none. The adapted signal is then a box prompt for that part of the picture, after the user's own region.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import torch

from schemas import InvalidInput, ModelSpec, VitronError, resolve_module

from ..base import ToolContext
from .conditioning import encode_clip, encode_text
from .loading import device_of, load_pipeline, weights_path

SIGNAL_ROLES: dict[str, tuple[str, ...]] = {
    "image_generation": ("main", "gligen"),
    "image_segmentation": ("main",),
    "image_editing": ("inpaint", "gligen", "instruct"),
    "video_generation": ("main",),
    "video_segmentation": ("main",),
    "video_editing": ("inpaint", "instruct"),
    "image_to_video": ("main",),
}
"""The weight roles of each module whose backend reads the signal (each gets an adapter of its own); a module not
named here takes no signal."""

SAM_BACKEND = "sam"
SAM_WIDTH = 256  # segment_anything's build_sam fixes it: the prompt width of vit_b, vit_l and vit_h alike

PLACES: tuple[tuple[frozenset[str], tuple[float, float, float, float]], ...] = (
    (frozenset({"left", "leftmost"}), (0.0, 0.0, 0.5, 1.0)),
    (frozenset({"right", "rightmost"}), (0.5, 0.0, 1.0, 1.0)),
    (frozenset({"top", "upper", "above", "topmost"}), (0.0, 0.0, 1.0, 0.5)),
    (frozenset({"bottom", "lower", "below", "bottommost"}), (0.0, 0.5, 1.0, 1.0)),
    (frozenset({"middle", "centre", "center", "central"}), (0.25, 0.25, 0.75, 0.75)),
)
"""Position words and the part of the frame each names (x1, y1, x2, y2 as fractions of its sides)."""
WHOLE_FRAME = (0.0, 0.0, 1.0, 1.0)


@dataclass(frozen=True)
class Targets:
    """A backend's own conditioning of n instructions: [n, tokens * width], `tokens` vectors of `width` each."""

    values: np.ndarray
    tokens: int
    width: int


def signal_roles(spec: ModelSpec, module: str) -> list[str]:
    """The configured weight roles of `module` whose backend reads the signal."""
    return [role for role in SIGNAL_ROLES.get(resolve_module(module).name, ()) if role in spec.weights]


def place_box(instruction: str) -> tuple[float, float, float, float]:
    """The part of a square frame the instruction's position words name (fractions); the whole frame for none."""
    words = set(re.findall(r"[a-z]+", instruction.lower()))
    x1, y1, x2, y2 = WHOLE_FRAME
    for names, (a, b, c, d) in PLACES:
        if names & words:
            x1, y1, x2, y2 = max(x1, a), max(y1, b), min(x2, c), min(y2, d)
    return (x1, y1, x2, y2) if x1 < x2 and y1 < y2 else WHOLE_FRAME  # "left and right": no one part


def conditioning_targets(ctx: ToolContext, module: str, role: str, instructions: Sequence[str]) -> Targets:
    """The configured backend's own conditioning of each instruction (see the module's docstring), from the same
    weights, loaded the same way (and cached) as when it runs a step."""
    name = resolve_module(module).name
    spec = ctx.models.spec(name)
    if spec is None:
        raise InvalidInput(f"{name} has no real backend configured, so there is nothing to align its signal to",
                           field="module", fix=f"configure {name} in the models file first")
    if spec.backend == SAM_BACKEND:
        return _sam_targets(spec, name, instructions)
    pipe = load_pipeline(_pipeline_class(name, role), spec, name, role)
    return _text_targets(pipe, _encoder(name, role, pipe), device_of(spec), instructions)


def _sam_targets(spec: ModelSpec, module: str, instructions: Sequence[str]) -> Targets:
    from .sam import load_sam

    sam = load_sam(spec, module)
    side = float(sam.image_encoder.img_size)
    boxes = torch.tensor([place_box(text) for text in instructions], dtype=torch.float32) * side
    with torch.no_grad():
        sparse, _ = sam.prompt_encoder(points=None, boxes=boxes.to(sam.device), masks=None)  # [n, 2, d]
    width = int(sparse.shape[-1])
    return Targets(sparse.reshape(len(instructions), -1).float().cpu().numpy(), int(sparse.shape[1]), width)


def _pipeline_class(module: str, role: str) -> Any:
    import diffusers

    if role not in SIGNAL_ROLES.get(module, ()):
        raise InvalidInput(f"{module}'s {role!r} weights do not read the signal", field="role",
                           fix=f"align one of {', '.join(SIGNAL_ROLES.get(module, ())) or 'the modules that do'}")
    names = {"gligen": "StableDiffusionGLIGENPipeline", "inpaint": "StableDiffusionInpaintPipeline",
             "instruct": "StableDiffusionInstructPix2PixPipeline"}
    main = {"image_generation": "AutoPipelineForText2Image", "video_generation": "TextToVideoSDPipeline",
            "image_to_video": "I2VGenXLPipeline"}
    return getattr(diffusers, names.get(role) or main[module])


def _encoder(module: str, role: str, pipe: Any) -> Callable[[Any, str, torch.device], torch.Tensor]:
    """The prompt encoder the backend uses at run time for this pipeline."""
    from .image_generation import encode_sdxl

    if type(pipe).__name__ == "StableDiffusionXLPipeline":
        return lambda pipe, text, device: encode_sdxl(pipe, text, device)[0]
    if role == "instruct":
        return encode_clip
    if module == "image_to_video":
        return partial(encode_clip, penultimate=True)
    return encode_text


def _text_targets(pipe: Any, encode: Callable[[Any, str, torch.device], torch.Tensor], device: torch.device,
                  instructions: Sequence[str]) -> Targets:
    tokenizer = pipe.tokenizer
    rows = []
    for text in instructions:
        last = len(tokenizer(text, truncation=True, max_length=tokenizer.model_max_length).input_ids) - 1
        rows.append(encode(pipe, text, device)[0, last].float().cpu().numpy())  # the end-of-text token
    values = np.stack(rows)
    return Targets(values, 1, int(values.shape[1]))


def signal_tokens_of(spec: ModelSpec, module: str) -> int:
    """How many prompt tokens `module`'s configured backend reads from one step's signal: SAM's sparse prompt of a box
    is two (its corners), a diffusion backend's one more prompt token."""
    return 2 if spec.backend == SAM_BACKEND else 1


def signal_width(spec: ModelSpec, module: str) -> int | None:
    """The signal width `module`'s configured backend reads, from its configuration alone (no weights loaded); None
    when it cannot be told."""
    if resolve_module(module).name not in SIGNAL_ROLES:
        return None
    if spec.backend == SAM_BACKEND:
        if spec.variant == "custom":  # the sizes the loader builds it with: `options`, else its defaults
            from .sam import CUSTOM_DEFAULTS

            return int(spec.options.get("prompt_embed_dim", CUSTOM_DEFAULTS["prompt_embed_dim"]))
        return SAM_WIDTH
    for role in signal_roles(spec, module):
        try:
            folder = weights_path(spec, module, role)
            config = json.loads((folder / "unet" / "config.json").read_text())
        except (OSError, ValueError, VitronError):
            continue
        width = config.get("cross_attention_dim")
        if isinstance(width, list | tuple) and width:
            width = width[0]
        if isinstance(width, int):
            return width
    return None
