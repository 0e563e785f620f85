"""Turn leases: one turn at a time per session, across processes (a holder, renewed by heartbeats, with an expiry).

Revision ID: 0006
Revises: 0005
Create Date: 2027-02-10
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "turn_leases",
        sa.Column("session_id", sa.String(32), nullable=False),
        sa.Column("holder", sa.String(200), nullable=False),
        sa.Column("acquired_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["session_id"], ["sessions.id"], name="fk_turn_leases_session_id_sessions",
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("session_id", name="pk_turn_leases"),
    )


def downgrade() -> None:
    op.drop_table("turn_leases")
