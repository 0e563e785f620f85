"""The session database: one engine factory for SQLite and PostgreSQL, retries, migrations on start.

SQLite (the default, `$VITRON_HOME/vitron.db`) runs in WAL mode with foreign keys on and a busy
timeout; write transactions start with `BEGIN IMMEDIATE`, so two writers queue for the lock instead of
both reading and then failing to upgrade to it. A "database is locked" that still gets through (and a
PostgreSQL serialization failure or deadlock) is retried with jittered exponential backoff; only after
every retry does the caller see an error, and then a `DatabaseUnavailable` that says what to do.

The schema is owned by the Alembic migrations in `memory/migrations/`, configured in code (no
alembic.ini). `Database.open` brings an older database up to date, or refuses with a clear message
when `VITRON_DATABASE_AUTO_UPGRADE=0` or when the database is newer than this code.
"""

from __future__ import annotations

import random
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, create_engine, event, inspect, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, OperationalError

from schemas import DatabaseOutOfDate, DatabaseUnavailable, InvalidInput, VitronSettings

T = TypeVar("T")

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
SQLITE_BUSY_TIMEOUT_S = 10.0
MIGRATION_LOCK_KEY = 0x5649_5452_4F4E  # "VITRON": one migrator at a time on PostgreSQL
_WRITE = "vitron_write"  # execution option: this transaction will write


# -- URLs ------------------------------------------------------------------------------------------


def settings_url(settings: VitronSettings | None = None) -> str:
    """The configured database URL (`VITRON_DATABASE_URL`, or SQLite in `VITRON_HOME`)."""
    return (settings or VitronSettings()).database


def normalise_url(url: str | URL) -> URL:
    """Parse a URL; plain `postgresql://` means psycopg 3; only SQLite and PostgreSQL are accepted."""
    if isinstance(url, str):
        if url.startswith("postgres://"):
            url = "postgresql://" + url.removeprefix("postgres://")
        try:
            url = make_url(url)
        except ArgumentError:
            raise InvalidInput(f"cannot read a database URL from {url!r}", field="VITRON_DATABASE_URL",
                               fix="write sqlite:///path/to/vitron.db or postgresql://user@host:5432/dbname") from None
    backend = url.get_backend_name()
    if backend == "postgresql":
        if url.drivername == "postgresql":
            url = url.set(drivername="postgresql+psycopg")
        elif url.drivername != "postgresql+psycopg":
            raise InvalidInput(f"driver {url.drivername!r} is not installed", field="VITRON_DATABASE_URL",
                               fix="use postgresql:// or postgresql+psycopg:// (psycopg 3)")
    elif backend == "sqlite":
        if url.database and url.database != ":memory:" and not url.database.startswith("file:"):
            url = url.set(database=str(Path(url.database).expanduser()))
    else:
        raise InvalidInput(f"unsupported database {backend!r}", field="VITRON_DATABASE_URL",
                           fix="use sqlite:///path/to/vitron.db or postgresql://user@host:5432/dbname")
    return url


def display_url(url: str | URL) -> str:
    """The URL with any password hidden, for messages."""
    return normalise_url(url).render_as_string(hide_password=True)


# -- engines ---------------------------------------------------------------------------------------


def create_engine_for(url: str | URL, **kwargs: Any) -> Engine:
    """An engine for SQLite or PostgreSQL with this project's settings (pragmas, pool, BEGIN IMMEDIATE)."""
    url = normalise_url(url)
    if url.get_backend_name() == "sqlite":
        if url.database and url.database != ":memory:" and not url.database.startswith("file:"):
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        connect_args = {"timeout": SQLITE_BUSY_TIMEOUT_S, "check_same_thread": False}
        engine = create_engine(url, connect_args=connect_args, **kwargs)
        event.listen(engine, "connect", _sqlite_on_connect)
        event.listen(engine, "begin", _sqlite_on_begin)
        return engine
    kwargs.setdefault("pool_size", 5)
    kwargs.setdefault("max_overflow", 20)
    kwargs.setdefault("pool_pre_ping", True)  # a server restart must not surface as an error on next use
    return create_engine(url, **kwargs)


