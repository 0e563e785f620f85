"""Fixtures shared by every test: a fresh artifact store and tool context under tmp_path."""

from __future__ import annotations

import pytest

from memory import ArtifactStore
from schemas import VitronSettings
from tools import ToolContext


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
