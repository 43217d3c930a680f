"""what became of each mailing's messages, minute by minute, shared by every engine: the
figures behind speeds, ETAs and charts

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-15
"""

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "send_minute",
        sa.Column("mailing_id", sa.Integer(), nullable=False),
        sa.Column("minute", sa.DateTime(), nullable=False),
        sa.Column("sent", sa.Integer(), nullable=False),
        sa.Column("failed", sa.Integer(), nullable=False),
        sa.Column("bounced", sa.Integer(), nullable=False),
        sa.Column("complained", sa.Integer(), nullable=False),
        sa.Column("first_at", sa.DateTime(), nullable=True),
        sa.Column("last_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["mailing_id"],
            ["mailing.id"],
            name=op.f("fk_send_minute_mailing_id_mailing"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("mailing_id", "minute", name=op.f("pk_send_minute")),
    )
    # the daily pruning finds the old minutes of every mailing by it
    op.create_index(op.f("ix_send_minute_minute"), "send_minute", ["minute"])


def downgrade() -> None:
    op.drop_table("send_minute")
