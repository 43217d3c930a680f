"""whether it lands: bounces and complaints per recipient, the mailing's counters of them,
and the key that signs each message's return path

Revision ID: 0012
Revises: 0010
Create Date: 2026-12-04
"""

import secrets
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

_COUNTERS = ("bounced", "blocked", "complained", "unsubscribed")


def upgrade() -> None:
    with op.batch_alter_table("mailing") as batch:
        for name in _COUNTERS:
            batch.add_column(sa.Column(name, sa.Integer(), nullable=False, server_default="0"))
    secret = op.create_table(
        "secret",
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_secret")),
    )
    # made here, so that every database has it from the command that created or migrated it
    now = datetime.now(UTC).replace(tzinfo=None)
    op.bulk_insert(
        secret, [{"name": "feedback", "value": secrets.token_hex(32), "created_at": now}]
    )
    recipient_id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
    op.create_table(
        "feedback",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("report_key", sa.String(length=64), nullable=False),
        sa.Column("mailing_id", sa.Integer(), nullable=False),
        sa.Column("recipient_id", recipient_id, nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("counted", sa.Boolean(), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=True),
        sa.Column("diagnostic", sa.Text(), nullable=True),
        sa.Column("reporting_mta", sa.Text(), nullable=True),
        sa.Column("feedback_type", sa.String(length=32), nullable=True),
        sa.Column("matched_by", sa.String(length=16), nullable=False),
        sa.Column("arrived_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["mailing_id"],
            ["mailing.id"],
            name=op.f("fk_feedback_mailing_id_mailing"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["recipient_id"],
            ["recipient.id"],
            name=op.f("fk_feedback_recipient_id_recipient"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_feedback")),
        sa.UniqueConstraint("report_key", name=op.f("uq_feedback_report_key")),
    )
    op.create_index(op.f("ix_feedback_mailing_id"), "feedback", ["mailing_id"])
    op.create_index(op.f("ix_feedback_recipient_id"), "feedback", ["recipient_id"])
    op.create_index(op.f("ix_feedback_arrived_at"), "feedback", ["arrived_at"])


def downgrade() -> None:
    op.drop_table("feedback")
    op.drop_table("secret")
    with op.batch_alter_table("mailing") as batch:
        for name in reversed(_COUNTERS):
            batch.drop_column(name)
