"""The `vitron` command as a user runs it, for the tests that drive it in a subprocess."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np

VITRON = str(Path(sys.executable).with_name("vitron"))


def cli_env(home: Path) -> dict[str, str]:
    """This process's environment with no `VITRON_*` setting but the data folder."""
    return {**{k: v for k, v in os.environ.items() if not k.startswith("VITRON_")}, "VITRON_HOME": str(home)}


def vitron(env: dict[str, str], *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([VITRON, *args], capture_output=True, text=True, env=env, timeout=timeout)


def one_json(proc: subprocess.CompletedProcess) -> dict:
    assert proc.returncode == 0, proc.stderr
    (line,) = proc.stdout.strip().splitlines()
    return json.loads(line)


def png(path: Path, rgb: np.ndarray) -> Path:
    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def vitron_serve(env: dict[str, str], timeout: float = 60) -> Iterator[str]:
    """`vitron serve` on a free loopback port, as a user starts it: its base URL once `/healthz` answers; stopped
    on leaving. RuntimeError, with what it printed, if it never answers."""
    import httpx

    port = free_port()
    proc = subprocess.Popen([VITRON, "serve", "--port", str(port), "--log-level", "warning"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(f"vitron serve did not answer: {proc.communicate()[0][-2000:]}")
            time.sleep(0.1)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=30)
