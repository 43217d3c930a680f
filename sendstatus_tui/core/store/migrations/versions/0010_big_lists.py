"""big lists: mailings hidden while imported, each recipient's mailbox key (duplicates are
found by the database), 64-bit recipient ids on PostgreSQL

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("mailing") as batch:
        batch.add_column(
            sa.Column("importing", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    # existing recipients keep no key: only an import in progress needs them
    with op.batch_alter_table("recipient") as batch:
        batch.add_column(sa.Column("mailbox", sa.Text(), nullable=True))
    if op.get_bind().dialect.name == "postgresql":
        # rewrites the table: on a large database this migration takes a while
        op.alter_column("recipient", "id", type_=sa.BigInteger(), existing_nullable=False)
        op.execute("ALTER SEQUENCE IF EXISTS recipient_id_seq AS bigint")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER SEQUENCE IF EXISTS recipient_id_seq AS integer")
        op.alter_column("recipient", "id", type_=sa.Integer(), existing_nullable=False)
    with op.batch_alter_table("recipient") as batch:
        batch.drop_column("mailbox")
    with op.batch_alter_table("mailing") as batch:
        batch.drop_column("importing")
