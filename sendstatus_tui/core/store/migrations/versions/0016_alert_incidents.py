"""alerts: the incidents the leading engine tells (alert_command, alert_webhook)

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "alert_incident",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("open_key", sa.String(length=160), nullable=True, unique=True),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("mailing_id", sa.Integer(), nullable=True),
        sa.Column("mailing_name", sa.Text(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("since", sa.DateTime(), nullable=False),
        sa.Column("due_at", sa.DateTime(), nullable=False),
        sa.Column("ended_at", sa.DateTime(), nullable=True),
        sa.Column("told_open", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("told_end", sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    op.create_index("ix_alert_incident_due_at", "alert_incident", ["due_at"])


def downgrade() -> None:
    op.drop_index("ix_alert_incident_due_at", "alert_incident")
    op.drop_table("alert_incident")
