"""A step's outputs as links: an output byte-identical to content the session already holds keeps that artifact row,
and is still the step's output (a later step of the turn reads it as `@N`).

Revision ID: 0005
Revises: 0004
Create Date: 2027-02-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "step_outputs",
        sa.Column("step_id", ID, nullable=False),
        sa.Column("artifact_id", ID, nullable=False),
        sa.ForeignKeyConstraint(["step_id"], ["steps.id"], name="fk_step_outputs_step_id_steps", ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["artifact_id"], ["artifacts.id"], name="fk_step_outputs_artifact_id_artifacts",
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("step_id", "artifact_id", name="pk_step_outputs"),
    )
    op.create_index("ix_step_outputs_artifact_id", "step_outputs", ["artifact_id"])
    op.execute("INSERT INTO step_outputs (step_id, artifact_id) SELECT step_id, id FROM artifacts "
               "WHERE step_id IS NOT NULL")


def downgrade() -> None:
    op.drop_index("ix_step_outputs_artifact_id", "step_outputs")
    op.drop_table("step_outputs")
