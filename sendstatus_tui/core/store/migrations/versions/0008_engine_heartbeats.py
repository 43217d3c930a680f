"""engine heartbeats (sendstatus engines)

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "engine",
        sa.Column("id", sa.String(length=120), primary_key=True),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(), nullable=False),
        sa.Column("sending", sa.String(length=1000), nullable=False),
        sa.Column("sent", sa.Integer(), nullable=False),
        sa.Column("rate", sa.Float(), nullable=False),
        sa.Column("connections", sa.Integer(), nullable=False),
        sa.Column("connections_reason", sa.Text(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("engine")
