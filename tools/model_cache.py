"""The per-process model cache: each model loads once, within a memory budget, least recently used out first."""

from __future__ import annotations

import gc
import logging
import os
import re
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator
from typing import Any, TypeVar

import numpy as np
import torch

from schemas import InvalidInput, VitronSettings

__all__ = ["ModelCache", "estimate_size", "model_cache", "parse_budget"]

T = TypeVar("T")
log = logging.getLogger("vitron.models")
_MB = 10**6  # decimal, as `parse_budget` reads MB

_UNITS = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12, "ki": 2**10, "mi": 2**20, "gi": 2**30, "ti": 2**40}
_BUDGET = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*(k|m|g|t|ki|mi|gi|ti)?b?", re.IGNORECASE)


def parse_budget(text: str) -> int | None:
    """Bytes from a size like `8GB`, `512MB`, `1.5GiB` or `0`; None for `unlimited` (or `none`).

    GB/MB are powers of ten, GiB/MiB powers of two (as in Kubernetes and `ls -h --si`).
    """
    value = text.strip()
    if value.lower() in {"unlimited", "none"}:
        return None
    match = _BUDGET.fullmatch(value)
    if match is None:
        raise InvalidInput(
            f"cannot read a memory budget from {text!r}",
            field="VITRON_MODEL_BUDGET",
            fix="write a size like 8GB, 512MB or 1.5GiB, 0 to keep one model at a time, or 'unlimited'",
        )
    return int(float(match[1]) * _UNITS[(match[2] or "").lower()])


def _tensors(obj: Any) -> Iterator[torch.Tensor]:
    """Parameters and buffers of a module, or of every torch component of a diffusers pipeline."""
    if isinstance(obj, torch.nn.Module):
        yield from obj.parameters()
        yield from obj.buffers()
    elif isinstance(getattr(obj, "components", None), dict):
        # Duck-typed so that this module never imports diffusers (slow to import).
        for component in obj.components.values():
            if isinstance(component, torch.nn.Module):
                yield from _tensors(component)


def estimate_size(obj: Any) -> int:
    """Bytes an object holds: parameters + buffers of a module or pipeline, an array's data, else `sys.getsizeof`."""
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, np.ndarray):
        return obj.nbytes
    if isinstance(obj, torch.nn.Module) or isinstance(getattr(obj, "components", None), dict):
        # Keyed by identity so that weights shared between components (tied embeddings, a reused VAE) count once.
        unique = {id(t): t for t in _tensors(obj)}
        return sum(t.numel() * t.element_size() for t in unique.values())
    return sys.getsizeof(obj)


def _cuda_device(obj: Any) -> torch.device | None:
    """The CUDA device the object's weights are on, if any."""
    for tensor in _tensors(obj):
        if tensor.device.type == "cuda":
            return tensor.device
    return None


