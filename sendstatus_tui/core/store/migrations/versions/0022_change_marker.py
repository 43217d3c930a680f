"""a change marker: one row whose counter every change an engine follows bumps

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None


def upgrade() -> None:
    marker = op.create_table(
        "change_marker",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("counter", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.bulk_insert(marker, [{"id": 1, "counter": 0}])


def downgrade() -> None:
    op.drop_table("change_marker")
