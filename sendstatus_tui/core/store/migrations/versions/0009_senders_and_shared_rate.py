"""every engine sends: each engine's claimant, and the shared send pace

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("engine") as batch:
        batch.add_column(
            sa.Column("claimant", sa.String(length=140), nullable=False, server_default="")
        )
    # the leader finds every claim in flight (to rescue those of engines gone silent) by this
    # index, whatever the size of the lists: only claimed recipients are in it
    op.create_index(
        "ix_recipient_claimed_by",
        "recipient",
        ["claimed_by"],
        sqlite_where=sa.text("claimed_by IS NOT NULL"),
        postgresql_where=sa.text("claimed_by IS NOT NULL"),
    )
    op.create_table(
        "send_pace",
        sa.Column("name", sa.String(length=32), primary_key=True),
        sa.Column("next_slot_at", sa.Float(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("send_pace")
    op.drop_index("ix_recipient_claimed_by", table_name="recipient")
    with op.batch_alter_table("engine") as batch:
        batch.drop_column("claimant")
