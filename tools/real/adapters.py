"""Signal adapters: linear maps from a planner's task-specific signal into one backend's conditioning space.

A planner's signal heads have widths of their own (vitron-mini's are 384 wide); a backend reads its own (SAM's
prompt encoder 256, SD 1.5's cross-attention 768, SDXL's 2048…). VITRON aligns the two by training on the
backend's own embeddings of the same instructions; here that is a ridge regression (`fit_adapter`), fitted by
`vitron planner align` against the backend the user configured, and stored as a small safetensors file:

    $VITRON_HOME/adapters/<planner>/<module>/<backend>/<weights>.safetensors

keyed by the signal's source (the planner's name and a fingerprint of its weights), the module (each module has
its own signal head), the backend and a fingerprint of the backend's weights (`weights_identity`). The conditioning
code (`tools.real.conditioning.signal_tokens`) finds the adapter for a signal, loads it once per process through
the model cache and applies it before checking the signal's width.

An adapter maps each signal token [d_in] to `tokens` backend tokens of `width` each (SAM: the two corner tokens of
a box prompt; diffusion: one prompt token).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from schemas import InvalidInput, ModelSpec, resolve_module

from ..model_cache import model_cache

ADAPTERS = "adapters"
"""The adapters' folder inside VITRON_HOME."""
_SAMPLE = 1 << 20  # bytes read at each of a file's start, middle and end for its fingerprint


@dataclass(frozen=True)
class SignalAdapter:
    """`task_specific [k, d_in]` → `[k * tokens, width]`: `x @ weight + bias`, each row cut into `tokens` tokens."""

    weight: np.ndarray  # [d_in, tokens * width] float32
    bias: np.ndarray  # [tokens * width] float32
    tokens: int = 1
    info: dict[str, Any] = field(default_factory=dict)  # provenance: source, backend, fit figures…

    @property
    def in_width(self) -> int:
        return int(self.weight.shape[0])

    @property
    def width(self) -> int:
        return int(self.weight.shape[1]) // self.tokens

    def apply(self, task_specific: np.ndarray) -> np.ndarray:
        mapped = np.asarray(task_specific, np.float32) @ self.weight + self.bias
        return mapped.reshape(-1, self.width)

    def save(self, path: Path) -> Path:
        from safetensors.numpy import save_file

        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial")
        # Written whole, then renamed: a worker never reads half a file.
        save_file({"weight": np.ascontiguousarray(self.weight, np.float32),
                   "bias": np.ascontiguousarray(self.bias, np.float32)}, str(partial),
                  metadata={"tokens": str(self.tokens), "info": json.dumps(self.info)})
        partial.replace(path)
        return path

    @classmethod
    def load(cls, path: Path) -> SignalAdapter:
        from safetensors import safe_open

        try:
            with safe_open(str(path), "np") as f:
                meta = f.metadata() or {}
                weight, bias = f.get_tensor("weight"), f.get_tensor("bias")
            adapter = cls(weight, bias, int(meta.get("tokens", "1")), json.loads(meta.get("info", "{}")))
            if weight.ndim != 2 or bias.shape != (weight.shape[1],) or weight.shape[1] % adapter.tokens:
                raise ValueError(f"weight {list(weight.shape)} and bias {list(bias.shape)} do not fit together")
        except Exception as exc:  # a truncated or foreign file: whatever safetensors raises, one clear error
            raise InvalidInput(f"the signal adapter {path} does not load: {exc}", field="signal",
                               fix="fit it again (`vitron planner align`), or delete the file") from exc
        return adapter


def adapter_folder(home: Path, source: str, module: str, spec: ModelSpec) -> Path:
    """Where the adapters of `source`'s signals for `module`'s backend live, one per weights."""
    return Path(home).expanduser() / ADAPTERS / source / resolve_module(module).name / spec.backend


def adapter_path(home: Path, source: str, module: str, spec: ModelSpec, role: str = "main") -> Path:
    """Where the adapter of `source`'s signals for `module`'s backend with these `role` weights lives."""
    return adapter_folder(home, source, module, spec) / f"{weights_identity(spec, role)}.safetensors"


def find_adapter(home: Path, source: str | None, module: str, spec: ModelSpec,
                 role: str = "main") -> SignalAdapter | None:
    """The adapter fitted for signals of `source` and these weights, loaded once per process; None when none is."""
    if source is None or spec.weights.get(role) is None:
        return None
    if not adapter_folder(home, source, module, spec).is_dir():
        return None  # nothing fitted: no need to fingerprint the weights folder (every job with a signal asks)
    path = adapter_path(home, source, module, spec, role)
    try:
        stat = path.stat()
    except OSError:
        return None
    # Keyed by the file's mtime too: an adapter fitted again is read again, in a worker that keeps running.
    key = ("signal_adapter", str(path), stat.st_mtime_ns, stat.st_size)
    return model_cache().get(key, lambda: SignalAdapter.load(path), size=stat.st_size)