def _sqlite_on_connect(dbapi_conn: Any, record: Any) -> None:
    # Take BEGIN away from the sqlite3 module so that _sqlite_on_begin can say DEFERRED or IMMEDIATE.
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    try:
        cur.execute(f"PRAGMA busy_timeout = {int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
        cur.execute("PRAGMA foreign_keys = ON")  # per connection; the cascades on delete need it
        if cur.execute("PRAGMA journal_mode").fetchone()[0] not in ("wal", "memory"):
            cur.execute("PRAGMA journal_mode = WAL")  # readers never block the writer, nor it them
        # In WAL mode NORMAL is corruption-safe; a power cut may lose the last commits, not the file.
        cur.execute("PRAGMA synchronous = NORMAL")
    finally:
        cur.close()


def _sqlite_on_begin(conn: Connection) -> None:
    immediate = conn.get_execution_options().get(_WRITE, False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


# -- retries ---------------------------------------------------------------------------------------

_RETRY_SQLSTATES = {"40001", "40P01", "55P03"}  # serialization failure, deadlock, lock not available
_LOCKED_MESSAGES = ("database is locked", "database table is locked", "database is busy")


def is_transient(exc: BaseException) -> bool:
    """True for errors that go away when the transaction is simply run again."""
    if not isinstance(exc, DBAPIError):
        return False
    if getattr(exc.orig, "sqlstate", None) in _RETRY_SQLSTATES:
        return True
    message = str(exc.orig).lower()
    return any(m in message for m in _LOCKED_MESSAGES)


def retry_transient(fn: Callable[[], T], *, attempts: int = 12, base_delay: float = 0.005,
                    max_delay: float = 0.5, where: str = "the session database") -> T:
    """Call `fn` until it does not fail with a transient database error; back off with jitter between tries."""
    for attempt in range(attempts):
        try:
            return fn()
        except DBAPIError as exc:
            if not is_transient(exc):
                if is_unusable(exc):
                    raise _unavailable(exc, where) from exc
                raise
            if attempt == attempts - 1:
                raise DatabaseUnavailable(
                    f"{where} stayed busy through {attempts} tries ({_first_line(exc.orig)})",
                    fix="another process holds a long write lock; try again, or move to PostgreSQL "
                        "with VITRON_DATABASE_URL for many concurrent writers",
                ) from exc
            time.sleep(min(max_delay, base_delay * 2**attempt) * random.uniform(0.5, 1.5))
    raise AssertionError("unreachable")


_UNUSABLE_SQLITE = {"SQLITE_NOTADB", "SQLITE_CORRUPT"}


def is_unusable(exc: BaseException) -> bool:
    """True for errors that say the database cannot be used at all, not that one statement failed: it cannot be
    reached or opened, or (SQLite) the file is not a database, or a damaged one."""
    if not isinstance(exc, DBAPIError):
        return False
    return isinstance(exc, OperationalError) or getattr(exc.orig, "sqlite_errorname", None) in _UNUSABLE_SQLITE


def _first_line(exc: BaseException | None) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _unavailable(exc: BaseException, where: str) -> DatabaseUnavailable:
    cause = getattr(exc, "orig", None) or exc
    if isinstance(cause, sqlite3.Error):  # a file, no server: what to check is the file and its folder
        fix = ("give a SQLite file this user can read and write, in a folder it can write (a new path makes a new "
               "database), or unset VITRON_DATABASE_URL to use VITRON_HOME/vitron.db")
    else:
        fix = ("check that the database server is running and VITRON_DATABASE_URL is right (unset it to use SQLite "
               "in VITRON_HOME)")
    return DatabaseUnavailable(f"cannot use {where}: {_first_line(cause)}", field="VITRON_DATABASE_URL", fix=fix)


# -- migrations ------------------------------------------------------------------------------------


def alembic_config(connection: Connection | str | URL | None = None) -> Any:
    """An Alembic `Config` for the packaged migrations, bound to a connection or a URL (no alembic.ini)."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    if isinstance(connection, Connection):
        cfg.attributes["connection"] = connection
    elif connection is not None:
        rendered = normalise_url(connection).render_as_string(hide_password=False)
        cfg.set_main_option("sqlalchemy.url", rendered.replace("%", "%%"))
    return cfg


@cache
def _script_directory() -> Any:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config())


def head_revision() -> str:
    """The newest migration this code knows."""
    return _script_directory().get_current_head()


def known_revisions() -> frozenset[str]:
    return frozenset(s.revision for s in _script_directory().walk_revisions())


def _current_revision(conn: Connection) -> str | None:
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(conn).get_current_revision()


# -- the database ----------------------------------------------------------------------------------


class Database:
    """An engine plus transactions that retry on transient errors; `open` also brings the schema up to date."""

    def __init__(self, url: str | URL, **engine_kwargs: Any) -> None:
        self.url = normalise_url(url)
        self.engine = create_engine_for(self.url, **engine_kwargs)
        self._writer = self.engine.execution_options(**{_WRITE: True})

    @classmethod
    def open(cls, url: str | URL | None = None, *, auto_upgrade: bool = True, **engine_kwargs: Any) -> Database:
        """Connect and check the schema: upgrade it if it is older (when allowed), refuse if it is newer."""
        db = cls(url if url is not None else settings_url(), **engine_kwargs)
        try:
            db.ensure_current(auto_upgrade=auto_upgrade)
        except BaseException:
            db.close()
            raise
        return db

    @classmethod
    def from_settings(cls, settings: VitronSettings | None = None) -> Database:
        settings = settings or VitronSettings()
        try:
            return cls.open(settings.database, auto_upgrade=settings.database_auto_upgrade)
        except DatabaseUnavailable as exc:
            if settings.database_url:
                raise
            # The default database, in the data folder: that folder is what to fix, not a URL nobody set.
            raise DatabaseUnavailable(exc.problem, field="VITRON_HOME", fix="point VITRON_HOME at a folder this user "
                                      "can write, or set VITRON_DATABASE_URL to a database elsewhere") from exc

    @property
    def backend(self) -> str:
        """`sqlite` or `postgresql`."""
        return self.url.get_backend_name()

    @property
    def display_url(self) -> str:
        return self.url.render_as_string(hide_password=True)

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transactions --------------------------------------------------------------------------

    def write(self, work: Callable[[Connection], T]) -> T:
        """Run `work(connection)` in one write transaction, again from the start after a transient error."""
        return self._run(work, write=True)

    def read(self, work: Callable[[Connection], T]) -> T:
        """Run `work(connection)` in one read transaction (a consistent snapshot on both backends)."""
        return self._run(work, write=False)

    def _run(self, work: Callable[[Connection], T], *, write: bool) -> T:
        def attempt() -> T:
            with self.connect(write=write) as conn:
                return work(conn)

        return retry_transient(attempt, where=f"the session database {self.display_url}")

    @contextmanager
    def connect(self, *, write: bool = False) -> Iterator[Connection]:
        """A raw connection in a transaction (`write=True`: the SQLite write lock is taken at BEGIN)."""
        try:
            with (self._writer if write else self.engine).begin() as conn:
                yield conn
        except DBAPIError as exc:
            if is_transient(exc) or not is_unusable(exc):
                raise
            raise _unavailable(exc, f"the session database {self.display_url}") from exc

    # -- schema --------------------------------------------------------------------------------

    def revision(self) -> str | None:
        """The migration the database is at; None for an empty database."""
        with self.connect() as conn:
            return _current_revision(conn)

    def ensure_current(self, *, auto_upgrade: bool = True) -> None:
        """Upgrade an older schema to this code's (when allowed); refuse a newer or unknown one."""
        head = head_revision()
        with self.connect() as conn:
            current = _current_revision(conn)
            ours_unversioned = current is None and inspect(conn).has_table("sessions")
        if current == head:
            return
        where = self.display_url
        if current is not None and current not in known_revisions():
            raise DatabaseOutOfDate(
                f"the session database {where} is at migration {current!r}, which this vitron-agent does not "
                f"know (it knows up to {head!r}); it was written by a newer version",
                fix="upgrade vitron-agent, or point VITRON_DATABASE_URL at another database",
            )
        if ours_unversioned:
            raise DatabaseOutOfDate(
                f"the session database {where} has a sessions table but no migration record",
                fix="it was not made by vitron's migrations; point VITRON_DATABASE_URL at another database, "
                    "or move that table away",
            )
        if not auto_upgrade:
            raise DatabaseOutOfDate(
                f"the session database {where} is at migration {current or 'none (empty)'}, this code needs {head!r}",
                field="VITRON_DATABASE_AUTO_UPGRADE",
                fix="upgrade it (back it up first: Database.upgrade), or set VITRON_DATABASE_AUTO_UPGRADE=1",
            )
        self.upgrade()

    def upgrade(self, revision: str = "head") -> None:
        """Run the migrations up to `revision`, one migrator at a time (safe when processes start together)."""
        from alembic import command

        def attempt() -> None:
            with self.connect(write=True) as conn:
                self._lock_for_migration(conn)
                command.upgrade(alembic_config(conn), revision)

        retry_transient(attempt, where=f"the session database {self.display_url}")

    def downgrade(self, revision: str) -> None:
        """Run migrations down to `revision` (`base` empties the schema). For tests and operators."""
        from alembic import command

        with self.connect(write=True) as conn:
            self._lock_for_migration(conn)
            command.downgrade(alembic_config(conn), revision)

    def _lock_for_migration(self, conn: Connection) -> None:
        if self.backend == "postgresql":
            # Released at commit; SQLite needs nothing more than the BEGIN IMMEDIATE it already holds.
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
