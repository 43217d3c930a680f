"""recipient claim index in id order

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # with id in the index, PostgreSQL claims a batch without scanning what was sent
    op.create_index("ix_recipient_claim", "recipient", ["mailing_id", "status", "id"])
    op.drop_index("ix_recipient_mailing_status", table_name="recipient")


def downgrade() -> None:
    op.create_index("ix_recipient_mailing_status", "recipient", ["mailing_id", "status"])
    op.drop_index("ix_recipient_claim", table_name="recipient")
