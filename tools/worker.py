"""Start a Celery worker for vitron jobs (`vitron worker`).

One worker process per GPU, each seeing one device and running one job at a time::

    CUDA_VISIBLE_DEVICES=0 vitron worker --queues gpu --concurrency 1
    CUDA_VISIBLE_DEVICES=1 vitron worker --queues gpu --concurrency 1
    vitron worker --queues cpu --concurrency 8      # classical (OpenCV) work, on any machine

Workers read `VITRON_BROKER_URL`, `VITRON_RESULT_BACKEND` and `VITRON_HOME` like their clients, and must
share the clients' artifact store.
"""

from __future__ import annotations

import os

import cv2
from celery.signals import worker_process_init

from schemas import BackendUnavailable, InvalidInput, VitronSettings

from . import celery_app
from .celery_app import QUEUES

_threads: int | None = None  # threads per pool process, set by run_worker before the pool forks


@worker_process_init.connect
def _share_the_cores(**_: object) -> None:
    if _threads is not None:
        cv2.setNumThreads(_threads)


def run_worker(queues: list[str], concurrency: int = 1, loglevel: str = "INFO") -> None:
    """Run a prefork worker on `queues` ("gpu", "cpu") until it is stopped (Ctrl-C or SIGTERM: warm shutdown).

    Each pool process gets cores // concurrency threads for OpenCV, and for torch unless OMP_NUM_THREADS is set.
    A prefork pool is safe with CUDA because each pool process initialises CUDA itself, after the fork,
    when its first job loads a model. So nothing in the parent may touch CUDA: a CUDA context created
    before the fork breaks every child. The pool processes live on between jobs, so the model cache
    keeps models loaded (docs/ARCHITECTURE.md, rule 3).
    """
    unknown = sorted(set(queues) - set(QUEUES))
    if unknown or not queues:
        raise InvalidInput(f"unknown queue(s) {unknown}" if unknown else "no queue given", field="queues",
                           fix=f"choose from {list(QUEUES)}")
    if concurrency < 1:
        raise InvalidInput(f"concurrency {concurrency} is below 1", field="concurrency", fix="give 1 or more")
    settings = VitronSettings()
    if not settings.broker_url:
        raise BackendUnavailable("no job broker is configured", field="VITRON_BROKER_URL",
                                 fix="set VITRON_BROKER_URL, e.g. redis://127.0.0.1:6379/0")
    # Celery would retry an unreachable broker for many minutes, saying little: say so now, in one line.
    celery_app.check_broker(celery_app.app, settings.broker_timeout_s)
    # Each pool process gets its share of the cores: OpenCV (and torch's OpenMP) would otherwise start a thread
    # per core in every process, and on a busy machine those threads spin against each other's work.
    global _threads
    _threads = max(1, (os.cpu_count() or 1) // concurrency)
    os.environ.setdefault("OMP_NUM_THREADS", str(_threads))  # read when a pool process first imports torch
    celery_app.app.worker_main([
        "worker",
        f"--queues={','.join(queues)}",
        f"--concurrency={concurrency}",
        "--pool=prefork",
        f"--loglevel={loglevel}",
        # A unique node name: several workers (one per GPU) may run on one machine.
        f"--hostname=vitron-{os.getpid()}@%h",
    ])
