"""Undo: an artifact row may bring an earlier content back (origin `undo`), so a content is unique within a session
only among the other rows.

Revision ID: 0004
Revises: 0003
Create Date: 2027-01-12
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_ORIGINS = "origin IN ('upload', 'step', 'planner')"
NEW_ORIGINS = "origin IN ('upload', 'step', 'planner', 'undo')"
NOT_UNDO = sa.text("origin != 'undo'")
UNIQUE_CONTENT = "uq_artifacts_session_id_sha256"


def upgrade() -> None:
    with _lineage_kept(), op.batch_alter_table("artifacts", recreate="auto") as batch:
        batch.drop_constraint(UNIQUE_CONTENT, type_="unique")
        batch.drop_constraint("ck_artifacts_origin", type_="check")
        batch.create_check_constraint("ck_artifacts_origin", NEW_ORIGINS)
    op.create_index(UNIQUE_CONTENT, "artifacts", ["session_id", "sha256"], unique=True, sqlite_where=NOT_UNDO,
                    postgresql_where=NOT_UNDO)


def downgrade() -> None:
    op.execute("DELETE FROM artifacts WHERE origin = 'undo'")  # the old schema has no place for them
    op.drop_index(UNIQUE_CONTENT, "artifacts")
    with _lineage_kept(), op.batch_alter_table("artifacts", recreate="auto") as batch:
        batch.drop_constraint("ck_artifacts_origin", type_="check")
        batch.create_check_constraint("ck_artifacts_origin", OLD_ORIGINS)
        batch.create_unique_constraint(UNIQUE_CONTENT, ["session_id", "sha256"])


@contextmanager
def _lineage_kept() -> Iterator[None]:
    """SQLite changes a constraint by copying the table, and dropping the old copy runs its foreign keys' ON DELETE
    CASCADE (the migration's transaction keeps them on): the lineage rows are put back afterwards."""
    bind = op.get_bind()
    rows = [dict(r._mapping) for r in bind.execute(sa.text("SELECT * FROM artifact_parents"))] \
        if bind.dialect.name == "sqlite" else []
    yield
    if rows:
        bind.execute(sa.text("DELETE FROM artifact_parents"))
        bind.execute(sa.text("INSERT INTO artifact_parents (child_id, parent_id, position) "
                             "VALUES (:child_id, :parent_id, :position)"), rows)