def weights_identity(spec: ModelSpec, role: str = "main") -> str:
    """A fingerprint of one role's weights (a file, or every file of a folder): names, sizes and bytes sampled at
    each file's start, middle and end. Content, not paths or times, so a copy on a worker has the same one."""
    path = spec.weights.get(role)
    if path is None:
        raise InvalidInput(f"{spec.backend} has no {role!r} weights", field="role",
                           fix=f"use one of {', '.join(sorted(spec.weights)) or 'the roles in the models file'}")
    digest = hashlib.sha256(f"{spec.backend}\0{spec.variant}\0".encode())
    root = Path(path)
    # Hidden entries (a hub cache's `.cache/` locks and metadata) change without the weights changing.
    files = [root] if root.is_file() else sorted(
        p for p in root.rglob("*") if p.is_file() and not any(part.startswith(".") for part in
                                                                p.relative_to(root).parts))
    for file in files:
        stat = file.stat()
        name = file.name if file == root else file.relative_to(root).as_posix()
        digest.update(f"{name}\0{stat.st_size}\0".encode())
        digest.update(_sampled(str(file), stat.st_size, stat.st_mtime_ns))
    return digest.hexdigest()[:16]


@lru_cache(maxsize=256)
def _sampled(path: str, size: int, mtime_ns: int) -> bytes:
    """The hash of a file's sampled bytes, read once per process while the file stays the same."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for offset in sorted({0, max(0, size // 2 - _SAMPLE // 2), max(0, size - _SAMPLE)}):
            f.seek(offset)
            digest.update(f.read(_SAMPLE))
    return digest.digest()


# -- fitting ---------------------------------------------------------------------------------------------

RIDGE_STRENGTHS = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0, 1000.0)
"""Ridge penalties tried, relative to the mean squared singular value of the centred signals."""


def fit_adapter(signals: np.ndarray, targets: np.ndarray, *, tokens: int = 1, held_out: float = 0.2,
                seed: int = 0, info: dict[str, Any] | None = None) -> SignalAdapter:
    """Ridge regression from signals [n, d_in] to targets [n, tokens * width], in closed form. The penalty is
    chosen on a held-out share of the pairs, then the map is fitted on all of them; the figures go in `info`
    (`r2_held_out`, `cosine_held_out`: how well held-out targets are predicted)."""
    x, y = np.asarray(signals, np.float64), np.asarray(targets, np.float64)
    if x.ndim != 2 or y.ndim != 2 or len(x) != len(y) or len(x) < 4:
        raise InvalidInput(f"an adapter needs at least 4 pairs of signals and targets, got {len(x)}",
                           field="pairs", fix="align on more requests")
    order = np.random.default_rng(seed).permutation(len(x))
    cut = max(1, int(len(x) * held_out))
    test, train = order[:cut], order[cut:]
    solve = _ridge(x[train], y[train])
    fits = {strength: solve(strength) for strength in RIDGE_STRENGTHS}
    best = max(RIDGE_STRENGTHS, key=lambda strength: _r2(x[test] @ fits[strength][0] + fits[strength][1], y[test]))
    predicted = x[test] @ fits[best][0] + fits[best][1]
    figures = {"pairs": len(x), "held_out": len(test), "ridge": best, "r2_held_out": round(_r2(predicted, y[test]), 4),
               "cosine_held_out": round(_cosine(predicted, y[test]), 4)}
    weight, bias = _ridge(x, y)(best)
    return SignalAdapter(weight.astype(np.float32), bias.astype(np.float32), tokens, {**(info or {}), **figures})


def _ridge(x: np.ndarray, y: np.ndarray) -> Callable[[float], tuple[np.ndarray, np.ndarray]]:
    """The ridge solution (weight, bias) for any penalty, from one SVD of the centred signals."""
    mean_x, mean_y = x.mean(0), y.mean(0)
    u, s, vt = np.linalg.svd(x - mean_x, full_matrices=False)
    projected = u.T @ (y - mean_y)
    scale = max(float((s**2).mean()), 1e-12)

    def solve(strength: float) -> tuple[np.ndarray, np.ndarray]:
        weight = vt.T @ ((s / (s**2 + strength * scale))[:, None] * projected)
        return weight, mean_y - mean_x @ weight

    return solve


def _r2(predicted: np.ndarray, target: np.ndarray) -> float:
    total = float(((target - target.mean(0)) ** 2).sum())
    error = float(((target - predicted) ** 2).sum())
    return 1.0 - error / total if total > 1e-12 else float(error < 1e-6)


def _cosine(predicted: np.ndarray, target: np.ndarray) -> float:
    norms = np.linalg.norm(predicted, axis=1) * np.linalg.norm(target, axis=1)
    return float(np.mean((predicted * target).sum(1) / np.maximum(norms, 1e-12)))
