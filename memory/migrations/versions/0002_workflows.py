"""Workflows: the step signature cache, batches and their items; steps may be `skipped`.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON()
TIME = sa.DateTime(timezone=True)
OLD_STATUSES = "status IN ('pending', 'queued', 'running', 'succeeded', 'failed', 'cancelled')"
NEW_STATUSES = "status IN ('pending', 'queued', 'running', 'succeeded', 'failed', 'cancelled', 'skipped')"


def upgrade() -> None:
    # SQLite cannot alter a CHECK constraint in place: batch mode copies the table.
    with op.batch_alter_table("steps", recreate="auto") as batch:
        batch.drop_constraint("ck_steps_status", type_="check")
        batch.create_check_constraint("ck_steps_status", NEW_STATUSES)

    op.create_table(
        "step_cache",
        sa.Column("signature", sa.String(64), nullable=False),
        sa.Column("module", sa.String(40), nullable=False),
        sa.Column("backend", sa.String(100), nullable=False),
        sa.Column("output", JSON, nullable=False),
        sa.Column("seconds", sa.Float(), nullable=False),
        sa.Column("created_at", TIME, nullable=False),
        sa.PrimaryKeyConstraint("signature", name="pk_step_cache"),
    )
    op.create_table(
        "batches",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(500), nullable=False),
        sa.Column("workflow", JSON, nullable=False),
        sa.Column("items", sa.Integer(), nullable=False),
        sa.Column("created_at", TIME, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_batches"),
    )
    op.create_table(
        "batch_items",
        sa.Column("batch_id", sa.String(64), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("inputs", JSON, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("outputs", JSON, nullable=True),
        sa.Column("error", JSON, nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("started_at", TIME, nullable=True),
        sa.Column("finished_at", TIME, nullable=True),
        sa.CheckConstraint("status IN ('pending', 'succeeded', 'failed')", name="ck_batch_items_status"),
        sa.ForeignKeyConstraint(["batch_id"], ["batches.id"], name="fk_batch_items_batch_id_batches",
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("batch_id", "position", name="pk_batch_items"),
    )


def downgrade() -> None:
    op.drop_table("batch_items")
    op.drop_table("batches")
    op.drop_table("step_cache")
    op.execute("UPDATE steps SET status = 'cancelled' WHERE status = 'skipped'")
    with op.batch_alter_table("steps", recreate="auto") as batch:
        batch.drop_constraint("ck_steps_status", type_="check")
        batch.create_check_constraint("ck_steps_status", OLD_STATUSES)
