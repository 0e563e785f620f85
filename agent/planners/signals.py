"""Where a plan's signals come from: each signal is stamped with its planner's identity, so that a backend finds
the adapter fitted for that planner's signal space (`tools.real.adapters`, `vitron planner align`).

The identity is the planner's name and a fingerprint of the weights its signals come out of (vitron-mini's tagger
with its heads; a VITRON model's signal heads and its LM's embeddings): a retrained planner has another one, so an
adapter fitted for the old weights is not applied to the new signals.
"""

from __future__ import annotations

import hashlib
import threading
import weakref
from collections.abc import Iterable
from typing import Any

import numpy as np

from schemas import Plan, PlanStep

_FINGERPRINTS: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


def signal_source(planner: Any) -> str | None:
    """`name-fingerprint` of a planner that makes signals (`mini-3f2a9c1b7d4e`); None for one that makes none."""
    weights = _signal_weights(planner)
    if weights is None:
        return None
    with _LOCK:
        found = _FINGERPRINTS.get(weights)
        if found is None:
            found = _FINGERPRINTS[weights] = _fingerprint(_arrays(weights))
    name = str(getattr(planner, "name", "planner")).lower()
    return f"{name}-{found}"


def with_signal_source(plan: Plan, source: str | None) -> Plan:
    """The plan with every signal that names no source stamped with `source`."""
    if source is None or not any(step.invocation.signal is not None and step.invocation.signal.source is None
                                 for step in plan.steps):
        return plan
    steps = []
    for step in plan.steps:
        signal = step.invocation.signal
        if signal is not None and signal.source is None:
            invocation = step.invocation.model_copy(update={"signal": signal.model_copy(update={"source": source})})
            step = PlanStep(invocation=invocation, signal_tokens=step.signal_tokens)
        steps.append(step)
    return plan.model_copy(update={"steps": steps})


def _signal_weights(planner: Any) -> Any | None:
    """The object holding the weights a planner's signals come out of."""
    tagger = getattr(planner, "tagger", None)  # vitron-mini: the tagger and its heads (MiniLM is a fixed package)
    if tagger is not None and isinstance(getattr(tagger, "w", None), dict):
        return tagger
    model = getattr(planner, "model", None)  # VITRON: the LM with its signal heads (a chat model has neither)
    if hasattr(getattr(model, "heads", None), "state_dict") and hasattr(getattr(model, "model", None),
                                                                        "get_input_embeddings"):
        return model
    return None


def _arrays(weights: Any) -> Iterable[tuple[str, np.ndarray]]:
    if isinstance(getattr(weights, "w", None), dict):
        yield from sorted(weights.w.items())
        return
    for name, tensor in sorted(weights.heads.state_dict().items()):
        yield f"heads.{name}", tensor.detach().float().cpu().numpy()
    embeddings = weights.model.get_input_embeddings().weight
    # The LM's input embeddings stand for the LM: hashing billions of weights would cost seconds per process.
    yield "lm.embeddings", embeddings[: min(len(embeddings), 4096)].detach().float().cpu().numpy()


def _fingerprint(arrays: Iterable[tuple[str, np.ndarray]]) -> str:
    digest = hashlib.sha256()
    for name, array in arrays:
        array = np.ascontiguousarray(array)
        digest.update(f"{name}\0{array.dtype}\0{array.shape}\0".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()[:12]
