"""after the send: suppression list, suppressed counter, unsubscribe headers per mailing

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "suppression",
        sa.Column("mailbox", sa.String(length=320), primary_key=True),
        sa.Column("address", sa.String(length=320), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
    )
    with op.batch_alter_table("mailing") as batch:
        batch.add_column(sa.Column("suppressed", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("unsubscribe_url", sa.Text(), nullable=True))
        batch.add_column(sa.Column("unsubscribe_mailto", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("mailing") as batch:
        batch.drop_column("unsubscribe_mailto")
        batch.drop_column("unsubscribe_url")
        batch.drop_column("suppressed")
    op.drop_table("suppression")
