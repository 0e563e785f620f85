"""Image segmentation with segment-anything (SAM): the region and the planner's signal prompt SAM's mask decoder.

Weights (role `main`, a file): an official SAM checkpoint (`sam_vit_b_01ec64.pth`…), a `.pth` state dict, with
`variant: vit_b | vit_l | vit_h` (inferred from the file name when left out), or `variant: custom` whose sizes
come from `options` (`encoder_embed_dim`, `encoder_depth`, `encoder_num_heads`, `encoder_global_attn_indexes`,
`image_size`, `patch_size`, `window_size`, `prompt_embed_dim`, `decoder_mlp_dim`, …; see `CUSTOM_DEFAULTS`).
The model loads once per process through the model cache; its weights stay float32 and, on CUDA with dtype
float16 or bfloat16 (`auto` is float16 there), it runs under autocast.

Prompts, from the region: a box is SAM's box prompt; points are point prompts with their labels; a scribble
gives up to `SCRIBBLE_POINTS` object points spread over the painted pixels (farthest-point sampling from the
one nearest its centre).

The conditioning rule: the signal's task-specific part [k, d] (d = the prompt encoder's width, 256 for the
official checkpoints) is appended to the sparse prompt embeddings (after the points and the box) that enter the
mask decoder, as LISA feeds its [SEG] token's embedding: k more prompt tokens the decoder attends to. A signal of
another width goes through the adapter fitted for its planner and these weights (`vitron planner align`: each
signal token becomes the two corner tokens of a box prompt), or is left out with a note on the job. With no
region the signal is the only sparse prompt; with neither, SAM has nothing to segment and the input is refused.
The command text and the task-invariant part are not read (SAM has no text encoder). SAM answers three masks
(multimask output); the one with the best predicted IoU is kept, preferring non-empty ones.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from schemas import (
    MODELS_SETTING,
    BackendUnavailable,
    BoxRegion,
    InvalidInput,
    ModelSpec,
    PointsRegion,
    Region,
    ScribbleRegion,
    SignalEmbedding,
)
from tools.base import ToolContext
from tools.specialists import SegmentImageInput, SegmentImageOutput

from .conditioning import signal_tokens
from .loading import cached, device_of, dtype_of, model_spec, weights_path

BACKEND = "sam"
MODULE = "image_segmentation"
VARIANTS = ("vit_b", "vit_l", "vit_h", "custom")
SCRIBBLE_POINTS = 5
PIXEL_MEAN, PIXEL_STD = (123.675, 116.28, 103.53), (58.395, 57.12, 57.375)
MASK_LOGIT = 8.0  # a binary mask given as SAM's low-res mask input: ±this, about as sure as SAM's own logits

CUSTOM_DEFAULTS: dict[str, Any] = {
    "encoder_embed_dim": 768, "encoder_depth": 12, "encoder_num_heads": 12, "encoder_global_attn_indexes": [],
    "image_size": 1024, "patch_size": 16, "window_size": 14, "mlp_ratio": 4.0, "prompt_embed_dim": 256,
    "mask_in_chans": 16, "decoder_depth": 2, "decoder_mlp_dim": 2048, "decoder_num_heads": 8,
    "iou_head_depth": 3, "iou_head_hidden_dim": 256,
}
"""Sizes of a `variant: custom` SAM, each overridable in `options` (these are vit_b's, without global attention)."""

_NEEDS_PROMPT_FIX = ("give a region (a box, points or a scribble on the object), a signal embedding from the planner, "
                     "or name the object in the command ('the cat on the left') with a grounding detector configured "
                     "(`grounding: /path/to/detector` under the module in the models file)")


# -- loading ---------------------------------------------------------------------------------------

def build_custom_sam(options: dict[str, Any]) -> Any:
    """A randomly initialised SAM with the sizes in `options` (`CUSTOM_DEFAULTS` for the rest)."""
    from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

    o = {**CUSTOM_DEFAULTS, **{k: v for k, v in options.items() if k in CUSTOM_DEFAULTS}}
    grid = int(o["image_size"]) // int(o["patch_size"])
    width = int(o["prompt_embed_dim"])
    sam = Sam(
        image_encoder=ImageEncoderViT(
            depth=int(o["encoder_depth"]), embed_dim=int(o["encoder_embed_dim"]), img_size=int(o["image_size"]),
            mlp_ratio=float(o["mlp_ratio"]), norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
            num_heads=int(o["encoder_num_heads"]), patch_size=int(o["patch_size"]), qkv_bias=True, use_rel_pos=True,
            global_attn_indexes=tuple(int(i) for i in o["encoder_global_attn_indexes"]),
            window_size=int(o["window_size"]), out_chans=width,
        ),
        prompt_encoder=PromptEncoder(embed_dim=width, image_embedding_size=(grid, grid),
                                     input_image_size=(int(o["image_size"]),) * 2,
                                     mask_in_chans=int(o["mask_in_chans"])),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(depth=int(o["decoder_depth"]), embedding_dim=width,
                                          mlp_dim=int(o["decoder_mlp_dim"]), num_heads=int(o["decoder_num_heads"])),
            transformer_dim=width, iou_head_depth=int(o["iou_head_depth"]),
            iou_head_hidden_dim=int(o["iou_head_hidden_dim"]),
        ),
    )
    return sam.eval()


