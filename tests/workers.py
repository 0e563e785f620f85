"""Real Celery worker processes for tests and benches: `vitron worker`, in a session of its own, sharing the
caller's artifact folder through VITRON_HOME."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VITRON = str(Path(sys.executable).with_name("vitron"))


def start_worker(app, home: Path, broker_url: str, *, concurrency: int = 1, log_path: Path | None = None,
                 timeout: float = 60, settings: dict[str, str] | None = None) -> subprocess.Popen:
    """Start a worker and wait until it answers a ping; RuntimeError (with its log's tail) if it does not.

    settings: more `VITRON_*` variables for the worker (name without the prefix, e.g. VISIBILITY_TIMEOUT_S)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VITRON_")}
    env.update(VITRON_BROKER_URL=broker_url, VITRON_HOME=str(home))
    env.update({f"VITRON_{name}": value for name, value in (settings or {}).items()})
    log_path = log_path or home.parent / "worker.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("a") as log:
        # The command a user runs, so every Celery test and bench goes through it.
        proc = subprocess.Popen([VITRON, "worker", "--queues", "gpu,cpu", "--concurrency", str(concurrency)], cwd=ROOT,
                                env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    me = f"vitron-{proc.pid}@{socket.gethostname()}"  # the node name run_worker gives it
    deadline = time.monotonic() + timeout
    while not app.control.ping(destination=[me], timeout=0.5):
        if proc.poll() is not None or time.monotonic() > deadline:
            stop_worker(proc)
            raise RuntimeError(f"the worker did not start:\n{log_path.read_text()[-3000:]}")
    return proc


def stop_worker(proc: subprocess.Popen) -> None:
    """Stop the worker and its pool processes (its own session), forcefully after 20 s."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@contextmanager
def celery_worker(settings, *, concurrency: int = 1, env: dict[str, str] | None = None) -> Iterator[tuple]:
    """(app, worker process) for these settings: Redis at `settings.broker_url` required (else the test skips, or
    fails with VITRON_REQUIRE_SERVICES=1), its database emptied, the worker stopped on leaving."""
    import redis

    from tests.services import require
    from tools.celery_app import make_celery

    host, port = settings.broker_url.removeprefix("redis://").split("/")[0].split(":")
    require("Redis", host, int(port))
    redis.Redis.from_url(settings.broker_url).flushdb()
    settings.home.mkdir(parents=True, exist_ok=True)
    app = make_celery(settings)
    proc = start_worker(app, settings.home, settings.broker_url, concurrency=concurrency, settings=env)
    try:
        yield app, proc
    finally:
        stop_worker(proc)
