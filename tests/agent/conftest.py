"""An agent on a fresh SQLite session database and artifact store under tmp_path."""

from __future__ import annotations

import pytest

from agent.api import VitronAgent
from schemas import VitronSettings


@pytest.fixture
def agent_settings(tmp_path) -> VitronSettings:
    return VitronSettings(home=tmp_path / "home")


@pytest.fixture
def agent(agent_settings):
    with VitronAgent.from_settings(agent_settings) as agent:
        yield agent
