"""`vitron mcp`: the tools as an MCP server over stdin and stdout, for a desktop chat app or an IDE to start."""

from __future__ import annotations

from .console import clear_errors


@clear_errors
def mcp_cmd() -> None:
    """Serve the tools to an MCP client over stdio: upload, each module, each saved workflow, run_turn; artifacts as
    resources (vitron://threads/{id}/artifacts/{alias}). The client starts it; stdout carries the protocol only."""
    from agent.mcp_server import run_stdio

    run_stdio()
