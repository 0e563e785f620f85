"""The LangGraph checkpointer from the same settings: a graph's state survives a restart, and deleting the
session deletes its checkpoints."""

from __future__ import annotations

import operator
from typing import Annotated, TypedDict

from langgraph.checkpoint.postgres import PostgresSaver
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.graph import END, START, StateGraph

from memory import SessionMemory, open_checkpointer


class State(TypedDict):
    notes: Annotated[list[str], operator.add]


def graph(checkpointer):
    builder = StateGraph(State)
    builder.add_node("note", lambda state: {"notes": [f"note {len(state['notes'])}"]})
    builder.add_edge(START, "note")
    builder.add_edge("note", END)
    return builder.compile(checkpointer=checkpointer)


def test_state_survives_a_restart_and_goes_with_the_session(memory_settings, database_url):
    with SessionMemory.from_settings(memory_settings) as memory:
        session_id = memory.create_session().id
        config = {"configurable": {"thread_id": session_id}}
        with open_checkpointer(memory_settings) as saver:
            assert isinstance(saver, SqliteSaver if database_url.startswith("sqlite") else PostgresSaver)
            graph(saver).invoke({"notes": ["hello"]}, config)
        with open_checkpointer(memory_settings) as saver:  # a new process
            app = graph(saver)
            assert app.get_state(config).values["notes"] == ["hello", "note 1"]
            app.invoke({"notes": ["again"]}, config)
            assert app.get_state(config).values["notes"] == ["hello", "note 1", "again", "note 3"]

        memory.delete_session(session_id)
        with open_checkpointer(memory_settings) as saver:
            assert graph(saver).get_state(config).values == {}
            assert list(saver.list(config)) == []
