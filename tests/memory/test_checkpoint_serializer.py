"""The checkpointer's serializer is strict: a checkpoint is read back as plain data unless its types are on
LangGraph's allowlist of safe ones, so a row written into the checkpoint database by someone else cannot make a
load import and build objects of their choosing."""

from __future__ import annotations

from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from langgraph.types import Send

from memory.checkpoints import open_checkpointer, strict_serializer
from schemas import BoxRegion


def test_only_allowlisted_types_are_built_on_load():
    written = JsonPlusSerializer().dumps_typed({"region": BoxRegion(box=(1, 2, 3, 4)), "send": Send("run_step", {}),
                                                "plain": [1, "a", None, 2.5]})
    read = strict_serializer().loads_typed(written)
    assert read["region"] == {"kind": "box", "box": [1.0, 2.0, 3.0, 4.0]}  # data, not a BoxRegion
    assert isinstance(read["send"], Send) and read["plain"] == [1, "a", None, 2.5]


def test_both_checkpointers_use_it(tmp_path, database_url):
    for target in (f"sqlite:///{tmp_path / 'db.sqlite'}", database_url):
        with open_checkpointer(target) as saver:
            assert saver.serde._allowed_msgpack_modules is None  # strict: the safe types only
