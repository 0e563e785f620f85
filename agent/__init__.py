"""The agent: planners, the LangGraph state machine, the public API (the use cases), and its skins (the CLI).

    from agent import VitronAgent

    with VitronAgent.from_settings() as agent:
        session = agent.session()
        reply = session.send("<module>B</module><instruction>segment the cup</instruction>"
                             "<region>(72, 14, 484, 396)</region>", image="coffee.png")

The names below load on first use, so `vitron --help` (which imports `agent.cli`) loads no graph, model or database.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .api import AgentSession, Reply, TurnStream, VitronAgent, make_planner
    from .langchain_adapter import langchain_tools
    from .toolkit import Toolkit

__all__ = ["AgentSession", "Reply", "Toolkit", "TurnStream", "VitronAgent", "langchain_tools", "make_planner"]
_ELSEWHERE = {"langchain_tools": "langchain_adapter", "Toolkit": "toolkit"}  # the rest live in `api`


def __getattr__(name: str) -> Any:
    if name in __all__:
        import importlib

        return getattr(importlib.import_module(f".{_ELSEWHERE.get(name, 'api')}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
