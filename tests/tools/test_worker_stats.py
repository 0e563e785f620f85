"""The model cache's loads, hits and evictions, seen from outside a worker: in Celery's worker stats and in
`vitron jobs workers`, gathered from the pool processes that hold the models; and in the worker's log."""

from __future__ import annotations

import json
import os
import subprocess

import numpy as np
import pytest
import yaml

from memory import ArtifactStore
from schemas import VitronSettings
from tests.services import REDIS_URL
from tests.workers import VITRON, celery_worker
from tools import worker_stats
from tools.executors import CeleryExecutor
from tools.jobs import job_spec
from tools.model_cache import ModelCache

from .tiny_sam import TINY_OPTIONS, save_tiny_sam

BOX = {"kind": "box", "box": [16, 12, 36, 32]}


def test_a_cache_reports_each_load_hit_and_eviction():
    reports: list[dict] = []
    cache = ModelCache(100, on_change=reports.append)
    cache.get("a", lambda: "A", size=60)
    cache.get("a", lambda: "never", size=60)
    cache.get("b", lambda: "B", size=60)  # evicts a
    cache.clear()  # evicts b
    assert [(r["loads"], r["hits"], r["evictions"], list(r["entries"])) for r in reports] == [
        (1, 0, 0, ["a"]), (1, 1, 0, ["a"]), (2, 1, 1, ["b"]), (2, 1, 2, []),
    ]


def test_gathering_reads_live_processes_and_drops_ended_ones(tmp_path, monkeypatch):
    monkeypatch.setattr(worker_stats, "_folder", tmp_path)
    report = worker_stats.reporter()
    report({"loads": 2, "hits": 5, "evictions": 1, "bytes": 300, "budget": 1000,
            "entries": {("sam", "main", "/w/sam.pth", None): 300}})
    me = str(os.getpid())
    (tmp_path / "999999999.json").write_text(json.dumps({"loads": 7, "hits": 0, "evictions": 0, "bytes": 1}))

    gathered = worker_stats.gather([os.getpid(), 4242])
    assert (gathered["loads"], gathered["hits"], gathered["evictions"], gathered["bytes"]) == (2, 5, 1, 300)
    assert gathered["processes"][me]["entries"] == {"sam main /w/sam.pth": 300}
    assert gathered["processes"]["4242"]["loads"] == 0  # a pool process that has loaded nothing yet
    assert not (tmp_path / "999999999.json").exists()  # a process that ended is forgotten


@pytest.fixture
def sam_worker(tmp_path):
    """A worker of one pool process, SAM configured for B and E with different weights, a budget of one model."""
    weights = {module: save_tiny_sam(tmp_path / module, seed=seed) for seed, module in enumerate("BE")}
    models = tmp_path / "models.yaml"
    models.write_text(yaml.safe_dump({
        module: {"backend": "sam", "weights": str(path), "device": "cpu", "variant": "custom",
                 "options": TINY_OPTIONS} for module, path in weights.items()
    }))
    settings = VitronSettings(home=tmp_path / "home", broker_url=REDIS_URL, result_backend=None, artifacts_dir=None)
    env = {"MODELS_FILE": str(models), "MODEL_BUDGET": "0"}
    with celery_worker(settings, concurrency=1, env=env) as (app, _):
        yield app, settings


def test_the_workers_stats_count_the_pool_processes_loads_and_evictions(sam_worker, tmp_path):
    app, settings = sam_worker
    store = ArtifactStore.from_settings(settings)
    celery = CeleryExecutor(app)
    image = store.put_image(np.random.default_rng(0).integers(0, 255, (48, 64, 3), np.uint8))
    video = store.put_video([store.get_image(image)] * 2, 8.0)
    jobs = [("B", {"image": image, "region": BOX}), ("B", {"image": image, "region": BOX}),
            ("E", {"video": video, "region": BOX}), ("B", {"image": image, "region": BOX})]
    for module, data in jobs:  # load B, hit B, load E (evicting B), load B (evicting E)
        celery.submit(job_spec(module, data, store, backend="sam")).result(timeout=120)

    (name, stats), = app.control.inspect(timeout=5).stats().items()
    models = stats["models"]
    assert (models["loads"], models["evictions"]) == (3, 2) and models["hits"] >= 1
    (pid, process), = models["processes"].items()
    assert [int(pid)] == stats["pool"]["processes"]  # counted in the pool process that ran the jobs
    assert list(process["entries"]) == [f"sam main {tmp_path / 'B' / 'tiny_sam.pth'} custom cpu auto False"]
    assert process["budget"] == 0 and process["bytes"] > 0

    env = {k: v for k, v in os.environ.items() if not k.startswith("VITRON_")} | {"VITRON_BROKER_URL": REDIS_URL}
    cli = subprocess.run([VITRON, "jobs", "workers", "--json", "--timeout", "5"], env=env, capture_output=True,
                         text=True, check=True)
    (row,) = json.loads(cli.stdout)["workers"]
    assert row["worker"] == name and row["queues"] == ["cpu", "gpu"] and row["jobs_done"] == 4
    assert (row["models"]["loads"], row["models"]["evictions"]) == (3, 2)
    table = subprocess.run([VITRON, "jobs", "workers", "--timeout", "5"], env=env | {"COLUMNS": "200"},
                           capture_output=True, text=True, check=True).stdout
    assert name[:20] in table and "evictions" in table

    log = (settings.home.parent / "worker.log").read_text()
    assert log.count("loaded model") == 3 and log.count("evicted model") == 2
    assert "(loads 3, evictions 2," in log


def test_asking_for_workers_without_a_broker_names_the_setting():
    env = {k: v for k, v in os.environ.items() if not k.startswith("VITRON_")}
    cli = subprocess.run([VITRON, "jobs", "workers"], env=env, capture_output=True, text=True)
    assert cli.returncode == 2 and "VITRON_BROKER_URL" in cli.stderr