def _variant(spec: ModelSpec, module: str, path: Path) -> str:
    variant = spec.variant
    if variant is None:  # the official files say it: sam_vit_b_01ec64.pth
        variant = next((v for v in VARIANTS[:3] if v in path.name), None)
        if variant is None:
            raise BackendUnavailable(f"{module} (sam) cannot tell the SAM variant of {path}", field=MODELS_SETTING,
                                     fix=f"add `variant: vit_b` (or {', '.join(VARIANTS[1:])}) under {module} "
                                     "in the models file")
    if variant not in VARIANTS:
        raise BackendUnavailable(f"{module} (sam) has an unknown variant {variant!r} for {path}",
                                 field=MODELS_SETTING,
                                 fix=f"set `variant:` under {module} in the models file to one of "
                                 f"{', '.join(VARIANTS)}")
    return variant


def _state_dict(path: Path) -> dict[str, torch.Tensor]:
    raw = torch.load(path, map_location="cpu", weights_only=True)  # weights only: a checkpoint runs no code
    if isinstance(raw, dict):
        for key in ("model", "state_dict"):  # training checkpoints wrap the weights
            if isinstance(raw.get(key), dict):
                raw = raw[key]
    if not isinstance(raw, dict) or not all(isinstance(v, torch.Tensor) for v in raw.values()):
        raise ValueError("it holds no state dict of tensors")
    return raw


def load_sam(spec: ModelSpec, module: str = MODULE) -> Any:
    """The configured SAM (`segment_anything.Sam`), on its device, loaded once per process."""
    path = weights_path(spec, module, "main", expect="file")
    variant = _variant(spec, module, path)

    def load() -> Any:
        from segment_anything import sam_model_registry

        sizes = "the sizes in `options`" if variant == "custom" else f"`variant: {variant}`"
        try:
            # Built on the meta device: no time spent drawing random weights that the checkpoint replaces at once.
            with torch.device("meta"):
                sam = build_custom_sam(spec.options) if variant == "custom" else sam_model_registry[variant]()
            sam.load_state_dict(_state_dict(path), strict=True, assign=True)
        except Exception as exc:  # torch.load fails in many ways (pickle, zip, struct…) on a file that is no checkpoint
            lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()] or [type(exc).__name__]
            why = " ".join(lines[:2])  # state-dict errors say what on their second line
            raise BackendUnavailable(
                f"cannot load SAM {variant} weights from {path}: {why[:400]}", field=MODELS_SETTING,
                fix=f"point `weights:` of {module} in the models file at a SAM checkpoint (.pth) that matches "
                f"{sizes}, or fix `variant:`",
            ) from exc
        # The pixel statistics are not in checkpoints (non-persistent buffers); SAM's defaults, as every variant's.
        sam.pixel_mean = torch.tensor(PIXEL_MEAN).view(-1, 1, 1)
        sam.pixel_std = torch.tensor(PIXEL_STD).view(-1, 1, 1)
        if any(t.is_meta for t in (*sam.parameters(), *sam.buffers())):  # a tensor the checkpoint did not fill
            raise BackendUnavailable(f"SAM {variant} weights at {path} leave tensors unset", field=MODELS_SETTING,
                                     fix=f"point `weights:` of {module} at a complete SAM checkpoint")
        return sam.eval().to(device_of(spec))

    return cached(spec, "main", load)


@contextlib.contextmanager
def precision(spec: ModelSpec, device: torch.device) -> Iterator[None]:
    """No gradients; autocast to half precision on CUDA when the spec's dtype says so (weights stay float32)."""
    dtype = dtype_of(spec, device)
    with torch.no_grad():
        if device.type == "cuda" and dtype != torch.float32:
            with torch.autocast("cuda", dtype=dtype):
                yield
        else:
            yield


