"""The agent: planners, the LangGraph state machine, the public API, the CLI.

    from agent import VitronAgent

    with VitronAgent.from_settings() as agent:
        session = agent.session()
        reply = session.send("<module>B</module><instruction>segment the cup</instruction>"
                             "<region>(72, 52, 484, 392)</region>", image="coffee.png")
"""

from .api import AgentSession, Reply, VitronAgent, make_planner

__all__ = ["AgentSession", "Reply", "VitronAgent", "make_planner"]
