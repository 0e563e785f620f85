"""Session memory: sessions, turns, steps with their jobs, artifacts and their lineage.

Revision ID: 0001
Revises:
Create Date: 2025-11-23
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Spelled out here rather than imported from memory.models: a migration must keep meaning what it
# meant when it was written, whatever the models become.
ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSON = sa.JSON()  # PostgreSQL json, not jsonb: it keeps key order (a step's inputs are ordered)
TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "sessions",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("owner", sa.String(200), nullable=True),
        sa.Column("title", sa.String(500), nullable=False),
        sa.Column("settings", JSON, nullable=False),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("updated_at", TIME, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_sessions"),
    )
    op.create_index("ix_sessions_owner", "sessions", ["owner"])
    op.create_index("ix_sessions_updated_at", "sessions", ["updated_at"])

    op.create_table(
        "turns",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("session_id", sa.String(32), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("invocations", JSON, nullable=False),
        sa.Column("reply", sa.Text(), nullable=True),
        sa.Column("tokens", sa.Integer(), nullable=False),
        sa.Column("created_at", TIME, nullable=False),
        sa.CheckConstraint("role IN ('user', 'assistant', 'system', 'tool')", name="ck_turns_role"),
        sa.ForeignKeyConstraint(["session_id"], ["sessions.id"], name="fk_turns_session_id_sessions",
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name="pk_turns"),
        sa.UniqueConstraint("session_id", "seq", name="uq_turns_session_id_seq"),
    )

    op.create_table(
        "steps",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("session_id", sa.String(32), nullable=False),
        sa.Column("turn_id", ID, nullable=True),
        sa.Column("position", sa.Integer(), nullable=True),
        sa.Column("module", sa.String(40), nullable=False),
        sa.Column("command", sa.Text(), nullable=False),
        sa.Column("invocation", JSON, nullable=False),
        sa.Column("backend", sa.String(100), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("progress", sa.Float(), nullable=False),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("job_id", sa.String(200), nullable=True),
        sa.Column("error", JSON, nullable=True),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("started_at", TIME, nullable=True),
        sa.Column("finished_at", TIME, nullable=True),
        sa.CheckConstraint("status IN ('pending', 'queued', 'running', 'succeeded', 'failed', 'cancelled')",
                           name="ck_steps_status"),
        sa.CheckConstraint("progress >= 0 AND progress <= 1", name="ck_steps_progress"),
        sa.ForeignKeyConstraint(["session_id"], ["sessions.id"], name="fk_steps_session_id_sessions",
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["turn_id"], ["turns.id"], name="fk_steps_turn_id_turns", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name="pk_steps"),
    )
    op.create_index("ix_steps_session_id", "steps", ["session_id"])
    op.create_index("ix_steps_turn_id", "steps", ["turn_id"])
    op.create_index("ix_steps_job_id", "steps", ["job_id"])

    op.create_table(
        "artifacts",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("session_id", sa.String(32), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("media_type", sa.String(100), nullable=False),
        sa.Column("shape", JSON, nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=True),
        sa.Column("alias", sa.String(64), nullable=False),
        sa.Column("alias_number", sa.Integer(), nullable=False),
        sa.Column("origin", sa.String(16), nullable=False),
        sa.Column("label", sa.String(500), nullable=True),
        sa.Column("step_id", ID, nullable=True),
        sa.Column("turn_id", ID, nullable=True),
        sa.Column("created_at", TIME, nullable=False),
        sa.CheckConstraint("origin IN ('upload', 'step', 'planner')", name="ck_artifacts_origin"),
        sa.ForeignKeyConstraint(["session_id"], ["sessions.id"], name="fk_artifacts_session_id_sessions",
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["step_id"], ["steps.id"], name="fk_artifacts_step_id_steps", ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["turn_id"], ["turns.id"], name="fk_artifacts_turn_id_turns", ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id", name="pk_artifacts"),
        sa.UniqueConstraint("session_id", "alias", name="uq_artifacts_session_id_alias"),
        sa.UniqueConstraint("session_id", "sha256", name="uq_artifacts_session_id_sha256"),
        sa.UniqueConstraint("session_id", "kind", "alias_number", name="uq_artifacts_session_id_kind_alias_number"),
    )
    op.create_index("ix_artifacts_sha256", "artifacts", ["sha256"])
    op.create_index("ix_artifacts_step_id", "artifacts", ["step_id"])
    op.create_index("ix_artifacts_turn_id", "artifacts", ["turn_id"])

    op.create_table(
        "artifact_parents",
        sa.Column("child_id", ID, nullable=False),
        sa.Column("parent_id", ID, nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["child_id"], ["artifacts.id"], name="fk_artifact_parents_child_id_artifacts",
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["parent_id"], ["artifacts.id"], name="fk_artifact_parents_parent_id_artifacts",
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("child_id", "parent_id", name="pk_artifact_parents"),
    )
    op.create_index("ix_artifact_parents_parent_id", "artifact_parents", ["parent_id"])


def downgrade() -> None:
    op.drop_table("artifact_parents")
    op.drop_table("artifacts")
    op.drop_table("steps")
    op.drop_table("turns")
    op.drop_table("sessions")
