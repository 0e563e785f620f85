"""A worker says it is alive, and keeps its jobs its own while it lives.

On a Redis broker a job is taken from its queue into an "unacknowledged" index with the time it was taken; Redis
gives it back to the queue once that time is older than the visibility timeout. Celery's default (6 h) must exceed
the longest job, so a job whose worker was killed whole waited 6 h. Here each worker's main process renews the
taken-time of the jobs it holds every sixth of a short visibility timeout (30 s by default): a live worker's job is
never given back however long it runs, and a dead worker's goes back to the queue within the timeout, where a live
worker takes it (their restore sweep runs every few seconds). A job run twice is safe: its outputs are
content-addressed, and a job that already succeeded is not run again (`celery_app._START`).

RabbitMQ gives a dead consumer's unacknowledged jobs back itself, the moment its connection drops.

The worker also keeps `vitron:worker:{node}` alive (with its queues) in Redis, so that a client waiting on a job can
tell "queued behind other jobs" from "no worker serves this queue" and never waits without a bound.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from typing import Any

import redis
from celery import bootsteps
from celery.worker import state

log = logging.getLogger(__name__)

WORKER_KEY = "vitron:worker:"
UNACKED_INDEX = "unacked_index"  # kombu's Redis transport's default name (after its global key prefix)
RESTORE_EVERY_S = 5  # how often live workers give back the jobs of dead ones (kombu's sweep, unthrottled)


def redis_for(app: Any) -> redis.Redis | None:
    """The Redis that job flags and worker liveness live in: the result backend's, else the broker's; None if
    neither is Redis."""
    client = getattr(app.backend, "client", None)
    if isinstance(client, redis.Redis):
        return client
    url = app.conf.broker_url
    if isinstance(url, str) and url.startswith(("redis://", "rediss://")):
        return redis.Redis.from_url(url)
    return None


def beat_every(visibility_timeout_s: float) -> float:
    return min(10.0, max(0.5, visibility_timeout_s / 6))


def live_workers(client: redis.Redis) -> dict[str, list[str]]:
    """The live workers' node names and the queues each serves."""
    found: dict[str, list[str]] = {}
    for key in client.scan_iter(match=f"{WORKER_KEY}*", count=100):
        value = client.get(key)
        if value is not None:
            name = key.decode() if isinstance(key, bytes) else key
            found[name[len(WORKER_KEY):]] = json.loads(value).get("queues", [])
    return found


class Keepalive(bootsteps.StartStopStep):
    """Worker bootstep: a thread in the main process that renews this worker's jobs and its liveness key."""

    label = "vitron keepalive"

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        super().__init__(worker, **kwargs)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, worker: Any) -> None:
        app = worker.app
        options = app.conf.broker_transport_options or {}
        timeout = float(options.get("visibility_timeout", 3600))
        url = app.conf.broker_url if isinstance(app.conf.broker_url, str) else ""
        broker = redis.Redis.from_url(url) if url.startswith(("redis://", "rediss://")) else None
        index = options.get("global_keyprefix", "") + UNACKED_INDEX
        flags = redis_for(app)
        queues = sorted((app.amqp.queues.consume_from or app.amqp.queues).keys())  # those given with --queues
        name, every = worker.hostname, beat_every(timeout)
        alive = json.dumps({"queues": queues, "pid": os.getpid()})

        def beat() -> None:
            while True:
                try:
                    if broker is not None:
                        tags = [r.message.delivery_tag for r in (*state.reserved_requests, *state.active_requests)]
                        if tags:  # XX: renew only what is still taken (a finished job's entry is gone)
                            broker.zadd(index, dict.fromkeys(tags, time.time()), xx=True)
                    if flags is not None:
                        flags.set(WORKER_KEY + name, alive, ex=max(2, int(every * 3)))
                except Exception as exc:  # Redis away for a moment: the next beat tries again
                    log.warning("keepalive: %s", exc)
                if self._stop.wait(every):
                    return

        self._thread = threading.Thread(target=beat, name="vitron-keepalive", daemon=True)
        self._thread.start()
        self._name, self._flags = name, flags

    def stop(self, worker: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            if self._flags is not None:
                with contextlib.suppress(Exception):  # stopping anyway
                    self._flags.delete(WORKER_KEY + self._name)
