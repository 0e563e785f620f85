"""The mini planner's trained parts: a tagger over frozen MiniLM states, an intent head, and the signal heads.

Every wordpiece of the request gets a tag (`O`, or `B-`/`I-` and one of `compose.TAGS`), and the request one
intent (`data.INTENTS`), the way joint intent and slot-filling models read an utterance. Instructions are then
spans of the user's own words (`compose.compose`), so the planner can neither repeat a word nor invent one, and
unseen nouns cost nothing. The softmax of each decision is the reading's confidence. A step's signal embedding is
projected from the tagger's states over the step's words: per module (task-specific) and by one shared head
(task-invariant), as VITRON projects the LLM's states at its signal tokens.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from schemas import BackendUnavailable

from .inference import (
    ABLATION_FILE,
    CONFIG_FILE,
    INTENTS,
    MODULE_CODES,
    TAG_NAMES,
    WEIGHTS_FILE,
    MiniConfig,
    read_config,
)


def _mlp(n_in: int, bottleneck: int, n_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(n_in, bottleneck), nn.GELU(), nn.Linear(bottleneck, n_out))


class SignalProjections(nn.Module):
    """VITRON's signal heads, slimmed for the repository: one task-specific MLP per module, one task-invariant."""

    def __init__(self, hidden: int, bottleneck: int, specific: int, invariant: int) -> None:
        super().__init__()
        self.task_specific = nn.ModuleDict({code: _mlp(hidden, bottleneck, specific) for code in MODULE_CODES})
        self.task_invariant = _mlp(hidden, bottleneck, invariant)

    def specific(self, codes: Sequence[str], hidden: torch.Tensor) -> torch.Tensor:
        """Row i through module codes[i]'s head: [n, H] → [n, d]."""
        out = hidden.new_zeros(hidden.shape[0], self.task_specific[MODULE_CODES[0]][-1].out_features)
        for code in set(codes):
            rows = torch.tensor([c == code for c in codes], device=hidden.device)
            out = out.masked_scatter(rows[:, None], self.task_specific[code](hidden[rows]))
        return out

    def forward(self, code: str, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.task_specific[code](hidden), self.task_invariant(hidden)


class MiniPlannerModel(nn.Module):
    """Tagger + intent head + signal heads over MiniLM states, for training (the planner runs `inference.py`)."""

    def __init__(self, config: MiniConfig) -> None:
        super().__init__()
        self.config = config
        d = config.width
        # dropout on the encoder's states: the tagger must read each word's context, not memorise the word
        read = config.encoder_size * len(config.encoder_layers)
        self.source = nn.Sequential(nn.Dropout(config.dropout * 2), nn.Linear(read, d), nn.LayerNorm(d))
        layer = nn.TransformerEncoderLayer(d, config.heads, config.feedforward, config.dropout, batch_first=True,
                                           norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, config.layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d)
        self.tag_out = nn.Linear(d, len(TAG_NAMES))
        self.intent_out = nn.Sequential(nn.Linear(2 * d, d), nn.GELU(), nn.Linear(d, len(INTENTS)))
        self.signals = SignalProjections(d, config.head_bottleneck, config.task_specific_size,
                                         config.task_invariant_size)

    def forward(self, states: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Tag logits [b, s, tags], intent logits [b, intents] and tagger states [b, s, d] for MiniLM states
        [b, s, 384 * layers] with their real-token mask [b, s]."""
        hidden = self.norm(self.encoder(self.source(states), src_key_padding_mask=~mask))
        weights = mask[..., None].to(hidden.dtype)
        mean = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1)
        pooled = torch.cat([hidden[:, 0], mean], dim=-1)  # [CLS] and the mean of the words
        return self.tag_out(hidden), self.intent_out(pooled), hidden

    # -- files -------------------------------------------------------------------------------------------------

    def save(self, folder: Path, ablation_heads: dict[str, torch.Tensor] | None = None) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / CONFIG_FILE).write_text(json.dumps(asdict(self.config), indent=2) + "\n")
        # weights only: MiniLM itself comes from its package and is not stored here
        save_file({k: v.detach().contiguous() for k, v in self.state_dict().items()}, str(folder / WEIGHTS_FILE))
        if ablation_heads is not None:
            save_file({k: v.contiguous() for k, v in ablation_heads.items()}, str(folder / ABLATION_FILE))

    @classmethod
    def load(cls, folder: Path) -> MiniPlannerModel:
        model = cls(read_config(folder))
        try:
            model.load_state_dict(load_file(str(folder / WEIGHTS_FILE)))
        except (ValueError, RuntimeError, OSError) as exc:
            raise BackendUnavailable(f"the mini planner checkpoint in {folder} does not load: {exc}",
                                     field="planner", fix="train it again with this version") from exc
        return model.eval()

    def ablation_heads(self, folder: Path) -> SignalProjections:
        """The signal heads as they were before stage 3 (the synergy ablation)."""
        heads = SignalProjections(self.config.width, self.config.head_bottleneck, self.config.task_specific_size,
                                  self.config.task_invariant_size)
        path = folder / ABLATION_FILE
        if path.is_file():
            heads.load_state_dict({k.removeprefix("signals."): v for k, v in load_file(str(path)).items()})
        return heads.eval()
