"""The mini planner's trained parts: a small pointer-generator decoder over frozen MiniLM states, and signal heads.

Each output token is either one of a few grammar fragments (a module letter opening a block, `</instruction>`,
`@1`…`@9`, `@` opening an alias, `<signal/>`, end) or a copy of a source wordpiece, so instructions and aliases
are the user's own words (typos and all) and unseen words cost nothing. Decoding is greedy and constrained to
the grammar's shape, so every output prints as a parseable plan. The decoder state that emits `<signal/>` is
projected per module (task-specific) and by one shared head (task-invariant), as VITRON does.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from schemas import BackendUnavailable

from .data import PREFIX

MODULE_CODES: tuple[str, ...] = tuple(PREFIX)
FIXED: tuple[str, ...] = ("[PAD]", "[BOS]", "[EOS]", *MODULE_CODES, "</instruction>",
                          *(f"@{n}" for n in range(1, 10)), "@", "<signal/>")
"""The fixed output vocabulary; anything else the decoder writes is copied from the source."""
TOKEN = {name: index for index, name in enumerate(FIXED)}
PAD, BOS, EOS = TOKEN["[PAD]"], TOKEN["[BOS]"], TOKEN["[EOS]"]
END_INSTRUCTION, ALIAS, SIGNAL = TOKEN["</instruction>"], TOKEN["@"], TOKEN["<signal/>"]
MODULE_IDS = {code: TOKEN[code] for code in MODULE_CODES}
STEP_REF_IDS = {n: TOKEN[f"@{n}"] for n in range(1, 10)}
N_FIXED = len(FIXED)

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
ABLATION_FILE = "ablation_heads.safetensors"
MAX_STEPS = 9
MAX_WORDPIECES = 48  # per instruction
MAX_ALIAS_PIECES = 6
MAX_INPUTS = 3
MAX_OUTPUT = 160


@dataclass
class MiniConfig:
    """Sizes of the trained parts (MiniLM's own config comes with the package)."""

    encoder_size: int = 384
    width: int = 192
    layers: int = 2
    heads: int = 4
    feedforward: int = 384
    dropout: float = 0.1
    max_positions: int = MAX_OUTPUT + 1
    head_bottleneck: int = 128
    task_specific_size: int = 384  # MiniLM sentence-embedding space, the embedded backend's encoder
    task_invariant_size: int = 384
    extra: dict[str, Any] = field(default_factory=dict)  # provenance: seed, data sizes, training time


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
    """Decoder + pointer + signal heads. `forward` is teacher-forced; `decode` plans one request."""

    def __init__(self, config: MiniConfig) -> None:
        super().__init__()
        self.config = config
        d = config.width
        self.source = nn.Sequential(nn.Linear(config.encoder_size, d), nn.LayerNorm(d))
        self.embed = nn.Embedding(N_FIXED, d)
        self.copied = nn.Linear(d, d)  # a copied token is fed back as (a projection of) its source state
        self.position = nn.Embedding(config.max_positions, d)
        layer = nn.TransformerDecoderLayer(d, config.heads, config.feedforward, config.dropout, batch_first=True,
                                           norm_first=True)
        self.decoder = nn.TransformerDecoder(layer, config.layers)
        self.norm = nn.LayerNorm(d)
        self.generate_out = nn.Linear(d, N_FIXED)
        self.copy_query = nn.Linear(d, d)
        self.copy_key = nn.Linear(d, d)
        self.signals = SignalProjections(d, config.head_bottleneck, config.task_specific_size,
                                         config.task_invariant_size)

    # -- teacher forcing ---------------------------------------------------------------------------------------

    def inputs_embedding(self, tokens: torch.Tensor, source: torch.Tensor, start: int = 0) -> torch.Tensor:
        """Embeddings of output tokens [b, t] (the first at position `start`): fixed ones from the table, copies
        from their source states."""
        fixed = self.embed(tokens.clamp(max=N_FIXED - 1))
        index = (tokens - N_FIXED).clamp(min=0, max=source.shape[1] - 1)
        copied = self.copied(torch.gather(source, 1, index[..., None].expand(-1, -1, source.shape[-1])))
        is_copy = (tokens >= N_FIXED)[..., None]
        positions = torch.arange(start, start + tokens.shape[1], device=tokens.device)
        positions = positions.clamp(max=self.config.max_positions - 1)
        return torch.where(is_copy, copied, fixed) + self.position(positions)[None]

    def forward(self, encoder_states: torch.Tensor, source_mask: torch.Tensor, copyable: torch.Tensor,
                tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits [b, t, N_FIXED + s] over fixed tokens then source positions, and decoder states [b, t, d]."""
        source = self.source(encoder_states)
        x = self.inputs_embedding(tokens, source)
        length = tokens.shape[1]
        causal = torch.ones(length, length, dtype=torch.bool, device=tokens.device).triu(1)
        hidden = self.decoder(x, source, tgt_mask=causal, tgt_key_padding_mask=tokens == PAD,
                              memory_key_padding_mask=~source_mask, tgt_is_causal=True)
        hidden = self.norm(hidden)
        return self._logits(hidden, source, copyable), hidden

    def _logits(self, hidden: torch.Tensor, source: torch.Tensor, copyable: torch.Tensor,
                keys: torch.Tensor | None = None) -> torch.Tensor:
        generate = self.generate_out(hidden)
        keys = self.copy_key(source) if keys is None else keys
        copy = self.copy_query(hidden) @ keys.transpose(1, 2) / math.sqrt(hidden.shape[-1])
        copy = copy.masked_fill(~copyable[:, None, :], -1e4)
        return torch.cat([generate, copy], dim=-1)

    # -- greedy decoding ---------------------------------------------------------------------------------------

    @torch.inference_mode()
    def decode(self, encoder_states: torch.Tensor, copyable: torch.Tensor) -> Decoded:
        """Greedy, grammar-constrained decoding of one request ([1, s, H] states, [1, s] copyable)."""
        source = self.source(encoder_states)
        allowed_copies = copyable[0].clone()
        state = _State(n_source=source.shape[1], any_copy=bool(allowed_copies.any()))
        tokens = [BOS]
        hiddens: list[torch.Tensor] = []
        caches: list[list[torch.Tensor]] = [[] for _ in self.decoder.layers]
        cross = self._cross_keys(source)
        copy_keys = self.copy_key(source)
        x_next = self.inputs_embedding(torch.tensor([tokens]), source)
        while len(tokens) <= MAX_OUTPUT:
            last = self._step(x_next, caches, cross)
            logits = self._logits(last, source, copyable, copy_keys)[0, 0]
            mask = state.allowed(allowed_copies)
            if not mask.any():
                break
            choice = int(torch.argmax(logits.masked_fill(~mask, float("-inf"))))
            if choice == EOS:
                break
            if choice == SIGNAL:
                hiddens.append(last[0, 0].clone())
            state.take(choice)
            tokens.append(choice)
            x_next = self.inputs_embedding(torch.tensor([tokens[-1:]]), source, start=len(tokens) - 1)
        state.finish()
        signal = torch.stack(hiddens) if hiddens else torch.zeros(0, self.config.width)
        return Decoded(tokens=tokens[1:], steps=state.steps, signal_hidden=signal)

    def _cross_keys(self, source: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Each layer's cross-attention keys and values of the source, computed once per request."""
        d = self.config.width
        out = []
        for layer in self.decoder.layers:
            attention = layer.multihead_attn
            k, v = F.linear(source, attention.in_proj_weight[d:], attention.in_proj_bias[d:]).chunk(2, dim=-1)
            out.append((self._heads(k), self._heads(v)))
        return out

    def _step(self, x: torch.Tensor, caches: list[list[torch.Tensor]],
              cross: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
        """The decoder on one new position [1, 1, d] with cached keys and values (nn.TransformerDecoder keeps
        none, and recomputing the prefix every token costs latency). The same arithmetic as `forward` in eval
        mode: pre-norm layers, self-attention over the past, cross-attention, feed-forward."""
        d = self.config.width
        h = x
        for layer, cache, (cross_k, cross_v) in zip(self.decoder.layers, caches, cross, strict=True):
            attention = layer.self_attn
            q, k, v = F.linear(layer.norm1(h), attention.in_proj_weight, attention.in_proj_bias).chunk(3, dim=-1)
            cache.append(torch.stack([self._heads(k), self._heads(v)]))
            past = torch.cat(cache, dim=3) if len(cache) > 1 else cache[0]
            cache[:] = [past]
            h = h + attention.out_proj(self._merge(F.scaled_dot_product_attention(self._heads(q), past[0], past[1])))
            attention = layer.multihead_attn
            q = F.linear(layer.norm2(h), attention.in_proj_weight[:d], attention.in_proj_bias[:d])
            h = h + attention.out_proj(self._merge(F.scaled_dot_product_attention(self._heads(q), cross_k, cross_v)))
            h = h + layer.linear2(layer.activation(layer.linear1(layer.norm3(h))))
        return self.norm(h)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        """[1, t, d] → [1, heads, t, d / heads]."""
        return x.view(x.shape[0], x.shape[1], self.config.heads, -1).transpose(1, 2)

    @staticmethod
    def _merge(x: torch.Tensor) -> torch.Tensor:
        return x.transpose(1, 2).reshape(x.shape[0], x.shape[2], -1)

    # -- files -------------------------------------------------------------------------------------------------

    def save(self, folder: Path, ablation_heads: dict[str, torch.Tensor] | None = None) -> None:
        """config.json + model.safetensors (float16: the repository copy stays small), and the stage-2 heads."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / CONFIG_FILE).write_text(json.dumps(asdict(self.config), indent=2) + "\n")
        # the invariant head stays float32: rounding its (erased) last layer would put back a trace of the task
        save_file({k: v.detach().to(torch.float32 if k.startswith("signals.task_invariant") else torch.float16)
                   .contiguous() for k, v in self.state_dict().items()}, str(folder / WEIGHTS_FILE))
        if ablation_heads is not None:
            save_file({k: v.detach().to(torch.float16).contiguous() for k, v in ablation_heads.items()},
                      str(folder / ABLATION_FILE))

    @classmethod
    def load(cls, folder: Path) -> MiniPlannerModel:
        folder = Path(folder)
        for name in (CONFIG_FILE, WEIGHTS_FILE):
            if not (folder / name).is_file():
                raise BackendUnavailable(f"mini planner checkpoint {folder}: {name} is missing", field="planner",
                                         fix="train one with `python -m agent.planners.mini train --out DIR`")
        config = MiniConfig(**json.loads((folder / CONFIG_FILE).read_text()))
        model = cls(config)
        state = {k: v.float() for k, v in load_file(str(folder / WEIGHTS_FILE)).items()}
        try:
            model.load_state_dict(state)
        except RuntimeError as exc:
            raise BackendUnavailable(f"mini planner checkpoint {folder} does not match its config: {exc}",
                                     field="planner", fix="train it again") from exc
        model.eval()
        return model

    def ablation_heads(self, folder: Path) -> SignalProjections:
        """The signal heads as they were before cross-task synergy (stage 3), for the ablation."""
        c = self.config
        head = SignalProjections(c.width, c.head_bottleneck, c.task_specific_size, c.task_invariant_size)
        path = Path(folder) / ABLATION_FILE
        if not path.is_file():
            raise BackendUnavailable(f"{path} is missing", field="planner", fix="train the checkpoint again")
        head.load_state_dict({k: v.float() for k, v in load_file(str(path)).items()})
        return head.eval()


def _causal(length: int) -> torch.Tensor:
    return torch.ones(length, length, dtype=torch.bool).triu(1)


@dataclass
class DecodedStep:
    """One decoded block: module letter, copied source positions, inputs (`@N` or alias source positions)."""

    module: str
    copies: list[int] = field(default_factory=list)
    inputs: list[int | list[int]] = field(default_factory=list)  # step number, or an alias's source positions
    signal: bool = False


@dataclass
class Decoded:
    tokens: list[int]
    steps: list[DecodedStep]
    signal_hidden: torch.Tensor  # [n_signal, width]


@dataclass
class _State:
    """Where the decoder is in the grammar; says which tokens may come next."""

    n_source: int
    any_copy: bool
    mode: str = "start"  # start | instruction | inputs | alias
    steps: list[DecodedStep] = field(default_factory=list)

    def allowed(self, copyable: torch.Tensor) -> torch.Tensor:
        mask = torch.zeros(N_FIXED + self.n_source, dtype=torch.bool)
        step = self.steps[-1] if self.steps else None
        if self.mode == "start":
            mask[EOS] = True
            if len(self.steps) < MAX_STEPS:
                mask[list(MODULE_IDS.values())] = True
        elif self.mode == "instruction":
            if step.copies or not self.any_copy:
                mask[END_INSTRUCTION] = True
            if len(step.copies) < MAX_WORDPIECES:
                mask[N_FIXED:] = copyable
        else:
            alias = step.inputs[-1] if self.mode == "alias" else None
            if self.mode == "alias" and len(alias) < MAX_ALIAS_PIECES:
                mask[N_FIXED:] = copyable
            if self.mode == "inputs" or alias:
                mask[SIGNAL] = True
                if len(step.inputs) < MAX_INPUTS:
                    mask[[STEP_REF_IDS[n] for n in range(1, len(self.steps))]] = True
                    mask[ALIAS] = self.any_copy
        return mask

    def take(self, token: int) -> None:
        if token in MODULE_IDS.values():
            self.steps.append(DecodedStep(FIXED[token]))
            self.mode = "instruction"
        elif token >= N_FIXED:
            step = self.steps[-1]
            (step.copies if self.mode == "instruction" else step.inputs[-1]).append(token - N_FIXED)
        elif token == END_INSTRUCTION:
            self.mode = "inputs"
        elif token == ALIAS:
            self.steps[-1].inputs.append([])
            self.mode = "alias"
        elif token in STEP_REF_IDS.values():
            self.steps[-1].inputs.append(int(FIXED[token][1:]))
            self.mode = "inputs"
        elif token == SIGNAL:
            self.steps[-1].signal = True
            self.mode = "start"

    def finish(self) -> None:
        """Drop an unfinished alias at the end (cut off by the length limit)."""
        if self.steps and self.steps[-1].inputs and self.steps[-1].inputs[-1] == []:
            self.steps[-1].inputs.pop()


# --- from decoded positions back to text ------------------------------------------------------------------------


def copied_text(positions: Sequence[int], tokens: Sequence[str], offsets: Sequence[tuple[int, int]],
                segments: Sequence[int], sources: Sequence[str]) -> str:
    """The source words at `positions`, in the source's own spelling; wordpieces of one word joined."""
    out = ""
    previous: int | None = None
    for position in positions:
        if position >= len(tokens) or segments[position] < 0:
            continue
        start, end = offsets[position]
        piece = sources[segments[position]][start:end]
        joined = previous is not None and (
            tokens[position].startswith("##")
            or (position == previous + 1 and segments[previous] == segments[position]
                and offsets[previous][1] == start)
        )
        out += piece if joined or not out else " " + piece
        previous = position
    return out


_NOT_NAME = re.compile(r"[^A-Za-z0-9_]")


def alias_name(text: str, known: Sequence[str]) -> str | None:
    """A copied alias as the session spells it (`IMG1` → `img1`); None when nothing usable was copied."""
    name = _NOT_NAME.sub("", text.lstrip("@"))
    if not name:
        return None
    for alias in known:
        if alias.lower() == name.lower():
            return alias
    # An unknown name that looks like an alias (`img7`) is kept, so the user hears that it does not exist; other
    # copies (`none` from an empty context line) are dropped, and the step's input is found the implicit way.
    return name if re.fullmatch(r"[A-Za-z]+[0-9]+", name) else None
