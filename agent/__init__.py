"""The agent: planners, the LangGraph state machine, the public API, the CLI."""
