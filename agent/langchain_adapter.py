"""The specialists and saved workflows as LangChain tools on one session, for an agent of someone else's making (a
LangGraph `create_react_agent`, `langchain.agents.create_agent`, any chat model's `bind_tools`):

    from agent import VitronAgent, langchain_tools

    with VitronAgent.from_settings() as vitron:
        session = vitron.session()
        session.upload("cat.jpg")                      # @img1
        agent = create_react_agent(model, langchain_tools(session))
        agent.invoke({"messages": [("user", "segment the cat in @img1 and make it blue")]})

Each tool is named as `vitron tools` names it (`image_segmentation`, …, and each saved workflow by its name). The
model names artifacts by alias (`@img1`, `img1`, "latest"); each call is a turn of the session (`agent.toolkit`), and
its tool message says what was made (alias, kind, size, what it came from) while its `artifact` holds the made
artifacts' refs as JSON for the host program. A bad call is the tool message's content (status "error"), naming the
field and the fix, never an exception that ends the agent's loop.
"""

from __future__ import annotations

from typing import Any

from langchain_core.tools import BaseTool, StructuredTool, ToolException
from pydantic import ValidationError

from .toolkit import Toolkit, ToolSpec, invalid_arguments

AgentSession = Any  # `agent.api.AgentSession`, which makes its tools here: not imported back


def langchain_tools(session: AgentSession) -> list[BaseTool]:
    """One LangChain tool per specialist, then one per saved workflow, each acting on `session`."""
    toolkit = Toolkit.of(session.agent)
    return [_tool(toolkit, session.id, spec) for spec in toolkit.specs().values()]


def langchain_tool(session: AgentSession, name: str) -> BaseTool:
    """The LangChain tool for one specialist (any spelling: `B`, `image_segmentation`) or saved workflow, acting on
    `session`."""
    toolkit = Toolkit.of(session.agent)
    return _tool(toolkit, session.id, toolkit.spec(name))


def _tool(toolkit: Toolkit, thread: str, spec: ToolSpec) -> BaseTool:
    def call(**arguments: Any) -> tuple[str, list[dict[str, Any]]]:
        result = toolkit.call(thread, spec.name, arguments)
        if result.error is not None:
            raise ToolException(result.text)  # the message's content, status "error": the model reads and retries
        return result.text, result.refs()

    def invalid(exc: ValidationError) -> str:
        return f"{spec.name}: {invalid_arguments(exc, spec.args).message}"

    return StructuredTool(name=spec.name, description=spec.description, args_schema=spec.args, func=call,
                          response_format="content_and_artifact", handle_tool_error=True,
                          handle_validation_error=invalid)


__all__ = ["langchain_tool", "langchain_tools"]
