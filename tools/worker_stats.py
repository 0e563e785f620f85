"""A worker's model-cache counters, gathered from its pool processes into the worker's stats.

The models live in the pool processes, but Celery's remote control (`celery inspect stats`, `vitron jobs
workers`) is answered by the worker's main process. So each pool process writes its cache's counters to a file
of its own whenever they change, in a folder the main process makes before the pool forks, and the main process
reads the files of its live pool processes when asked. Nothing here imports torch: the main process must not.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from celery import bootsteps

_folder: Path | None = None  # set in a worker's main process; its pool processes inherit it through fork

COUNTERS = ("loads", "hits", "evictions", "bytes")


class ModelStats(bootsteps.StartStopStep):
    """Worker bootstep: the folder pool processes report to, and `"models"` in the worker's stats."""

    label = "vitron model stats"

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        global _folder
        super().__init__(worker, **kwargs)
        # Made here, while the worker's blueprint is applied: before the pool forks its processes.
        _folder = Path(tempfile.mkdtemp(prefix="vitron-models-"))

    def shutdown(self, worker: Any) -> None:
        if _folder is not None:
            shutil.rmtree(_folder, ignore_errors=True)

    def info(self, worker: Any) -> dict[str, Any]:
        pool_info = getattr(worker.pool, "info", None) or {}
        # A solo or threads pool runs jobs in the main process itself.
        return {"models": gather(pool_info.get("processes") or [os.getpid()])}


def gather(pids: list[int]) -> dict[str, Any]:
    """Totals over these processes' reports, and each process's: loads, hits, evictions, bytes, budget, entries.
    A process that has loaded nothing yet counts zeros; the reports of processes that ended are removed."""
    processes: dict[str, dict[str, Any]] = {}
    if _folder is not None:
        for path in _folder.glob("*.json"):
            if int(path.stem) not in pids:
                path.unlink(missing_ok=True)  # a pool process that exited (or was killed and replaced)
                continue
            try:
                processes[path.stem] = json.loads(path.read_text())
            except (OSError, ValueError):
                continue  # replaced while read: os.replace makes this rare, and the next ask reads it
    empty = {name: 0 for name in COUNTERS} | {"budget": None, "entries": {}}
    for pid in pids:
        processes.setdefault(str(pid), dict(empty))
    totals = {name: sum(p.get(name, 0) for p in processes.values()) for name in COUNTERS}
    return totals | {"processes": dict(sorted(processes.items()))}


def reporter() -> Callable[[dict[str, Any]], None] | None:
    """In a worker's process, a function that writes a cache's stats where the main process reads them; else None."""
    if _folder is None:
        return None
    folder = _folder

    def report(stats: dict[str, Any]) -> None:
        path = folder / f"{os.getpid()}.json"
        tmp = path.with_suffix(".tmp")
        entries = {_label(key): size for key, size in stats["entries"].items()}  # JSON keys are strings
        try:
            tmp.write_text(json.dumps(stats | {"entries": entries}))
            os.replace(tmp, path)  # readers see the old report or the new one, never half of one
        except OSError:
            pass  # the worker is shutting down and removed the folder: nobody will ask any more

    return report


def _label(key: Any) -> str:
    """A cache key as people read it: the parts of a tuple key (backend, role, weights, …) that are set."""
    if isinstance(key, tuple):
        return " ".join(str(part) for part in key if part is not None)
    return str(key)
