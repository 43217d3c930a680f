"""send slots follow a rate change: the rate the last slots were reserved at (and for which
mailing, so that mailings take turns), and the one
NextSlot row created here, once, instead of by the first claims of engines racing for it;
a stored rate of zero, which meant unlimited before zero was refused, is removed (unset is
unlimited now)

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-04
"""

import re

import sqlalchemy as sa
from alembic import op

# a rate of zero as the older check stored it: a number equal to 0, with or without a unit
_ZERO = re.compile(r"\s*[-+]?(0+(\.0*)?|\.0+)(e[-+]?\d+)?\s*(/\s*[a-z]*\s*)?", re.IGNORECASE)

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("send_pace", sa.Column("per_second", sa.Float(), nullable=True))
    op.add_column("send_pace", sa.Column("mailing_id", sa.Integer(), nullable=True))
    op.execute(
        "INSERT INTO send_pace (name, next_slot_at)"
        " SELECT 'rate', 0 WHERE NOT EXISTS (SELECT 1 FROM send_pace WHERE name = 'rate')"
    )
    connection = op.get_bind()
    stored = connection.execute(sa.text("SELECT value FROM setting WHERE key = 'rate'")).scalar()
    if stored is not None and _ZERO.fullmatch(stored):
        connection.execute(sa.text("DELETE FROM setting WHERE key = 'rate'"))


def downgrade() -> None:
    with op.batch_alter_table("send_pace") as batch:
        batch.drop_column("mailing_id")
        batch.drop_column("per_second")
