"""Which engines find which relay down, and since when: each engine keeps its own circuit
breaker per relay (engine/breaker.py) and publishes the relays it finds down here with its
heartbeat, so that ``relay ls`` and ``engines`` can say so."""

import functools
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Session, col, delete, select

from sendstatus_tui.core.model.models import EngineHeartbeat, RelayBreaker
from sendstatus_tui.core.store.together import Reading, columns_of, read_one, rows_as


@dataclass(frozen=True)
class Down:
    since: datetime
    reason: str


def publish(session: Session, engine_id: str, downs: dict[str, Down]) -> None:
    """The engine's rows become ``downs`` (relay name -> since when, why)."""
    rows = {
        row.relay: row
        for row in session.exec(select(RelayBreaker).where(RelayBreaker.engine_id == engine_id))
    }
    for relay, row in rows.items():
        if relay not in downs:
            session.delete(row)
    for relay, down in downs.items():
        row = rows.get(relay) or RelayBreaker(
            engine_id=engine_id, relay=relay, down_since=down.since, reason=down.reason
        )
        row.down_since, row.reason = down.since, down.reason
        session.add(row)


def forget(session: Session, engine_id: str) -> None:
    session.exec(delete(RelayBreaker).where(col(RelayBreaker.engine_id) == engine_id))


def forget_orphans(session: Session) -> None:
    """Rows of engines whose own row is gone (removed as lost by the leader)."""
    engines = select(EngineHeartbeat.id)
    session.exec(delete(RelayBreaker).where(col(RelayBreaker.engine_id).not_in(engines)))


def breakers(session: Session) -> list[RelayBreaker]:
    """Every relay found down by a live engine row, the oldest first."""
    return read_one(session, breakers_reading())


@functools.cache
def breakers_reading() -> Reading[list[RelayBreaker]]:
    statement = sa.select(*columns_of(RelayBreaker)).where(
        col(RelayBreaker.engine_id).in_(select(EngineHeartbeat.id))
    )
    found = rows_as(RelayBreaker)
    return Reading(statement, lambda rows: sorted(found(rows), key=lambda b: b.down_since))
