"""PostgreSQL advisory locks, scoped to the schema the database lives in."""

from typing import Any

import sqlalchemy as sa


def advisory_lock(kind: int) -> sa.Select[Any]:
    """The transaction lock ``kind`` for this schema: sendstatus databases that live in
    different schemas of one server do not wait for each other."""
    return sa.select(
        sa.func.pg_advisory_xact_lock(kind, sa.func.hashtext(sa.func.current_schema()))
    )
