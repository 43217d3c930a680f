"""a scheduled mailing keeps the zone its time was typed in

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # mailings scheduled before it have none: they are shown in each reader's zone only
    with op.batch_alter_table("mailing") as batch:
        batch.add_column(sa.Column("scheduled_zone", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("mailing") as batch:
        batch.drop_column("scheduled_zone")
