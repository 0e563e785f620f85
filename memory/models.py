"""SQLAlchemy models of session memory: sessions, turns, steps (with their jobs), artifacts and lineage.

Rows hold artifact refs (sha256 + kind + media type + shape), never bytes: blobs stay in the store.
The schema is created and changed only by the Alembic migrations in `memory/migrations/`; a test
checks that these models and the migrations agree on both SQLite and PostgreSQL.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from schemas import STEP_STATUSES

ROLES = ("user", "assistant", "system", "tool")
ORIGINS = ("upload", "step", "planner", "undo")
BATCH_ITEM_STATUSES = ("pending", "succeeded", "failed")
RUN_STATUSES = ("pending", "running", "success", "error", "interrupted", "cancelled")

# Named constraints so that later migrations can alter them by name on both backends.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL gets 64-bit ids.
Id = BigInteger().with_variant(Integer(), "sqlite")
# PostgreSQL `json`, not `jsonb`: it keeps the key order, and a step's inputs are ordered (lineage follows it).
Json = JSON()


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp on every backend (SQLite stores none, so it is put back on read)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("timestamps must be timezone-aware")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: Json, list[Any]: Json}


class SessionRow(Base):
    """A conversation, workflow run or edit that can stop and go on."""

    __tablename__ = "sessions"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    owner: Mapped[str | None] = mapped_column(String(200), index=True)
    title: Mapped[str] = mapped_column(String(500), default="")
    settings: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class TurnLeaseRow(Base):
    """Who runs a session's turn now: one row per session while a process holds its turn, renewed by heartbeats.

    A holder is `host:pid:nonce`; a lease whose `expires_at` has passed (or whose process is gone, on the same host)
    may be taken over by a process resuming the turn."""

    __tablename__ = "turn_leases"

    session_id: Mapped[str] = mapped_column(ForeignKey("sessions.id", ondelete="CASCADE"), primary_key=True)
    holder: Mapped[str] = mapped_column(String(200))
    acquired_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column()


class TurnRow(Base):
    """One message of a session; `seq` counts 1, 2, 3… within the session, in the order they were appended."""

    __tablename__ = "turns"
    __table_args__ = (
        UniqueConstraint("session_id", "seq"),  # also the index the history window reads backwards
        CheckConstraint("role IN ('user', 'assistant', 'system', 'tool')", name="role"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    session_id: Mapped[str] = mapped_column(ForeignKey("sessions.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(Integer)
    role: Mapped[str] = mapped_column(String(16))
    text: Mapped[str] = mapped_column(Text, default="")
    invocations: Mapped[list[Any]] = mapped_column(default=list)
    reply: Mapped[str | None] = mapped_column(Text)
    tokens: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class StepRow(Base):
    """One invocation of a specialist and the job that runs it: status, progress, timings, error."""

    __tablename__ = "steps"
    __table_args__ = (
        CheckConstraint(f"status IN ({', '.join(repr(s) for s in STEP_STATUSES)})", name="status"),
        CheckConstraint("progress >= 0 AND progress <= 1", name="progress"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    session_id: Mapped[str] = mapped_column(ForeignKey("sessions.id", ondelete="CASCADE"), index=True)
    turn_id: Mapped[int | None] = mapped_column(ForeignKey("turns.id", ondelete="CASCADE"), index=True)
    position: Mapped[int | None] = mapped_column(Integer)
    module: Mapped[str] = mapped_column(String(40))
    command: Mapped[str] = mapped_column(Text, default="")
    invocation: Mapped[dict[str, Any]] = mapped_column(default=dict)
    backend: Mapped[str | None] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(16), default="pending")
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    message: Mapped[str | None] = mapped_column(Text)
    job_id: Mapped[str | None] = mapped_column(String(200), index=True)
    error: Mapped[dict[str, Any] | None] = mapped_column(Json)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column()
    finished_at: Mapped[datetime | None] = mapped_column()


class ArtifactRow(Base):
    """A session's use of one stored blob, with the alias the planner calls it by and what made it."""

    __tablename__ = "artifacts"
    __table_args__ = (
        UniqueConstraint("session_id", "alias"),
        # One alias per content within a session; an undo's row brings an earlier content back under a new alias.
        Index("uq_artifacts_session_id_sha256", "session_id", "sha256", unique=True,
              sqlite_where=text("origin != 'undo'"), postgresql_where=text("origin != 'undo'")),
        UniqueConstraint("session_id", "kind", "alias_number"),
        CheckConstraint("origin IN ('upload', 'step', 'planner', 'undo')", name="origin"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    session_id: Mapped[str] = mapped_column(ForeignKey("sessions.id", ondelete="CASCADE"))
    sha256: Mapped[str] = mapped_column(String(64), index=True)  # is the blob used by another session?
    kind: Mapped[str] = mapped_column(String(16))
    media_type: Mapped[str] = mapped_column(String(100))
    shape: Mapped[list[Any]] = mapped_column(default=list)
    size: Mapped[int | None] = mapped_column(BigInteger)
    alias: Mapped[str] = mapped_column(String(64))
    alias_number: Mapped[int] = mapped_column(Integer)
    origin: Mapped[str] = mapped_column(String(16), default="upload")
    label: Mapped[str | None] = mapped_column(String(500))
    step_id: Mapped[int | None] = mapped_column(ForeignKey("steps.id", ondelete="SET NULL"), index=True)
    turn_id: Mapped[int | None] = mapped_column(ForeignKey("turns.id", ondelete="SET NULL"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class StepOutputRow(Base):
    """What a step made: its output artifacts. Usually rows the step created, but an output byte-identical to content
    the session already holds keeps that row (one alias per content), and this link still makes it the step's."""

    __tablename__ = "step_outputs"
    __table_args__ = (Index(None, "artifact_id"),)

    step_id: Mapped[int] = mapped_column(ForeignKey("steps.id", ondelete="CASCADE"), primary_key=True)
    artifact_id: Mapped[int] = mapped_column(ForeignKey("artifacts.id", ondelete="CASCADE"), primary_key=True)


class ArtifactParentRow(Base):
    """Lineage: `child` was made from `parent` (the `position`-th input)."""

    __tablename__ = "artifact_parents"
    __table_args__ = (Index(None, "parent_id"),)

    child_id: Mapped[int] = mapped_column(ForeignKey("artifacts.id", ondelete="CASCADE"), primary_key=True)
    parent_id: Mapped[int] = mapped_column(ForeignKey("artifacts.id", ondelete="CASCADE"), primary_key=True)
    position: Mapped[int] = mapped_column(Integer, default=0)


class StepCacheRow(Base):
    """A step's outputs under its signature: the tool and contract version, the backend and its weights, the
    content of every input and the parameters (`workflows.signature`). Reused across runs and sessions."""

    __tablename__ = "step_cache"

    signature: Mapped[str] = mapped_column(String(64), primary_key=True)
    module: Mapped[str] = mapped_column(String(40))
    backend: Mapped[str] = mapped_column(String(100))
    output: Mapped[dict[str, Any]] = mapped_column()  # the tool's output JSON: refs and small values
    seconds: Mapped[float] = mapped_column(Float, default=0.0)  # what the step took when it ran
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class BatchRow(Base):
    """A workflow run over many inputs; its id is made from the workflow and the items, so running the same batch
    again finds it and does only the items not done."""

    __tablename__ = "batches"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(500), default="")
    workflow: Mapped[dict[str, Any]] = mapped_column()
    items: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class BatchItemRow(Base):
    """One item of a batch: its inputs as given, its status, its outputs by name or its error."""

    __tablename__ = "batch_items"
    __table_args__ = (
        CheckConstraint(f"status IN ({', '.join(repr(s) for s in BATCH_ITEM_STATUSES)})", name="status"),
    )

    batch_id: Mapped[str] = mapped_column(ForeignKey("batches.id", ondelete="CASCADE"), primary_key=True)
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    inputs: Mapped[dict[str, Any]] = mapped_column()
    status: Mapped[str] = mapped_column(String(16), default="pending")
    outputs: Mapped[dict[str, Any] | None] = mapped_column(Json)
    error: Mapped[dict[str, Any] | None] = mapped_column(Json)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    started_at: Mapped[datetime | None] = mapped_column()
    finished_at: Mapped[datetime | None] = mapped_column()


class ApiKeyRow(Base):
    """An API key of the HTTP server: only its SHA-256 is kept; `owner` is whose threads and artifacts it reaches."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    owner: Mapped[str] = mapped_column(String(200), index=True)
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    label: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column()


class RunRow(Base):
    """One run of a thread (a session's turn through the HTTP server): its status and what it was asked."""

    __tablename__ = "runs"
    __table_args__ = (
        CheckConstraint(f"status IN ({', '.join(repr(s) for s in RUN_STATUSES)})", name="status"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    session_id: Mapped[str] = mapped_column(ForeignKey("sessions.id", ondelete="CASCADE"), index=True)
    owner: Mapped[str | None] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16), default="pending")
    request: Mapped[dict[str, Any]] = mapped_column(default=dict)
    error: Mapped[dict[str, Any] | None] = mapped_column(Json)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class RunEventRow(Base):
    """A run's events in order; `seq` is the id a reconnecting client sends back (`Last-Event-ID`)."""

    __tablename__ = "run_events"

    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    event: Mapped[str] = mapped_column(String(32))
    data: Mapped[dict[str, Any]] = mapped_column()


class UploadRow(Base):
    """An artifact an owner uploaded through the server, before (or without) any thread using it."""

    __tablename__ = "uploads"

    owner: Mapped[str] = mapped_column(String(200), primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    media_type: Mapped[str] = mapped_column(String(100))
    shape: Mapped[list[Any]] = mapped_column(default=list)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
