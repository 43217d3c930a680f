"""the guard: the order in which each recipient was last tried, per mailing, and where the
mailing's window of recent sends begins

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-11
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

_TRIED = sa.text("tried_seq IS NOT NULL")


def upgrade() -> None:
    with op.batch_alter_table("mailing") as batch:
        batch.add_column(sa.Column("tries", sa.BigInteger(), nullable=False, server_default="0"))
        batch.add_column(
            sa.Column("guard_from", sa.BigInteger(), nullable=False, server_default="0")
        )
    recipient_seq = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
    with op.batch_alter_table("recipient") as batch:
        batch.add_column(sa.Column("tried_seq", recipient_seq, nullable=True))
    # only recipients already tried: an import writes no entries into it
    op.create_index(
        "ix_recipient_tried",
        "recipient",
        ["mailing_id", "tried_seq", "status", "failure_class"],
        sqlite_where=_TRIED,
        postgresql_where=_TRIED,
    )


def downgrade() -> None:
    op.drop_index("ix_recipient_tried", table_name="recipient")
    with op.batch_alter_table("recipient") as batch:
        batch.drop_column("tried_seq")
    with op.batch_alter_table("mailing") as batch:
        batch.drop_column("guard_from")
        batch.drop_column("tries")
