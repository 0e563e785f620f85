"""How a diffusion backend is conditioned on the command text and the planner's signal embedding.

The rule (the models-file option `conditioning`, default `auto`):

- `text`: the command, through the pipeline's own text encoder: `prompt_embeds` [1, 77, d].
- `signal`: the signal alone: the empty prompt's encoding followed by the k signal vectors, [1, 77 + k, d]
  (the empty prompt keeps the start token and positions the UNet was trained on; the command is ignored).
- `both`: the command's encoding followed by the k signal vectors, [1, 77 + k, d]: cross-attention reads the
  signal as k more prompt tokens, as VITRON feeds its signal features to the specialists.
- `auto`: `both` when the invocation carries a signal, else `text`.

The unconditional side of classifier-free guidance is the empty prompt's encoding followed by k zero vectors
(zero keys and values: the extra tokens add nothing there), so both sides have the same shape.

The signal's task-specific part is read in the backend's own width d (the UNet's cross-attention width: 768 for
SD 1.5, 2048 for SDXL…; SAM's prompt width). A signal of another width goes through the adapter fitted for its
planner and these weights (`tools.real.adapters`, `vitron planner align`) first; one that still does not fit is
left out: the step runs on its text and region (`text` in place of `signal` mode) and the job notes why.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import numpy as np
import torch

from schemas import InvalidInput, ModelSpec, SignalEmbedding, resolve_module

from ..base import ToolContext
from .adapters import find_adapter

ConditioningMode = Literal["auto", "text", "signal", "both"]
MODES: tuple[str, ...] = ("auto", "text", "signal", "both")


def conditioning_mode(options: dict[str, Any]) -> ConditioningMode:
    mode = options.get("conditioning", "auto")
    if mode not in MODES:
        raise InvalidInput(f"unknown conditioning {mode!r}", field="conditioning",
                           fix=f"set `options: {{conditioning: …}}` in the models file to one of {', '.join(MODES)}")
    return mode


def signal_tokens(signal: SignalEmbedding | None, width: int, ctx: ToolContext, spec: ModelSpec, module: str,
                  role: str = "main", *, device: torch.device | str = "cpu",
                  dtype: torch.dtype = torch.float32) -> torch.Tensor | None:
    """The signal's task-specific part as [1, k, width] prompt tokens, through the adapter fitted for its planner and
    these `role` weights when there is one; None when there is no signal, or when it does not fit (then the job
    notes that it was left out: a step never fails on a signal's width)."""
    if signal is None:
        return None
    tokens = np.asarray(signal.task_specific, dtype=np.float32)
    try:
        adapter = find_adapter(ctx.settings.home, signal.source, module, spec, role)
    except InvalidInput as exc:  # a damaged adapter file: the step goes on without the signal, and says why
        ctx.note(f"{resolve_module(module).name}: the planner's signal was left out: {exc.message}")
        return None
    if adapter is not None and tokens.ndim == 2 and tokens.shape[1] == adapter.in_width:
        tokens = adapter.apply(tokens)
    if tokens.ndim != 2 or tokens.shape[1] != width:
        ctx.note(left_out_note(list(np.shape(signal.task_specific)), width, module, spec, role,
                               adapter_width=None if adapter is None else adapter.in_width))
        return None
    return torch.as_tensor(tokens).unsqueeze(0).to(device=device, dtype=dtype)


def left_out_note(shape: list[int], width: int, module: str, spec: ModelSpec, role: str = "main", *,
                  adapter_width: int | None = None) -> str:
    """What a job says of a signal it left out, and how to make it fit (`adapter_width`: the input width of the
    adapter found for this planner and these weights, when one was)."""
    name = resolve_module(module).name
    reader = spec.backend if role == "main" else f"{spec.backend} ({role})"
    why = ("no adapter is fitted for this planner and these weights" if adapter_width is None else
           f"the adapter fitted for this planner and these weights reads [k, {adapter_width}]")
    return (f"{name}: the planner's signal was left out: its task-specific part is {shape} but {reader} reads "
            f"[k, {width}] and {why}, so the step ran on its text and region. Fit one with "
            f"`vitron planner align --module {name}`.")


def combine(text: torch.Tensor, empty: torch.Tensor, tokens: torch.Tensor | None,
            mode: ConditioningMode) -> tuple[torch.Tensor, torch.Tensor]:
    """(prompt_embeds, negative_prompt_embeds) from the command's and the empty prompt's encodings."""
    if mode == "auto":
        mode = "both" if tokens is not None else "text"
    if mode == "text" or tokens is None:
        if mode == "signal":
            raise InvalidInput("conditioning is `signal` but the invocation has no signal embedding", field="signal",
                               fix="use a planner that emits signal embeddings, or set conditioning to auto or text")
        return text, empty
    tokens = tokens.to(device=text.device, dtype=text.dtype)
    first = empty if mode == "signal" else text
    return torch.cat([first, tokens], dim=1), torch.cat([empty, torch.zeros_like(tokens)], dim=1)


def encode_text(pipe: Any, text: str, device: torch.device) -> torch.Tensor:
    """The prompt encoding of a Stable-Diffusion-family pipeline ([1, 77, d]), without guidance duplication."""
    with torch.no_grad():
        embeds, _ = pipe.encode_prompt(text, device, 1, False)
    return embeds


def prompt_condition(pipe: Any, command: str, signal: SignalEmbedding | None, ctx: ToolContext, spec: ModelSpec,
                     module: str, role: str = "main", *, device: torch.device,
                     encode: Callable[[Any, str, torch.device], torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """`prompt_embeds` and `negative_prompt_embeds` for a pipeline call, by the rule above, with the pipeline of
    `module`'s `role` weights.

    encode: the prompt encoding [1, 77, d]; default the pipeline's own `encode_prompt` (SD, SDXL's aside), else
    `encode_clip` for pipelines without one (InstructPix2Pix, I2VGenXL)."""
    encode = encode or encode_text
    tokens = signal_tokens(signal, int(pipe.unet.config.cross_attention_dim), ctx, spec, module, role, device=device)
    text, empty = encode(pipe, command, device), encode(pipe, "", device)
    positive, negative = combine(text, empty, tokens, signal_mode(spec.options, signal, tokens))
    return {"prompt_embeds": positive, "negative_prompt_embeds": negative}


def signal_mode(options: dict[str, Any], signal: SignalEmbedding | None,
                tokens: torch.Tensor | None) -> ConditioningMode:
    """The models file's conditioning mode, except that a signal left out leaves the step its text."""
    mode = conditioning_mode(options)
    return "text" if signal is not None and tokens is None else mode


def encode_clip(pipe: Any, text: str, device: torch.device, *, penultimate: bool = False) -> torch.Tensor:
    """A CLIP prompt encoding [1, 77, d], as SD-family pipelines compute it; `penultimate` reads the last-but-one
    layer through the final layer norm (I2VGenXL's `clip_skip=1`). For pipelines without SD's `encode_prompt`."""
    ids = pipe.tokenizer(text, padding="max_length", max_length=pipe.tokenizer.model_max_length, truncation=True,
                         return_tensors="pt").input_ids
    encoder = pipe.text_encoder
    with torch.no_grad():
        out = encoder(ids.to(device), output_hidden_states=penultimate)
        if not penultimate:
            return out[0].to(device)
        # transformers 5 keeps the final norm on CLIPTextModel itself; older versions under `.text_model`.
        norm = getattr(encoder, "text_model", encoder).final_layer_norm
        return norm(out.hidden_states[-2]).to(device)
