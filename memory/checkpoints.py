"""The LangGraph checkpointer, from the same settings as session memory.

SQLite URLs get `SqliteSaver`, in a file beside the session tables (`vitron-checkpoints.db` for `vitron.db`;
WAL, a busy timeout so that several processes can share it); PostgreSQL URLs get `PostgresSaver` over a small
connection pool, in the same database. The agent's thread id is the session id, so deleting a session deletes
its checkpoints.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver
from sqlalchemy.engine import URL

from schemas import VitronSettings

from .database import SQLITE_BUSY_TIMEOUT_S, Database, _unavailable, normalise_url


def _compact_sqlite_saver() -> type[BaseCheckpointSaver]:
    from langgraph.checkpoint.sqlite import SqliteSaver

    class CompactSqliteSaver(SqliteSaver):
        """Channel versions as small integers. SQLite keeps channel values inline with each checkpoint, so a
        version only has to order writes; the stock 50-character version strings were a third of every
        checkpoint's bytes."""

        def get_next_version(self, current: str | int | None, channel: None) -> int:  # type: ignore[override]
            if isinstance(current, str):  # a checkpoint written by the stock saver
                current = int(current.split(".")[0])
            return (current or 0) + 1

    return CompactSqliteSaver


def strict_serializer() -> Any:
    """LangGraph's serializer restricted to its allowlist of safe types (plain data, datetimes, its own `Send` and
    `Interrupt`…): a turn's state holds refs and small values only, so a checkpoint holding anything else (written
    by someone with access to the database) is never imported and run on load."""
    from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

    return JsonPlusSerializer(allowed_msgpack_modules=None)


def _libpq(url: URL) -> str:
    """psycopg's own form of a SQLAlchemy PostgreSQL URL (no `+psycopg` driver suffix)."""
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


@contextmanager
def open_checkpointer(target: VitronSettings | Database | str | URL | None = None) -> Iterator[BaseCheckpointSaver]:
    """A ready checkpointer (tables created) for the session database; closed on exit."""
    if isinstance(target, Database):
        url = target.url
    elif isinstance(target, VitronSettings) or target is None:
        url = normalise_url((target or VitronSettings()).database)
    else:
        url = normalise_url(target)

    if url.get_backend_name() == "sqlite":
        SqliteSaver = _compact_sqlite_saver()

        database = url.database or ":memory:"
        if database != ":memory:" and not database.startswith("file:"):
            # A file of its own beside the session tables: SQLite has one writer per file, and checkpoints
            # written in the background must not queue behind (or hold up) the steps' own writes.
            path = Path(database)
            database = str(path.with_name(path.stem + "-checkpoints" + (path.suffix or ".db")))
            path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(database, timeout=SQLITE_BUSY_TIMEOUT_S, check_same_thread=False,
                               uri=database.startswith("file:"))
        try:
            if database != ":memory:":
                conn.execute("PRAGMA journal_mode = WAL")
                # As for the session tables: in WAL mode NORMAL cannot corrupt the file, and skipping the fsync
                # per commit is most of a checkpoint's cost (a power cut may lose the last steps, not the file).
                conn.execute("PRAGMA synchronous = NORMAL")
            saver = SqliteSaver(conn, serde=strict_serializer())
            saver.setup()
            yield saver
        finally:
            conn.close()
        return

    from langgraph.checkpoint.postgres import PostgresSaver
    from psycopg.rows import dict_row
    from psycopg_pool import ConnectionPool

    # The saver needs autocommit and no server-side prepared statements (it may sit behind pgbouncer).
    pool = ConnectionPool(_libpq(url), min_size=1, max_size=8, open=False,
                          kwargs={"autocommit": True, "prepare_threshold": None, "row_factory": dict_row})
    try:
        pool.open(wait=True, timeout=10)
    except Exception as exc:
        pool.close()
        raise _unavailable(exc, f"the checkpoint database {url.render_as_string(hide_password=True)}") from exc
    try:
        saver = PostgresSaver(pool, serde=strict_serializer())
        saver.setup()
        yield saver
    finally:
        pool.close()


def delete_thread_checkpoints(target: VitronSettings | Database | str | URL, thread_id: str) -> None:
    """Remove every checkpoint of one thread (a session)."""
    with open_checkpointer(target) as saver:
        saver.delete_thread(thread_id)
