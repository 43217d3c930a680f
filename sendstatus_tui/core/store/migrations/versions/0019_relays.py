"""relays as stored data: the relay table (the former `relay` setting becomes the relay
named default), the relays a mailing uses, and the relays each engine finds down

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "relay",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("weight", sa.Integer(), nullable=False),
        sa.Column("rate", sa.String(length=32), nullable=True),
        sa.Column("connections", sa.Integer(), nullable=True),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_relay")),
    )
    op.create_table(
        "relay_breaker",
        sa.Column("engine_id", sa.String(length=120), nullable=False),
        sa.Column("relay", sa.String(length=64), nullable=False),
        sa.Column("down_since", sa.DateTime(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("engine_id", "relay", name=op.f("pk_relay_breaker")),
    )
    op.add_column("mailing", sa.Column("relays", sa.Text(), nullable=True))
    # the single relay setting, checked when it was written, becomes the relay "default"
    op.execute(
        "INSERT INTO relay (name, url, weight, updated_at)"
        " SELECT 'default', value, 1, updated_at FROM setting WHERE key = 'relay'"
    )
    op.execute("DELETE FROM setting WHERE key = 'relay'")


def downgrade() -> None:
    op.execute(
        "INSERT INTO setting (key, value, updated_at)"
        " SELECT 'relay', url, updated_at FROM relay WHERE name = 'default'"
    )
    with op.batch_alter_table("mailing") as batch:
        batch.drop_column("relays")
    op.drop_table("relay_breaker")
    op.drop_table("relay")
