"""The planner's model side: a vision-language (or text-only) LM that writes invocations and signal hidden states.

`VitronModel.load(folder)` reads a local folder (never the hub): a LLaVA, LLaVA-OneVision or Qwen2-VL-family model
(any `AutoModelForImageTextToText` one whose processor names its image token; `vitron_families`) or a plain causal
LM. `generate` answers a prompt with optional images and returns the text with the module tokens kept plus the
last-layer hidden states at the `[SIG]` tokens, and `embed_signals` projects those per module through `SignalHeads`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from schemas import BackendUnavailable, InvalidInput, ModelsFile, UnsupportedOperation, VitronSettings, resolve_module

from .vitron_families import (
    IMAGE_TOKEN,
    image_placeholder,
    reads_images,
    text_hidden_size,
    vision_token_ids,
    vision_tokens,
)

SIGNAL_TOKEN = "[SIG]"
MODULE_TOKENS: tuple[str, ...] = (
    "<module>",
    "</module>",
    "<instruction>",
    "</instruction>",
    "<region>",
    "</region>",
    "<input>",
    "</input>",
)
SPECIAL_TOKENS: tuple[str, ...] = (*MODULE_TOKENS, SIGNAL_TOKEN)
"""Every token the planner emits that must stay one token and survive decoding."""
MODEL_SETTING = "VITRON_PLANNER_MODEL"
"""The setting that names the planner model folder (a field of `VitronSettings`)."""

PLANNER_CONFIG = "vitron_planner.json"
"""In a trained planner's folder (`vitron planner train --base`): the base model folder its LoRA adapter is for."""
HEADS_CONFIG = "signal_heads.json"
HEADS_WEIGHTS = "signal_heads.safetensors"
MODULE_CODES: tuple[str, ...] = ("A", "B", "C", "D", "E", "F", "G")
DEFAULT_TASK_SPECIFIC_SIZES: dict[str, int] = {
    "A": 768,  # CLIP text space (Stable Diffusion 1.5 / GLIGEN cross-attention)
    "B": 256,  # SAM sparse prompt space
    "C": 768,
    "D": 1024,  # ZeroScope's cross-attention (OpenCLIP ViT-H text space)
    "E": 256,
    "F": 768,
    "G": 1024,  # I2VGen-XL's cross-attention
}
"""Head widths for modules with no backend configured: the widths of the default real backends."""
DEFAULT_TASK_INVARIANT_SIZE = 512


def backend_widths(models: ModelsFile | None = None) -> dict[str, int]:
    """Each module's head width: the width its configured backend reads (the models file; default the settings'),
    else `DEFAULT_TASK_SPECIFIC_SIZES`."""
    from tools.real.targets import signal_width

    if models is None:
        models = ModelsFile.load(VitronSettings().models_path)
    sizes = dict(DEFAULT_TASK_SPECIFIC_SIZES)
    for name, spec in models.modules.items():
        code, width = resolve_module(name).code, signal_width(spec, name)
        if width is not None and code in sizes:  # a module with no signal head (H) has no width to set
            sizes[code] = width
    return sizes


def add_signal_tokens(tokenizer: Any) -> int:
    """Add the module tokens and `[SIG]` as special tokens (each one token); return how many were new."""
    from tokenizers import AddedToken

    vocab = tokenizer.get_vocab()
    missing = [t for t in SPECIAL_TOKENS if t not in vocab]
    if not missing:
        return 0
    # `add_tokens(special_tokens=True)` is the same call in transformers 4 and 5 (the dict keys were renamed).
    tokens = [AddedToken(t, special=True, normalized=False, single_word=False) for t in missing]
    return tokenizer.add_tokens(tokens, special_tokens=True)


def _unavailable(folder: Path, problem: str) -> BackendUnavailable:
    return BackendUnavailable(
        f"planner model folder {folder}: {problem}",
        field=MODEL_SETTING,
        fix=f"set {MODEL_SETTING} to a local folder holding config.json, the weights, the tokenizer "
        f"(and the processor for a vision-language model), {HEADS_CONFIG} and {HEADS_WEIGHTS}",
    )