# -- prompting -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Prompt:
    """SAM prompts in image pixels; any may be missing."""

    points: np.ndarray | None = None  # [n, 2] float (x, y)
    labels: np.ndarray | None = None  # [n] int: 1 object, 0 background
    box: np.ndarray | None = None  # [4] float (x1, y1, x2, y2)
    mask_logits: np.ndarray | None = None  # [1, H, W] low-res logits (SAM's own output for an earlier frame)

    @property
    def empty(self) -> bool:
        return self.points is None and self.box is None and self.mask_logits is None


@dataclass(frozen=True)
class Prediction:
    """SAM's chosen mask: bool [h, w], its low-res logits [1, H, W] and its predicted IoU."""

    mask: np.ndarray
    logits: np.ndarray
    score: float


def spread_points(mask: np.ndarray, count: int = SCRIBBLE_POINTS) -> np.ndarray:
    """Up to `count` (x, y) pixels of `mask` far apart: the one nearest its centre, then farthest-point sampling."""
    ys, xs = np.nonzero(mask)
    if xs.size == 0:
        raise InvalidInput("the scribble mask is empty", field="region", fix="paint over the object")
    pixels = np.stack([xs, ys], axis=1).astype(np.float32)
    chosen = [int(np.argmin(((pixels - pixels.mean(axis=0)) ** 2).sum(axis=1)))]
    nearest = ((pixels - pixels[chosen[0]]) ** 2).sum(axis=1)
    while len(chosen) < min(count, len(pixels)) and nearest.max() > 0:
        chosen.append(int(np.argmax(nearest)))
        nearest = np.minimum(nearest, ((pixels - pixels[chosen[-1]]) ** 2).sum(axis=1))
    return pixels[chosen]


def region_prompt(region: Region | None, store: Any) -> Prompt:
    """SAM's prompt for a region (empty for none): a box, points with labels, or points spread over a scribble."""
    if isinstance(region, BoxRegion):
        return Prompt(box=np.asarray(region.box, dtype=np.float32))
    if isinstance(region, PointsRegion):
        return Prompt(points=np.asarray(region.points, dtype=np.float32), labels=np.asarray(region.labels, np.int64))
    if isinstance(region, ScribbleRegion):
        points = spread_points(store.get_mask(region.mask))
        return Prompt(points=points, labels=np.ones(len(points), np.int64))
    return Prompt()


