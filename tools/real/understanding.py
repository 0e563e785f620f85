"""Module H with transformers: a vision-language model captions and answers, a zero-shot detector grounds.

Weights (roles of the `visual_understanding` entry in the models file, `backend: transformers`; each a folder saved
with `save_pretrained`, processor included):

- `main` (a single `weights:` path): a vision-language model that `AutoProcessor` and `AutoModelForImageTextToText`
  load — LLaVA, LLaVA-OneVision, Qwen2-VL / Qwen2.5-VL, Idefics3, SmolVLM. It captions and answers questions. The
  prompt is the processor's chat template with one image entry per picture; a video is shown as `num_frames`
  evenly spaced frames, in order, as several images of one message.
- `grounding`: a zero-shot object detector that `AutoModelForZeroShotObjectDetection` loads — Grounding DINO or
  OWLv2 (OWL-ViT). It finds the phrase (several: separated by `;`) on the image, or on each frame looked at.

With a region, the models see only that part; boxes are still in the whole picture's pixels. The planner's signal
is not read. Options: `max_new_tokens` (128), `caption_prompt`, `box_threshold` (0.3), `text_threshold` (0.25,
Grounding DINO's per-word threshold), `max_boxes` (20 per picture). Decoding is greedy: the same input, the same
answer. Progress is reported per generated token, and a cancelled job stops there.
"""

from __future__ import annotations

import inspect
import os
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image

from schemas import MODELS_SETTING, BackendUnavailable, InvalidInput, LabelledBox, ModelSpec

from ..base import ToolContext
from ..specialists import UnderstandInput, UnderstandOutput
from .loading import cached, device_of, dtype_of, model_spec, option, weights_path

MODULE = "visual_understanding"
BACKEND = "transformers"
VLM, GROUNDING = "main", "grounding"
NMS_IOU = 0.5  # a box overlapping a better one of the same label this much is the same find
CAPTION_PROMPT = "Describe this image in one or two sentences."
VIDEO_CAPTION_PROMPT = "Describe this video in one or two sentences."


@dataclass
class Loaded:
    """A processor and its model, as the model cache holds them."""

    processor: Any
    model: Any

    @property
    def components(self) -> dict[str, Any]:
        # The model cache sizes (and finds the device of) anything with torch `components`, as it does a pipeline.
        return {"model": self.model}


@dataclass(frozen=True)
class Picture:
    image: Image.Image  # what the model sees: the picture, or the region of it
    frame: int
    offset: tuple[int, int]  # where that starts in the whole picture
    size: tuple[int, int]  # (width, height) of the whole picture


def understand(inp: UnderstandInput, ctx: ToolContext) -> UnderstandOutput:
    """Backend of visual_understanding: caption or answer with the VLM, ground with the detector."""
    spec = model_spec(ctx, MODULE, BACKEND)
    task, subject = inp.reading()
    role = GROUNDING if task == "grounding" else VLM
    _check_role(spec, role, task)
    loaded = load(spec, role)
    pictures = _pictures(inp, ctx)
    if task == "grounding":
        phrases = [p.strip() for p in subject.split(";") if p.strip()]
        boxes = ground(loaded, spec, pictures, phrases, ctx)
        return UnderstandOutput(
            backend=BACKEND, text=_found_text(phrases, boxes, spec, len(pictures) if inp.video else None),
            task=task, answered=True,
            boxes=ctx.store.put_json([b.model_dump(mode="json") for b in boxes], kind="boxes") if boxes else None,
            region=boxes[0].region() if boxes else None)
    prompt = _prompt(task, subject, spec, pictures if inp.video is not None else None)
    text = generate(loaded, spec, [p.image for p in pictures], prompt, ctx)
    return UnderstandOutput(backend=BACKEND, text=text or "(the model gave no answer)", task=task, answered=True)


# -- loading -------------------------------------------------------------------------------------------------------

