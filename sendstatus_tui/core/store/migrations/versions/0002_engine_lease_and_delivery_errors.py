"""engine lease, delivery errors, in-doubt counter

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("mailing") as batch:
        batch.add_column(
            sa.Column("resent_in_doubt", sa.Integer(), nullable=False, server_default="0")
        )
    op.create_table(
        "delivery_error",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("mailing_id", sa.Integer(), nullable=False),
        sa.Column("email", sa.String(), nullable=False),
        sa.Column("reply", sa.Text(), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["mailing_id"],
            ["mailing.id"],
            name="fk_delivery_error_mailing_id_mailing",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_delivery_error"),
    )
    op.create_index("ix_delivery_error_mailing_id", "delivery_error", ["mailing_id"])
    op.create_table(
        "engine_lease",
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("holder", sa.String(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_engine_lease"),
    )


def downgrade() -> None:
    op.drop_table("engine_lease")
    op.drop_index("ix_delivery_error_mailing_id", table_name="delivery_error")
    op.drop_table("delivery_error")
    with op.batch_alter_table("mailing") as batch:
        batch.drop_column("resent_in_doubt")
