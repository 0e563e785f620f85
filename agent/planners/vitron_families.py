"""What differs between the vision-language families a VITRON planner may be built on, found from the model itself.

A folder whose config names a vision-language model (LLaVA, LLaVA-OneVision, Qwen2-VL, Qwen2.5-VL, …) loads through
`AutoModelForImageTextToText` and its own `AutoProcessor`; anything else is a plain causal LM. The planner's prompt
marks each picture with `<image>` (`IMAGE_TOKEN`); `image_placeholder` is what the family's processor wants in its
place (`<image>` for the LLaVAs, `<|vision_start|><|image_pad|><|vision_end|>` for Qwen2-VL), and training finds the
vision tower (frozen) and the language model (LoRA's targets) by the attributes transformers gives them.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import nn

IMAGE_TOKEN = "<image>"
"""The planner's mark for one picture in its prompt (what `prompt_text` writes)."""
VISION_ATTRIBUTES = ("vision_tower", "visual", "vision_model", "vision_encoder", "image_tower")
"""Where transformers' vision-language models keep their vision encoder (LLaVA's `vision_tower`, Qwen2-VL's
`visual`), on the model or on its inner `model`."""
LANGUAGE_ATTRIBUTES = ("language_model", "text_model", "decoder")


def reads_images(config: Any) -> bool:
    """Whether a model config is a vision-language model's (one with a vision config)."""
    return getattr(config, "vision_config", None) is not None


def text_config(config: Any) -> Any:
    """The language model's part of a config (the config itself for a plain LM)."""
    get = getattr(config, "get_text_config", None)
    if get is not None:
        return get()
    return getattr(config, "text_config", None) or config


def text_hidden_size(config: Any) -> int:
    """The width of the language model's hidden states: what the signal heads read."""
    return int(text_config(config).hidden_size)


def image_placeholder(processor: Any, config: Any) -> str | None:
    """What stands for one picture in the text given to this family's processor, which expands it into the vision
    tokens; None when the processor names no image token (a family this planner cannot feed pictures to)."""
    token = getattr(processor, "image_token", None)
    if not isinstance(token, str) or not token:
        return None
    # Qwen's chat template writes each picture's pad token between the vision start and end tokens, and its model
    # reads the pictures' positions (M-RoPE) from them; the config names both.
    start, end = getattr(config, "vision_start_token_id", None), getattr(config, "vision_end_token_id", None)
    if start is not None and end is not None:
        tokenizer = processor.tokenizer
        return f"{tokenizer.convert_ids_to_tokens(start)}{token}{tokenizer.convert_ids_to_tokens(end)}"
    return token


def vision_token_ids(processor: Any, config: Any) -> set[int]:
    """Ids of the tokens that stand for pictures (image and video pads, vision start and end): never reply text."""
    ids = {getattr(processor, "image_token_id", None), getattr(processor, "video_token_id", None)}
    for name in ("image_token_id", "image_token_index", "video_token_id", "video_token_index",
                 "vision_start_token_id", "vision_end_token_id"):
        ids.add(getattr(config, name, None))
    return {i for i in ids if isinstance(i, int) and i >= 0}


def vision_tokens(processor: Any, config: Any) -> tuple[str, ...]:
    """The text of the picture tokens, longest first: a prompt must not hold them, or the pictures shift."""
    tokenizer = processor.tokenizer
    names = {tokenizer.convert_ids_to_tokens(i) for i in vision_token_ids(processor, config)}
    return tuple(sorted((n for n in names if isinstance(n, str) and n), key=len, reverse=True))


def _inner(model: Any) -> list[Any]:
    """The model and, for a `…ForConditionalGeneration`/`…ForCausalLM`, the base model inside it."""
    base = getattr(model, "model", None)
    return [model] if base is None or base is model else [model, base]


def vision_tower(model: Any) -> nn.Module | None:
    """The model's vision encoder; None for a text-only LM."""
    for holder in _inner(model):
        for name in VISION_ATTRIBUTES:
            found = getattr(holder, name, None)
            if found is not None:
                return found
    return None


def language_model(model: Any) -> nn.Module:
    """The decoder stack of the language model (for a plain causal LM, its base model)."""
    for holder in _inner(model):
        for name in LANGUAGE_ATTRIBUTES:
            found = getattr(holder, name, None)
            if found is not None:
                return found
    inner = _inner(model)
    return inner[-1]


def module_name(model: nn.Module, part: nn.Module) -> str:
    """`part`'s qualified name inside `model` ("" for the model itself)."""
    for name, module in model.named_modules():
        if module is part:
            return name
    raise ValueError(f"{type(part).__name__} is not part of {type(model).__name__}")


def lora_targets(model: nn.Module) -> str:
    """A regex (peft matches it against each module's full name) for every linear layer inside the language model's
    decoder layers, as QLoRA adapts them: never the vision tower's, the projector's or the output layer."""
    from torch import nn

    lm = language_model(model)
    prefix = module_name(model, lm)
    output = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    patterns = set()
    for name, module in lm.named_modules():
        if isinstance(module, nn.Linear) and module is not output and re.search(r"(?:^|\.)\d+\.", name):
            full = f"{prefix}.{name}" if prefix else name
            # one pattern per projection, whatever its layer: `model.language_model.layers.\d+.self_attn.q_proj`
            patterns.add(re.sub(r"\\\.\d+\\\.", r"\\.\\d+\\.", re.escape(full)))
    if not patterns:
        raise ValueError(f"no linear layers in the decoder layers of {type(model).__name__}'s language model")
    return "(?:" + "|".join(sorted(patterns)) + ")"


def embedding_names(model: nn.Module) -> tuple[str, str | None]:
    """The qualified names of the input embedding and of the output layer (None when tied to the input one)."""
    inputs = model.get_input_embeddings()
    outputs = model.get_output_embeddings()
    tied = outputs is None or outputs.weight is inputs.weight
    return module_name(model, inputs), None if tied else module_name(model, outputs)


__all__ = ["IMAGE_TOKEN", "embedding_names", "image_placeholder", "language_model", "lora_targets", "reads_images",
           "text_hidden_size", "vision_token_ids", "vision_tokens", "vision_tower"]