_ROLES = {VLM: ("AutoModelForImageTextToText", "a vision-language model (LLaVA, LLaVA-OneVision, Qwen2-VL, "
                                                "Idefics3, SmolVLM)"),
          GROUNDING: ("AutoModelForZeroShotObjectDetection", "a zero-shot detector (Grounding DINO, OWLv2)")}


def _check_role(spec: ModelSpec, role: str, task: str) -> None:
    if role in spec.weights:
        return
    auto, what = _ROLES[role]
    entry = "weights: /path/to/model" if role == VLM else "grounding: /path/to/detector"
    raise BackendUnavailable(
        f"{MODULE} ({BACKEND}) has no {what} for a {task}", field=MODELS_SETTING,
        fix=f"add `{entry}` under {MODULE} in the models file: a folder saved with save_pretrained that "
            f"AutoProcessor and {auto} load")


def load(spec: ModelSpec, role: str, module: str = MODULE) -> Loaded:
    """The processor and model of one role, on the spec's device and dtype, cached; never the network. `module`: the
    models-file entry `spec` is (B and E ground with a detector of their own entry, or of H's)."""
    path = weights_path(spec, module, role, expect="transformers")
    auto, what = _ROLES[role]

    def load_now() -> Loaded:
        import transformers
        from transformers.utils import logging as transformers_logging

        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        transformers_logging.disable_progress_bar()
        device = device_of(spec)
        try:
            processor = transformers.AutoProcessor.from_pretrained(path, local_files_only=True)
            model = getattr(transformers, auto).from_pretrained(path, dtype=dtype_of(spec, device),
                                                                local_files_only=True)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise BackendUnavailable(
                f"cannot load {what} from {path}: {exc}", field=MODELS_SETTING,
                fix=f"point `{role}` of {module} at a folder saved with save_pretrained (model and processor) that "
                    f"AutoProcessor and {auto} load") from exc
        return Loaded(processor, model.to(device).eval())

    return cached(spec, role, load_now)


def _to(inputs: Any, model: Any) -> dict[str, Any]:
    """The processor's tensors on the model's device; its float ones (pixels) in the model's dtype."""
    device, dtype = model.device, model.dtype
    return {k: (v.to(device, dtype) if v.is_floating_point() else v.to(device)) if isinstance(v, torch.Tensor) else v
            for k, v in inputs.items()}


# -- pictures ------------------------------------------------------------------------------------------------------

def _pictures(inp: UnderstandInput, ctx: ToolContext) -> list[Picture]:
    if inp.image is not None:
        frames = [(0, ctx.store.get_image(inp.image))]
    else:
        ctx.progress(0.05, f"{MODULE}: reading {inp.num_frames} frames")
        frames = ctx.store.sample_frames(inp.video, inp.num_frames)[1]
    pictures = []
    for index, pixels in frames:
        height, width = pixels.shape[:2]
        x1, y1, x2, y2 = 0, 0, width, height
        if inp.region is not None:
            bx1, by1, bx2, by2 = inp.region.as_ints()
            x1, y1, x2, y2 = max(0, bx1), max(0, by1), min(width, bx2), min(height, by2)
        crop = np.ascontiguousarray(pixels[y1:y2, x1:x2])
        pictures.append(Picture(Image.fromarray(crop), index, (x1, y1), (width, height)))
    return pictures


# -- answering -----------------------------------------------------------------------------------------------------

def _prompt(task: str, subject: str, spec: ModelSpec, frames: list[Picture] | None) -> str:
    custom = spec.options.get("caption_prompt")
    if custom is not None and (not isinstance(custom, str) or not custom.strip()):
        raise InvalidInput(f"option caption_prompt={custom!r} is not a prompt", field="options.caption_prompt",
                           fix="set `options: {caption_prompt: …}` in the models file to the words that ask for a "
                               "caption")
    if task == "caption":
        question = custom or (VIDEO_CAPTION_PROMPT if frames is not None else CAPTION_PROMPT)
    else:
        question = subject
    if frames is None:
        return question
    numbers = ", ".join(str(p.frame) for p in frames)
    return f"These are {len(frames)} frames of a video, in order (frames {numbers}). {question}"