def mask_box(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """(x1, y1, x2, y2) of a mask's pixels, x2 and y2 exclusive; None when it is empty."""
    ys, xs = np.nonzero(mask)
    if xs.size == 0:
        return None
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def mask_logits(sam: Any, mask: np.ndarray) -> np.ndarray:
    """A bool mask as SAM's low-res mask input [1, H, W] (±MASK_LOGIT), in the model's padded input frame."""
    from segment_anything.utils.transforms import ResizeLongestSide

    size = int(sam.image_encoder.img_size)
    h, w = ResizeLongestSide.get_preprocess_shape(mask.shape[0], mask.shape[1], size)
    resized = F.interpolate(torch.as_tensor(mask, dtype=torch.float32)[None, None], (h, w), mode="bilinear",
                            align_corners=False)
    padded = F.pad(resized, (0, size - w, 0, size - h))
    side = 4 * int(sam.prompt_encoder.image_embedding_size[0])  # the mask decoder's output side
    low = F.interpolate(padded, (side, side), mode="bilinear", align_corners=False)[0]
    return ((low.numpy() > 0.5) * 2.0 - 1.0).astype(np.float32) * MASK_LOGIT


def sam_signal(sam: Any, signal: SignalEmbedding | None, ctx: ToolContext, spec: ModelSpec,
               module: str = MODULE) -> torch.Tensor | None:
    """The signal's task-specific part as [1, k, d] sparse prompt tokens (through its adapter, see
    `signal_tokens`); None when there is none, or when it does not fit SAM's width (the job notes it)."""
    return signal_tokens(signal, int(sam.prompt_encoder.embed_dim), ctx, spec, module, device=sam.device)


def no_prompt(signal: SignalEmbedding | None, module: str = MODULE, where: str = "") -> InvalidInput:
    """The error for a SAM call left with nothing to segment: no region, and no signal (or one left out)."""
    if signal is None:
        return InvalidInput(f"SAM needs a prompt{where}: no region and no signal embedding were given",
                            field="region", fix=_NEEDS_PROMPT_FIX)
    return InvalidInput(f"SAM needs a prompt{where}: no region was given, and the planner's signal was left out "
                        "(its width does not fit SAM's prompt encoder)", field="region",
                        fix=f"give a region (a box, points or a scribble on the object), or fit a signal adapter: "
                        f"`vitron planner align --module {module}`")


def predictor_for(sam: Any, image: np.ndarray) -> Any:
    """A `SamPredictor` holding the embedding of an RGB uint8 image (call inside `precision`)."""
    from segment_anything import SamPredictor

    predictor = SamPredictor(sam)
    predictor.set_image(np.ascontiguousarray(image), image_format="RGB")
    return predictor


def decode(predictor: Any, prompt: Prompt, tokens: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """SAM's three candidate low-res logits [3, H, W] and predicted IoUs [3] for the prompt plus signal tokens."""
    if prompt.empty and tokens is None:
        raise InvalidInput("SAM needs a prompt: no region and no signal embedding were given", field="region",
                           fix=_NEEDS_PROMPT_FIX)
    sam, size, device = predictor.model, predictor.original_size, predictor.device
    points = boxes = masks = None
    if prompt.points is not None:
        coords = predictor.transform.apply_coords(prompt.points, size)
        points = (torch.as_tensor(coords, dtype=torch.float32, device=device)[None],
                  torch.as_tensor(prompt.labels, dtype=torch.int64, device=device)[None])
    if prompt.box is not None:
        boxes = torch.as_tensor(predictor.transform.apply_boxes(prompt.box[None], size), dtype=torch.float32,
                                device=device)
    if prompt.mask_logits is not None:
        masks = torch.as_tensor(prompt.mask_logits, dtype=torch.float32, device=device)[None]
    sparse, dense = sam.prompt_encoder(points=points, boxes=boxes, masks=masks)
    if tokens is not None:  # the rule: the signal is k more sparse prompt tokens, after the region's
        sparse = torch.cat([sparse, tokens.to(device=sparse.device, dtype=sparse.dtype)], dim=1)
    low, iou = sam.mask_decoder(image_embeddings=predictor.features, image_pe=sam.prompt_encoder.get_dense_pe(),
                                sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense, multimask_output=True)
    return low[0].float(), iou[0].float()


def predict(predictor: Any, prompt: Prompt, tokens: torch.Tensor | None) -> Prediction:
    """SAM's best mask for the prompt and signal tokens: the best predicted IoU, non-empty masks first."""
    low, iou = decode(predictor, prompt, tokens)
    sam = predictor.model
    masks = sam.postprocess_masks(low[:, None], predictor.input_size, predictor.original_size)[:, 0]
    masks = (masks > sam.mask_threshold).cpu().numpy()
    scores = iou.cpu().numpy()
    filled = masks.reshape(len(masks), -1).any(axis=1)
    best = int(np.argmax(np.where(filled, scores, scores - 1e9)))
    return Prediction(mask=masks[best], logits=low[best : best + 1].cpu().numpy(), score=float(scores[best]))


# -- the backend -----------------------------------------------------------------------------------

def segment_image(inp: SegmentImageInput, ctx: ToolContext) -> SegmentImageOutput:
    """Backend of image_segmentation: SAM prompted by the region and the signal; its best mask and box."""
    spec = model_spec(ctx, MODULE, BACKEND)
    prompt = region_prompt(inp.region, ctx.store)
    sam = load_sam(spec, MODULE)
    tokens = sam_signal(sam, inp.signal, ctx, spec)  # checked before the image encoder's work
    if prompt.empty and tokens is None:
        raise no_prompt(inp.signal)
    image = ctx.store.get_image(inp.image)
    ctx.progress(0.1, "image_segmentation: encoding the image (sam)")
    with precision(spec, sam.device):
        predictor = predictor_for(sam, image)
        ctx.progress(0.8, "image_segmentation: decoding the mask (sam)")
        result = predict(predictor, prompt, tokens)
    box = mask_box(result.mask)
    if box is None:
        raise InvalidInput("SAM found no object for this prompt (every candidate mask is empty)", field="region",
                           fix="give a tighter box, more points on the object, or a scribble over it")
    return SegmentImageOutput(backend=BACKEND, mask=ctx.store.put_mask(result.mask), box=BoxRegion(box=box),
                              area=int(result.mask.sum()))
