"""The `vitron` command as a user runs it, for the tests that drive it in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
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