class _TokenProgress:
    """A stopping criterion that never stops: it reports each generated token as progress (where a cancelled job
    raises)."""

    def __init__(self, ctx: ToolContext, total: int, prompt_length: int) -> None:
        self.ctx, self.total, self.prompt_length = ctx, total, prompt_length
        self.every = max(1, total // 20)

    def __call__(self, input_ids: torch.Tensor, scores: Any, **kwargs: Any) -> torch.Tensor:
        done = input_ids.shape[1] - self.prompt_length
        if done % self.every == 0 or done == self.total:
            self.ctx.progress(0.3 + 0.65 * min(done, self.total) / self.total, f"{MODULE}: token {done}/{self.total}")
        return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)


def generate(loaded: Loaded, spec: ModelSpec, images: list[Image.Image], question: str, ctx: ToolContext) -> str:
    """The VLM's answer to `question` about `images` (one message: the images, then the words), greedy."""
    from transformers import StoppingCriteriaList

    processor, model = loaded.processor, loaded.model
    max_new = option(spec, "max_new_tokens", 128, low=1, high=8192)
    content = [{"type": "image"} for _ in images] + [{"type": "text", "text": question}]
    if getattr(processor, "chat_template", None):
        prompt = processor.apply_chat_template([{"role": "user", "content": content}], add_generation_prompt=True)
    elif getattr(processor, "image_token", None):  # an early LLaVA folder without a template: LLaVA-1.5's format
        prompt = f"USER: {(processor.image_token + chr(10)) * len(images)}{question} ASSISTANT:"
    else:
        raise BackendUnavailable(
            f"the processor of {spec.weights[VLM]} has no chat template, so there is no way to show it pictures",
            field=MODELS_SETTING, fix="save the model's processor with its chat_template (processor.save_pretrained "
                                      "from the published checkpoint)")
    ctx.progress(0.2, f"{MODULE}: looking at {len(images)} picture{'s' if len(images) > 1 else ''}")
    inputs = _to(processor(text=prompt, images=images, return_tensors="pt"), model)
    length = inputs["input_ids"].shape[1]

    with torch.inference_mode():
        out = model.generate(**inputs, max_new_tokens=max_new, do_sample=False,
                             stopping_criteria=StoppingCriteriaList([_TokenProgress(ctx, max_new, length)]))
    return processor.batch_decode(out[:, length:], skip_special_tokens=True)[0].strip()


# -- grounding -----------------------------------------------------------------------------------------------------

