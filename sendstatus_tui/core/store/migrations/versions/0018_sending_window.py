"""a mailing keeps its sending window: the days and hours it may send in, with their zone

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-16
"""

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # mailings from before it have none: they send at any hour, as they did
    with op.batch_alter_table("mailing") as batch:
        batch.add_column(sa.Column("window", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("mailing") as batch:
        batch.drop_column("window")