def _mlp(n_in: int, n_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(n_in, n_out), nn.GELU(), nn.Linear(n_out, n_out))


class SignalHeads(nn.Module):
    """Per-module projections of signal hidden states: task-specific (per letter) and task-invariant (shared)."""

    def __init__(
        self,
        hidden_size: int,
        task_specific_sizes: Mapping[str, int] | None = None,
        task_invariant_size: int = DEFAULT_TASK_INVARIANT_SIZE,
        models: ModelsFile | None = None,
    ) -> None:
        """Widths left out of `task_specific_sizes` are those the configured backends read (`models`, default the
        settings' models file; see `backend_widths`)."""
        super().__init__()
        given = dict(task_specific_sizes or {})
        defaults = DEFAULT_TASK_SPECIFIC_SIZES if set(MODULE_CODES) <= set(given) else backend_widths(models)
        sizes = {**defaults, **given}
        unknown = set(sizes) - set(MODULE_CODES)
        if unknown:
            raise InvalidInput(f"unknown module letters {sorted(unknown)}", field="task_specific_sizes")
        self.hidden_size = hidden_size
        self.task_specific_sizes = {code: int(sizes[code]) for code in MODULE_CODES}
        self.task_invariant_size = int(task_invariant_size)
        self.task_specific = nn.ModuleDict({code: _mlp(hidden_size, d) for code, d in self.task_specific_sizes.items()})
        self.task_invariant = _mlp(hidden_size, self.task_invariant_size)

    @property
    def config(self) -> dict[str, Any]:
        return {
            "hidden_size": self.hidden_size,
            "task_specific_sizes": dict(self.task_specific_sizes),
            "task_invariant_size": self.task_invariant_size,
        }

    def forward(self, module_letter: str, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`hidden` [k, H] → (task_specific [k, d_module], task_invariant [k, e]); letters or module names."""
        code = resolve_module(module_letter).code
        if hidden.ndim != 2 or hidden.shape[1] != self.hidden_size:
            raise InvalidInput(
                f"expected hidden states of shape [k, {self.hidden_size}], got {list(hidden.shape)}",
                field="hidden",
                fix="pass Generation.signal_hidden from the same model these heads were trained with",
            )
        first = self.task_invariant[0].weight
        hidden = hidden.to(device=first.device, dtype=first.dtype)  # the LM may run in bf16; heads stay fp32
        return self.task_specific[code](hidden), self.task_invariant(hidden)

    def save(self, folder: Path) -> None:
        """Write `signal_heads.json` and `signal_heads.safetensors` into `folder`."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / HEADS_CONFIG).write_text(json.dumps(self.config, indent=2))
        state = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        save_file(state, str(folder / HEADS_WEIGHTS))

    @classmethod
    def load(cls, folder: Path) -> SignalHeads:
        """Read the heads saved by `save`; missing files raise `BackendUnavailable` naming the folder."""
        folder = Path(folder)
        for name in (HEADS_CONFIG, HEADS_WEIGHTS):
            if not (folder / name).is_file():
                raise _unavailable(folder, f"{name} is missing (the signal heads)")
        config = json.loads((folder / HEADS_CONFIG).read_text())
        heads = cls(
            int(config["hidden_size"]),
            config.get("task_specific_sizes"),
            int(config.get("task_invariant_size", DEFAULT_TASK_INVARIANT_SIZE)),
        )
        try:
            heads.load_state_dict(load_file(str(folder / HEADS_WEIGHTS)))
        except RuntimeError as exc:  # shapes disagree with the json
            raise _unavailable(folder, f"{HEADS_WEIGHTS} does not match {HEADS_CONFIG}: {exc}") from exc
        return heads


@dataclass
class Generation:
    """One reply: text with the module tokens kept, signal hidden states, generated ids."""

    text: str
    """Decoded reply WITH `<module>`, `<instruction>`, `[SIG]`… kept; bos/eos/pad (and image tokens) dropped."""
    signal_hidden: torch.Tensor
    """[n_signal_tokens, hidden_size]: last-layer hidden state that emitted each `[SIG]`, in order."""
    token_ids: list[int]
    """The generated ids (prompt excluded), as the model produced them."""


class _ForceSequence:
    """Logits processor that allows only the next id of `target`, then eos: makes any model emit `target`."""

    def __init__(self, target: Sequence[int], prompt_length: int, eos_token_id: int) -> None:
        self.target = list(target)
        self.prompt_length = prompt_length
        self.eos_token_id = eos_token_id

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        step = input_ids.shape[1] - self.prompt_length
        allowed = self.target[step] if step < len(self.target) else self.eos_token_id
        forced = torch.full_like(scores, float("-inf"))
        forced[:, allowed] = 0.0
        return forced


class VitronModel:
    """A loaded planner LM with its tokenizer (and processor for images) and signal heads. Load once, reuse."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        heads: SignalHeads,
        processor: Any | None = None,
        device: str | torch.device = "cpu",
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.heads = heads
        self.processor = processor
        self.device = torch.device(device)
        vocab = tokenizer.get_vocab()
        self.signal_token_id: int = vocab[SIGNAL_TOKEN]
        eos = tokenizer.eos_token_id
        self.eos_token_id: int | None = eos
        self.pad_token_id: int | None = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
        config = getattr(model, "config", None)
        self.image_placeholder: str = IMAGE_TOKEN
        """What the processor reads for one picture, in place of the prompt's `<image>` (Qwen2-VL:
        `<|vision_start|><|image_pad|><|vision_end|>`)."""
        self._vision_tokens: tuple[str, ...] = ()
        picture_ids: set[int] = set()
        if processor is not None:
            placeholder = image_placeholder(processor, config)
            if placeholder is None:
                raise UnsupportedOperation(
                    f"the processor {type(processor).__name__} names no image token, so no picture can be placed",
                    field=MODEL_SETTING,
                    fix=f"point {MODEL_SETTING} at a LLaVA, LLaVA-OneVision or Qwen2-VL-family model folder",
                )
            self.image_placeholder = placeholder
            self._vision_tokens = vision_tokens(processor, config)
            picture_ids = vision_token_ids(processor, config)
        # Ids the reply text never shows; the module tokens are special too but the grammar needs them.
        hidden = {tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id, vocab.get(IMAGE_TOKEN),
                  *picture_ids}
        self._hidden_ids = {i for i in hidden if i is not None}

    @property
    def is_multimodal(self) -> bool:
        return self.processor is not None

    @property
    def hidden_size(self) -> int:
        return self.heads.hidden_size

    @classmethod
    def load(cls, folder: Path, device: str | torch.device = "cpu", dtype: torch.dtype | None = None,
             heads: SignalHeads | None = None) -> VitronModel:
        """Load model, tokenizer/processor and signal heads from a local folder (local_files_only).

        A trained planner's folder (a LoRA adapter, `PLANNER_CONFIG` naming its base) loads the base's weights with
        the adapter folded in, and the folder's tokenizer and heads. `dtype` None means float32 on CPU and the
        checkpoint's own dtype ("auto") elsewhere; `heads` replace the folder's (training a base that has none).
        """
        from transformers import AutoConfig, AutoModelForCausalLM, AutoProcessor, AutoTokenizer

        folder = Path(folder).expanduser()
        if not folder.is_dir():
            raise _unavailable(folder, "the folder does not exist")
        weights = _base_of(folder)
        if not (weights / "config.json").is_file():
            raise _unavailable(folder, f"config.json is missing{'' if weights == folder else f' in {weights}'}")
        heads = heads if heads is not None else SignalHeads.load(folder)  # cheap; fail before loading big weights
        load_dtype: Any = (
            dtype if dtype is not None else (torch.float32 if torch.device(device).type == "cpu" else "auto")
        )
        try:
            config = AutoConfig.from_pretrained(weights, local_files_only=True)
            processor = None
            if reads_images(config):
                processor = AutoProcessor.from_pretrained(folder, local_files_only=True)
                tokenizer = processor.tokenizer
                model = _vision_language_class().from_pretrained(weights, local_files_only=True, dtype=load_dtype)
            else:
                tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
                model = AutoModelForCausalLM.from_pretrained(weights, local_files_only=True, dtype=load_dtype)
            text_hidden = text_hidden_size(config)
        except (OSError, ValueError, KeyError) as exc:  # missing files, unreadable config, a family with no auto class
            raise _unavailable(folder, f"cannot load the model: {exc}") from exc
        if heads.hidden_size != text_hidden:
            raise _unavailable(
                folder, f"{HEADS_CONFIG} says hidden_size {heads.hidden_size} but the LM has {text_hidden}"
            )
        add_signal_tokens(tokenizer)
        if model.get_input_embeddings().num_embeddings < len(tokenizer):
            # A base checkpoint without rows for the planner tokens: give them (untrained) rows so the path runs. One
            # whose rows run past its tokenizer (Qwen2-VL: 151,936 rows, 151,657 tokens) has them already: no shrink.
            model.resize_token_embeddings(len(tokenizer))
        if weights != folder:
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, folder).merge_and_unload()  # the adapter folded in: one model
        model.to(device)
        model.eval()
        heads.to(device)
        heads.eval()
        return cls(model, tokenizer, heads, processor=processor, device=device)

    def encode(self, prompt: str, images: Sequence[np.ndarray] | None = None) -> dict[str, torch.Tensor]:
        """Model inputs for `prompt` and images (one `<image>` per image; prefixed unless the prompt places them).

        Each `<image>` becomes the family's own placeholder, which its processor expands into the vision tokens.
        """
        images = list(images or [])
        for token in self._vision_tokens:  # the family's own picture tokens typed in the text would shift the pictures
            if token != IMAGE_TOKEN:
                prompt = prompt.replace(token, "[image]")
        if not images:
            if self.processor is not None and IMAGE_TOKEN in prompt:
                raise InvalidInput(f"the prompt holds {IMAGE_TOKEN} but no image was given", field="images")
            batch = self.tokenizer(prompt, return_tensors="pt")
            return {k: v.to(self.device) for k, v in batch.items()}
        if self.processor is None:
            raise UnsupportedOperation(
                "this planner model is text-only and reads no images",
                field="images",
                fix=f"point {MODEL_SETTING} at a LLaVA-style model folder, or send no images",
            )
        pil_images = [_to_pil(image, i) for i, image in enumerate(images)]
        placed = prompt.count(IMAGE_TOKEN)
        if placed == 0:
            prompt = f"{IMAGE_TOKEN}\n" * len(images) + prompt
        elif placed != len(images):
            raise InvalidInput(
                f"the prompt places {placed} {IMAGE_TOKEN} tokens but {len(images)} images were given",
                field="prompt",
                fix=f"place one {IMAGE_TOKEN} per image, or none to have them prefixed",
            )
        prompt = prompt.replace(IMAGE_TOKEN, self.image_placeholder)
        # One prompt's pictures as one sample's (LLaVA-OneVision reads several pictures of a sample as multi-image).
        batch = self.processor(images=[pil_images], text=prompt, return_tensors="pt")
        dtype = self.model.dtype
        return {k: v.to(self.device, dtype=dtype if v.is_floating_point() else None)
                for k, v in batch.items() if isinstance(v, torch.Tensor)}

    def extend(self, inputs: Mapping[str, torch.Tensor], ids: torch.Tensor) -> dict[str, torch.Tensor]:
        """`inputs` (from `encode`) followed by the text tokens `ids` [1, n]: the per-token tensors grow with them
        (the attention mask by ones; token types, such as Qwen2-VL's `mm_token_type_ids`, by text's zeros)."""
        length = inputs["input_ids"].shape[1]
        ids = ids.to(inputs["input_ids"].device)
        out = dict(inputs)
        for key, value in inputs.items():
            if key == "input_ids":
                out[key] = torch.cat([value, ids], dim=1)
            elif value.shape == (1, length) and not value.is_floating_point():
                fill = torch.ones_like(ids) if key == "attention_mask" else torch.zeros_like(ids)
                out[key] = torch.cat([value, fill.to(value.dtype)], dim=1)
        return out

    def generate(
        self,
        prompt: str,
        images: Sequence[np.ndarray] | None = None,
        max_new_tokens: int = 128,
        *,
        force_sequence: str | Sequence[int] | None = None,
    ) -> Generation:
        """Greedy reply to `prompt` (+ RGB uint8 HxWx3 images or video frames), with the `[SIG]` hidden states.

        `force_sequence` (tests and demos only) makes the model emit exactly that text or those ids, then eos,
        whatever its weights, so the hidden-state path can be checked with a random model.
        """
        inputs = self.encode(prompt, images)
        prompt_length = inputs["input_ids"].shape[1]
        kwargs: dict[str, Any] = {
            "max_new_tokens": max_new_tokens,
            "do_sample": False,  # a plan should not depend on the dice
            "output_hidden_states": True,
            "return_dict_in_generate": True,
            "pad_token_id": self.pad_token_id,
            "eos_token_id": self.eos_token_id,
        }
        if force_sequence is not None:
            from transformers import LogitsProcessorList

            target = (
                self.tokenizer.encode(force_sequence, add_special_tokens=False)
                if isinstance(force_sequence, str)
                else list(force_sequence)
            )
            if self.eos_token_id is None:
                raise InvalidInput("force_sequence needs a tokenizer with an eos token", field="force_sequence")
            kwargs["logits_processor"] = LogitsProcessorList([_ForceSequence(target, prompt_length, self.eos_token_id)])
        with torch.inference_mode():
            out = self.model.generate(**inputs, **kwargs)
        generated = out.sequences[0, prompt_length:].tolist()
        # hidden_states[step][-1] is the last layer for that step; its last position is the state that
        # predicted generated token `step` (LISA's convention for [SEG]; also defined when [SIG] comes last).
        rows = [
            step[-1][0, -1]
            for token, step in zip(generated, out.hidden_states, strict=False)
            if token == self.signal_token_id
        ]
        signal_hidden = torch.stack(rows).float() if rows else torch.zeros(0, self.hidden_size, device=self.device)
        text = self.tokenizer.decode(
            [t for t in generated if t not in self._hidden_ids],
            skip_special_tokens=False,
            clean_up_tokenization_spaces=False,
        )
        return Generation(text=text, signal_hidden=signal_hidden, token_ids=generated)

    def embed_signals(self, module_letter: str, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Project signal hidden states [k, H] for a module: (task_specific [k, d], task_invariant [k, 512])."""
        with torch.inference_mode():
            return self.heads(module_letter, hidden)


def _vision_language_class() -> Any:
    """transformers' auto class for vision-language models (`AutoModelForVision2Seq` in older releases)."""
    import transformers

    return getattr(transformers, "AutoModelForImageTextToText", None) or transformers.AutoModelForVision2Seq


def _base_of(folder: Path) -> Path:
    """Where a planner folder's weights are: its base's folder for a trained adapter, else the folder itself."""
    config = folder / PLANNER_CONFIG
    if not (folder / "adapter_config.json").is_file() or not config.is_file():
        return folder
    try:
        return Path(json.loads(config.read_text())["base"])
    except (ValueError, KeyError, TypeError) as exc:
        raise _unavailable(folder, f"{PLANNER_CONFIG} does not name the base model: {exc}") from exc


def _to_pil(image: np.ndarray, index: int) -> Any:
    from PIL import Image

    # PIL images leave no doubt about channel order, unlike a bare HxWx3 array the processor must guess.
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        got = f"{type(image).__name__} {getattr(image, 'shape', '')} {getattr(image, 'dtype', '')}".strip()
        raise InvalidInput(f"expected an RGB uint8 HxWx3 array, got {got}", field=f"images[{index}]")
    return Image.fromarray(image)
