"""the audit trail records the session of each change: two dashboards of one user differ

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-14
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # entries written before it have none: they are nobody's session, so everyone's news
    with op.batch_alter_table("audit_entry") as batch:
        batch.add_column(sa.Column("session", sa.String(length=32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("audit_entry") as batch:
        batch.drop_column("session")
