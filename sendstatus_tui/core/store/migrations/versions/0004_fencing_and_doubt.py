"""fencing (lease generation, claim owner), in-doubt tries, failure class, waiting reason

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("engine_lease") as batch:
        batch.add_column(sa.Column("generation", sa.Integer(), nullable=False, server_default="0"))
    with op.batch_alter_table("recipient") as batch:
        batch.add_column(sa.Column("claimed_by", sa.String(length=80), nullable=True))
        batch.add_column(sa.Column("doubts", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("failure_class", sa.String(length=8), nullable=True))
    with op.batch_alter_table("mailing") as batch:
        batch.add_column(sa.Column("waiting_reason", sa.Text(), nullable=True))
        batch.add_column(sa.Column("waiting_until", sa.DateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("mailing") as batch:
        batch.drop_column("waiting_until")
        batch.drop_column("waiting_reason")
    with op.batch_alter_table("recipient") as batch:
        batch.drop_column("failure_class")
        batch.drop_column("doubts")
        batch.drop_column("claimed_by")
    with op.batch_alter_table("engine_lease") as batch:
        batch.drop_column("generation")
