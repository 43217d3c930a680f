"""limits per recipient domain: a domain's send_pace row remembers a 4.7.x throttling

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None

COLUMNS = ("throttled_per_second", "throttled_at", "throttle_ceiling")


def upgrade() -> None:
    with op.batch_alter_table("send_pace") as batch:
        for name in COLUMNS:
            batch.add_column(sa.Column(name, sa.Float(), nullable=True))
        batch.add_column(sa.Column("throttle_status", sa.String(length=16), nullable=True))
        batch.add_column(sa.Column("throttled_domain", sa.String(length=255), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("send_pace") as batch:
        for name in (*COLUMNS, "throttle_status", "throttled_domain"):
            batch.drop_column(name)
