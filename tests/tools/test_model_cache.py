"""The model cache: one load per key across threads, LRU eviction within a budget, sizes, budgets, fork."""

from __future__ import annotations

import logging
import os
import threading
import time

import numpy as np
import pytest
import torch

from schemas import InvalidInput
from tools.model_cache import ModelCache, estimate_size, model_cache, parse_budget

# Linear(256, 256) in float32: a 256×256 weight and a 256 bias, 4 bytes each.
LINEAR_BYTES = (256 * 256 + 256) * 4


def linear() -> torch.nn.Linear:
    return torch.nn.Linear(256, 256)


def test_same_key_loads_once_across_threads() -> None:
    cache = ModelCache(None)
    calls = 0
    calls_lock = threading.Lock()
    start = threading.Barrier(8)

    def load() -> torch.nn.Linear:
        nonlocal calls
        with calls_lock:
            calls += 1
        time.sleep(0.05)  # long enough that the other threads arrive while it loads
        return linear()

    results: list[torch.nn.Module] = []

    def ask() -> None:
        start.wait()
        results.append(cache.get("sam", load))

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert calls == 1
    assert len(results) == 8 and all(model is results[0] for model in results)
    assert cache.stats()["loads"] == 1 and cache.stats()["hits"] == 7


def test_different_keys_load_concurrently() -> None:
    cache = ModelCache(None)
    # Each loader waits for the other: if loads were serialised, the barrier would time out.
    both_loading = threading.Barrier(2, timeout=5)

    def load() -> torch.nn.Linear:
        both_loading.wait()
        return linear()

    errors: list[BaseException] = []

    def ask(key: str) -> None:
        try:
            cache.get(key, load)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=ask, args=(key,)) for key in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert cache.stats()["loads"] == 2


def test_least_recently_used_is_evicted_first(caplog: pytest.LogCaptureFixture) -> None:
    cache = ModelCache(3 * LINEAR_BYTES)
    models = {key: cache.get(key, linear) for key in "abc"}
    assert cache.get("a", linear) is models["a"]  # a hit: now b is the least recently used

    with caplog.at_level(logging.INFO, logger="vitron.models"):
        cache.get("d", linear)

    stats = cache.stats()
    assert list(stats["entries"]) == ["c", "a", "d"]
    assert stats["entries"] == {"c": LINEAR_BYTES, "a": LINEAR_BYTES, "d": LINEAR_BYTES}
    assert stats["bytes"] == 3 * LINEAR_BYTES
    assert (stats["loads"], stats["hits"], stats["evictions"], stats["budget"]) == (4, 1, 1, 3 * LINEAR_BYTES)
    messages = [record.getMessage() for record in caplog.records]
    assert any(m.startswith("evicted model 'b': 0.3 MB") for m in messages)
    assert any(m.startswith("loaded model 'd': 0.3 MB in ") for m in messages)

    # b comes back only by loading it again, which evicts c (now the least recently used).
    calls = []
    cache.get("b", lambda: calls.append(1) or linear())
    assert calls == [1]
    assert list(cache.stats()["entries"]) == ["a", "d", "b"]


def test_given_sizes_are_used_and_evict_before_loading() -> None:
    cache = ModelCache(1000)
    cache.get("small", lambda: "weights", size=600)
    seen_at_load: list[dict] = []
    cache.get("other", lambda: seen_at_load.append(cache.stats()) or "weights", size=500)
    # The known size made room before the loader ran.
    assert seen_at_load[0]["entries"] == {}
    cache.get("array", lambda: np.zeros((10, 10), np.float32), size=lambda array: array.nbytes)
    assert cache.stats()["entries"] == {"other": 500, "array": 400}


