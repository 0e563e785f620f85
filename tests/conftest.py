"""Fixtures shared by every test: a fresh artifact store and tool context under tmp_path, and the environment of a
`vitron` command run in a subprocess."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from memory import ArtifactStore
from schemas import VitronSettings
from tools import ToolContext

# The tests' models are tiny: on a small machine shared with other processes, a second torch thread only spins
# (a 0.05 s pipeline call took 5 s). Real sizes (bench/) keep torch's default.
torch.set_num_threads(1)


@pytest.fixture
def settings(tmp_path) -> VitronSettings:
    return VitronSettings(home=tmp_path / "home")


@pytest.fixture
def store(settings) -> ArtifactStore:
    return ArtifactStore.from_settings(settings)


@pytest.fixture
def progress_log() -> list[tuple[float, str]]:
    return []


@pytest.fixture
def ctx(store, settings, progress_log) -> ToolContext:
    return ToolContext(store=store, settings=settings, progress=lambda f, m: progress_log.append((f, m)))


@pytest.fixture
def home(tmp_path) -> Path:
    """The data folder (VITRON_HOME) of a `vitron` command run in a subprocess."""
    return tmp_path / "home"


@pytest.fixture
def env(home) -> dict[str, str]:
    """The environment of a `vitron` command run in a subprocess: no settings but the data folder."""
    from tests.cli import cli_env

    return cli_env(home)


@pytest.fixture
def fresh_model_cache():
    """An empty model cache before and after the test: it loads its models itself (and leaves none behind)."""
    from tools.model_cache import model_cache

    model_cache().clear()
    yield
    model_cache().clear()