def ground(loaded: Loaded, spec: ModelSpec, pictures: list[Picture], phrases: list[str], ctx: ToolContext, *,
           module: str = MODULE) -> list[LabelledBox]:
    """The detector's boxes for `phrases` on every picture, best first (by frame, then score), in whole-picture
    pixels; overlapping boxes of one label kept once."""
    if not phrases:
        raise InvalidInput("there is nothing to find", field="command", fix="say what to find, e.g. 'find: the cat'")
    processor, model = loaded.processor, loaded.model
    threshold = option(spec, "box_threshold", 0.3, low=0.0, high=1.0)
    text_threshold = option(spec, "text_threshold", 0.25, low=0.0, high=1.0)
    most = option(spec, "max_boxes", 20, low=1)
    post = processor.post_process_grounded_object_detection
    params = inspect.signature(post).parameters
    joined = "input_ids" in params  # Grounding DINO reads one text, "a cat. a dog."; OWL a list of queries
    text: Any = " ".join(f"{p.lower().rstrip('.')}." for p in phrases) if joined else [phrases]
    # OWLv2 pads the picture to a square before it looks, so its boxes are in the square's pixels.
    square = type(processor.image_processor).__name__.startswith("Owlv2")
    found: list[LabelledBox] = []
    for index, picture in enumerate(pictures):
        ctx.progress(0.2 + 0.75 * index / len(pictures), f"{module}: finding on picture {index + 1}/{len(pictures)}")
        width, height = picture.image.size
        inputs = _to(processor(images=picture.image, text=text, return_tensors="pt"), model)
        with torch.inference_mode():
            outputs = model(**inputs)
        side = max(width, height)
        kwargs: dict[str, Any] = {"target_sizes": [(side, side) if square else (height, width)]}
        kwargs["threshold" if "threshold" in params else "box_threshold"] = threshold
        if joined:
            kwargs["input_ids"] = inputs["input_ids"]
        if "text_threshold" in params:
            kwargs["text_threshold"] = text_threshold
        if "text_labels" in params:
            kwargs["text_labels"] = [phrases]
        result = post(outputs, **kwargs)[0]
        labels = result["text_labels"] if "text_labels" in result else result["labels"]  # "labels": OWL's indices
        candidates = []
        for score, label, box in zip(result["scores"].tolist(), list(labels), result["boxes"].tolist(), strict=True):
            x1, y1 = max(0.0, box[0]), max(0.0, box[1])
            x2, y2 = min(float(width), box[2]), min(float(height), box[3])
            if x2 - x1 >= 1 and y2 - y1 >= 1:  # clipped to the picture, a box must still hold a pixel
                candidates.append((float(score), _label(label, phrases), (x1, y1, x2, y2)))
        ox, oy = picture.offset
        found += [LabelledBox(label=label, score=round(min(1.0, max(0.0, score)), 4), frame=picture.frame,
                              box=(round(x1 + ox, 2), round(y1 + oy, 2), round(x2 + ox, 2), round(y2 + oy, 2)))
                  for score, label, (x1, y1, x2, y2) in _suppressed(candidates)[:most]]
    return sorted(found, key=lambda b: (b.frame, -(b.score or 0.0)))


_SPECIAL = re.compile(r"\[(?:CLS|SEP|PAD)\]|<\|?[a-z_]+\|?>")


def _label(label: Any, phrases: list[str]) -> str:
    """A detection's phrase: OWL gives its index; Grounding DINO the words of its text above the text threshold,
    read back to the phrase that holds them."""
    if isinstance(label, int | np.integer) or (isinstance(label, torch.Tensor) and label.ndim == 0):
        return phrases[int(label)]
    words = _SPECIAL.sub(" ", str(label)).replace(".", " ").split()
    if len(phrases) == 1 or not words:
        return phrases[0]
    overlap = [len(set(words) & set(p.lower().split())) for p in phrases]
    best = max(range(len(phrases)), key=lambda i: overlap[i])
    return phrases[best] if overlap[best] else " ".join(words)


def _suppressed(candidates: list[tuple[float, str, tuple[float, float, float, float]]],
                ) -> list[tuple[float, str, tuple[float, float, float, float]]]:
    """Best first, each box once: one overlapping a better box of its label by NMS_IOU or more is dropped."""
    kept: list[tuple[float, str, tuple[float, float, float, float]]] = []
    for candidate in sorted(candidates, key=lambda c: -c[0]):
        if all(k[1] != candidate[1] or _iou(k[2], candidate[2]) < NMS_IOU for k in kept):
            kept.append(candidate)
    return kept


def _iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _found_text(phrases: list[str], boxes: list[LabelledBox], spec: ModelSpec, frames: int | None) -> str:
    asked = " or ".join(repr(p) for p in phrases)
    if not boxes:
        looked = f" on the {frames} frames looked at" if frames else ""
        return (f"Found nothing for {asked}{looked} with a score of at least "
                f"{option(spec, 'box_threshold', 0.3, low=0.0, high=1.0):g} (options.box_threshold).")
    first = [b for b in boxes if b.frame == boxes[0].frame]
    listed = "; ".join(f"{b.label} at ({', '.join(f'{v:g}' for v in b.box)}), score {b.score:.2f}" for b in first[:5])
    listed += f"; and {len(first) - 5} more" if len(first) > 5 else ""
    where = ""
    if frames:
        on = sorted({b.frame for b in boxes})
        where = f" on {len(on)} of the {frames} frames looked at ({', '.join(map(str, on))}); on frame {on[0]}"
    return f"Found {asked}{where}: {listed}."
