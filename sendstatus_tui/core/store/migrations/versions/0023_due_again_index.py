"""an index of the deferred recipients by when they are due again

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

revision = "0023"
down_revision = "0022"
branch_labels = None
depends_on = None

_DEFERRED = sa.text("status = 'deferred'")


def upgrade() -> None:
    # claims found the due ones by reading every deferred recipient of the mailing
    op.create_index(
        "ix_recipient_due_again",
        "recipient",
        ["mailing_id", "next_attempt_at"],
        sqlite_where=_DEFERRED,
        postgresql_where=_DEFERRED,
    )


def downgrade() -> None:
    op.drop_index("ix_recipient_due_again", table_name="recipient")