class ModelCache:
    """Models by key, loaded once per process; evicts least recently used ones to stay within `budget_bytes`.

    `budget_bytes=None` means no limit. For a model whose weights are on a GPU, the budget is at most the free
    memory of that GPU: `device_budget()` when given, else `torch.cuda.mem_get_info`.
    """

    def __init__(self, budget_bytes: int | None, *, device_budget: Callable[[], int | None] | None = None,
                 on_change: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.budget = budget_bytes
        self._device_budget = device_budget
        self._on_change = on_change  # called with `stats()` after each load, hit and eviction
        self._entries: OrderedDict[Hashable, tuple[Any, int]] = OrderedDict()  # key → (model, size); LRU first
        self._bytes = 0
        self._lock = threading.Lock()  # guards the entries, the key locks and the counters
        # One lock per key: two callers of the same key load it once, different keys load in parallel.
        # Kept after loading, since a process configures few models.
        self._key_locks: dict[Hashable, threading.Lock] = {}
        self._loads = self._hits = self._evictions = 0

    def get(self, key: Hashable, load: Callable[[], T], *, size: int | Callable[[T], int] | None = None) -> T:
        """The model under `key`, calling `load()` the first time (or after it was evicted).

        size: its bytes, or a function of the loaded model giving them; default `estimate_size`.
        """
        with self._lock:
            entry = self._hit(key)
            if entry is None:
                key_lock = self._key_locks.setdefault(key, threading.Lock())
        if entry is not None:
            self._changed()
            return entry[0]
        with key_lock:
            with self._lock:
                entry = self._hit(key)  # another thread may have loaded it while we waited
                # Size known up front: make room before loading, so old and new never sit in memory together.
                fits_first = entry is None and isinstance(size, int)
                evicted = self._evict_for(size, self.budget) if fits_first else 0
            if entry is not None:
                self._changed()
                return entry[0]
            if evicted:
                self._release_memory()

            started = time.perf_counter()
            model = load()
            seconds = time.perf_counter() - started
            nbytes = size if isinstance(size, int) else size(model) if size is not None else estimate_size(model)
            budget = self._budget_for(_cuda_device(model) if torch.cuda.is_available() else None)
            with self._lock:
                evicted = self._evict_for(nbytes, budget)
                self._entries[key] = (model, nbytes)
                self._bytes += nbytes
                self._loads += 1
                counts = (self._loads, self._evictions, self._bytes / _MB)  # as of this load, whatever runs next
            if evicted:
                self._release_memory()
            log.info("loaded model %r: %.1f MB in %.2f s (loads %d, evictions %d, %.1f MB cached)", key,
                     nbytes / _MB, seconds, *counts)
            self._changed()
            if budget is not None and nbytes > budget:
                log.warning(
                    "model %r (%.1f MB) is larger than the whole budget (%.1f MB); it is kept alone",
                    key, nbytes / _MB, budget / _MB,
                )
            return model

    def stats(self) -> dict[str, Any]:
        """Counters and contents: loads, hits, evictions, bytes, budget, entries (key → size, most recent last)."""
        with self._lock:
            return {
                "loads": self._loads,
                "hits": self._hits,
                "evictions": self._evictions,
                "bytes": self._bytes,
                "budget": self.budget,
                "entries": {key: size for key, (_, size) in self._entries.items()},
            }

    def clear(self) -> None:
        """Drop every model (counted as evictions)."""
        with self._lock:
            evicted = self._evict_for(0, -1)  # a budget nothing fits in: all go
        if evicted:
            self._release_memory()
            self._changed()

    def _changed(self) -> None:
        if self._on_change is not None:
            self._on_change(self.stats())

    def _hit(self, key: Hashable) -> tuple[Any, int] | None:
        """The entry under `key`, now the most recently used; None if absent. Holds the lock."""
        entry = self._entries.get(key)
        if entry is not None:
            self._entries.move_to_end(key)
            self._hits += 1
        return entry

    def _budget_for(self, device: torch.device | None) -> int | None:
        """The configured budget, or less for a GPU model when that GPU has less free memory."""
        if device is None:
            return self.budget
        free = self._device_budget() if self._device_budget is not None else torch.cuda.mem_get_info(device)[0]
        if free is None or self.budget is None:
            return self.budget if free is None else free
        return min(self.budget, free)

    def _evict_for(self, nbytes: int, budget: int | None) -> int:
        """Evict least recently used entries until `nbytes` more fit in `budget`; returns how many. Holds the lock."""
        evicted = 0
        while budget is not None and self._entries and self._bytes + nbytes > budget:
            key, (_, size) = self._entries.popitem(last=False)
            self._bytes -= size
            self._evictions += 1
            evicted += 1
            log.info("evicted model %r: %.1f MB (budget %.1f MB; evictions %d)", key, size / _MB, budget / _MB,
                     self._evictions)
        return evicted

    @staticmethod
    def _release_memory() -> None:
        # An evicted model may sit in reference cycles; once collected, CUDA's allocator can hand its memory back.
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


_process_cache: ModelCache | None = None
_process_lock = threading.Lock()


def model_cache() -> ModelCache:
    """This process's model cache, created on first use with the budget `VITRON_MODEL_BUDGET`."""
    global _process_cache
    with _process_lock:
        if _process_cache is None:
            from .worker_stats import reporter  # a worker's pool process reports its counters to the worker

            _process_cache = ModelCache(parse_budget(VitronSettings().model_budget), on_change=reporter())
        return _process_cache


def _forget_after_fork() -> None:
    # A forked child (a Celery prefork worker) must load its own models: CUDA state does not survive fork, and
    # the parent's copy-on-write pages would be counted twice. The lock is new too: another thread may have held it.
    global _process_cache, _process_lock
    _process_cache = None
    _process_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_after_fork)