def test_entry_larger_than_budget_is_kept_alone(caplog: pytest.LogCaptureFixture) -> None:
    cache = ModelCache(LINEAR_BYTES // 2)
    cache.get("tiny", lambda: np.zeros(10, np.uint8))
    with caplog.at_level(logging.WARNING, logger="vitron.models"):
        big = cache.get("big", linear)
    assert cache.stats()["entries"] == {"big": LINEAR_BYTES}
    assert cache.get("big", linear) is big
    assert any("larger than the whole budget" in r.getMessage() for r in caplog.records if r.levelname == "WARNING")

    cache.get("tiny", lambda: np.zeros(10, np.uint8))  # the big one makes room for anything new
    assert cache.stats()["entries"] == {"tiny": 10}


def test_clear_and_a_failed_load_leave_nothing_behind() -> None:
    cache = ModelCache(None)
    cache.get("a", linear)

    def broken() -> torch.nn.Module:
        raise OSError("no weights at /models/sam.pth")

    with pytest.raises(OSError):
        cache.get("b", broken)
    assert list(cache.stats()["entries"]) == ["a"]
    assert cache.get("b", linear) is not None  # a later call tries again

    cache.clear()
    stats = cache.stats()
    assert (stats["entries"], stats["bytes"], stats["evictions"]) == ({}, 0, 2)


def test_size_of_module_is_its_parameters_and_buffers() -> None:
    model = linear()
    assert estimate_size(model) == sum(p.numel() * p.element_size() for p in model.parameters()) == LINEAR_BYTES
    assert estimate_size(model.half()) == LINEAR_BYTES // 2

    # Buffers count too: BatchNorm's running mean and variance (float32) and its batch counter (int64).
    norm = torch.nn.BatchNorm1d(64)
    assert estimate_size(norm) == 2 * 64 * 4 + 2 * 64 * 4 + 8

    # A weight shared by two layers counts once.
    tied = torch.nn.Sequential(linear(), linear())
    tied[1].weight = tied[0].weight
    assert estimate_size(tied) == LINEAR_BYTES + 256 * 4

    assert estimate_size(np.zeros((3, 4), np.float64)) == 96
    assert estimate_size(torch.zeros(5, dtype=torch.int16)) == 10
    assert estimate_size(b"x" * 1000) >= 1000


def test_size_of_diffusers_models_and_pipelines() -> None:
    from diffusers import DDPMPipeline, DDPMScheduler, UNet2DConditionModel, UNet2DModel

    # A tiny Stable-Diffusion-shaped UNet (random weights, built from a config: nothing downloaded).
    unet = UNet2DConditionModel(
        sample_size=8,
        block_out_channels=(8, 16),
        layers_per_block=1,
        norm_num_groups=4,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=8,
        attention_head_dim=2,
    )
    unet_bytes = sum(p.numel() * p.element_size() for p in unet.parameters())
    assert estimate_size(unet) == unet_bytes > 0
    cache = ModelCache(unet_bytes)
    assert cache.get("unet", lambda: unet) is unet
    assert cache.stats()["entries"] == {"unet": unet_bytes}

    # A pipeline counts its torch components (the UNet), not its scheduler.
    small_unet = UNet2DModel(
        sample_size=8,
        block_out_channels=(8, 16),
        layers_per_block=1,
        norm_num_groups=4,
        down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"),
    )
    pipeline = DDPMPipeline(unet=small_unet, scheduler=DDPMScheduler())
    assert estimate_size(pipeline) == estimate_size(small_unet) > 0


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("4GB", 4 * 10**9),
        ("512MB", 512 * 10**6),
        ("1.5GiB", 3 * 2**29),
        ("512 mib", 512 * 2**20),
        ("2g", 2 * 10**9),
        ("100", 100),
        ("0", 0),
        ("unlimited", None),
        (" Unlimited ", None),
    ],
)
def test_parse_budget(text: str, expected: int | None) -> None:
    assert parse_budget(text) == expected


@pytest.mark.parametrize("text", ["", "lots", "-1GB", "4 GBs", "1.2.3MB", "GB"])
def test_parse_budget_refuses_bad_text(text: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_budget(text)
    assert caught.value.field == "VITRON_MODEL_BUDGET"
    assert "8GB" in caught.value.message  # the fix shows the form to write


def test_process_cache_is_one_per_process() -> None:
    # Its budget comes from VITRON_MODEL_BUDGET when first used; the fork test checks that in a fresh child.
    assert model_cache() is model_cache()
    assert isinstance(model_cache(), ModelCache)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.filterwarnings("ignore:.*fork.*:DeprecationWarning")
def test_forked_child_gets_its_own_empty_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    parent = model_cache()
    parent.get(("fork-test", "linear"), linear)
    monkeypatch.setenv("VITRON_MODEL_BUDGET", "2MB")

    pid = os.fork()
    if pid == 0:  # the child: report by exit status, never return into pytest
        status = 1
        try:
            child = model_cache()
            if child is parent:
                status = 2
            elif child.stats()["entries"] or child.stats()["loads"]:
                status = 3
            elif child.budget != 2 * 10**6:  # built afresh from the settings the child sees
                status = 4
            else:
                child.get("x", lambda: np.zeros(8, np.uint8))
                status = 0 if model_cache() is child and child.stats()["loads"] == 1 else 5
        finally:
            os._exit(status)

    _, wait_status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(wait_status) == 0
    assert model_cache() is parent  # the parent keeps its cache and models
    assert ("fork-test", "linear") in parent.stats()["entries"]
