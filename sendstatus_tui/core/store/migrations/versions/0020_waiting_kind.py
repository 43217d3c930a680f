"""what a mailing waits for is stored as a kind (relay down, window, domain limit) with the
time it began, instead of being told by its reason's text

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None

_KINDS = ("relay_down", "window", "domain_limit")
# the reason engines gave a mailing outside its window until now (core/model/window.py)
_OUTSIDE_WINDOW = "outside its sending window"


def upgrade() -> None:
    with op.batch_alter_table("mailing") as batch:
        batch.add_column(
            sa.Column(
                "waiting_kind",
                sa.Enum(*_KINDS, name="waitingkind", native_enum=False, length=16),
                nullable=True,
            )
        )
        batch.add_column(sa.Column("waiting_since", sa.DateTime(), nullable=True))
    # every other reason was a relay's trouble; when a wait began was not kept: the row's
    # last change is the nearest time known
    op.execute(
        sa.text(
            "UPDATE mailing SET waiting_since = updated_at, waiting_kind = CASE"
            " WHEN waiting_reason = :window THEN 'window' ELSE 'relay_down' END"
            " WHERE waiting_reason IS NOT NULL"
        ).bindparams(window=_OUTSIDE_WINDOW)
    )


def downgrade() -> None:
    with op.batch_alter_table("mailing") as batch:
        batch.drop_column("waiting_since")
        batch.drop_column("waiting_kind")
