"""mailings and recipients

Revision ID: 0001
Revises:
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_STATES = ("standby", "scheduled", "queued", "starting", "sending", "completed")
_MODES = ("immediate", "at", "sequential")


def upgrade() -> None:
    op.create_table(
        "mailing",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("subject", sa.String(), nullable=False),
        sa.Column("sender", sa.String(), nullable=False),
        sa.Column("text_body", sa.Text(), nullable=True),
        sa.Column("html_body", sa.Text(), nullable=True),
        sa.Column("field_names", sa.Text(), nullable=False),
        sa.Column(
            "state", sa.Enum(*_STATES, name="state", native_enum=False, length=16), nullable=False
        ),
        sa.Column(
            "mode", sa.Enum(*_MODES, name="mode", native_enum=False, length=16), nullable=True
        ),
        sa.Column("state_reason", sa.String(), nullable=True),
        sa.Column("position", sa.Integer(), nullable=True),
        # times are naive UTC (see models.UTCDateTime)
        sa.Column("scheduled_at", sa.DateTime(), nullable=True),
        sa.Column("started_at", sa.DateTime(), nullable=True),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("sent", sa.Integer(), nullable=False),
        sa.Column("failed", sa.Integer(), nullable=False),
        sa.Column("deferred", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_mailing"),
        sa.UniqueConstraint("position", name="uq_mailing_position"),
    )
    op.create_index("ix_mailing_state", "mailing", ["state"])
    op.create_table(
        "recipient",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("mailing_id", sa.Integer(), nullable=False),
        sa.Column("email", sa.String(), nullable=False),
        sa.Column("field_values", sa.Text(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(), nullable=True),
        sa.Column("last_reply", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["mailing_id"],
            ["mailing.id"],
            name="fk_recipient_mailing_id_mailing",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_recipient"),
    )
    op.create_index("ix_recipient_mailing_status", "recipient", ["mailing_id", "status"])


def downgrade() -> None:
    op.drop_index("ix_recipient_mailing_status", table_name="recipient")
    op.drop_table("recipient")
    op.drop_index("ix_mailing_state", table_name="mailing")
    op.drop_table("mailing")
