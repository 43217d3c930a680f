"""Engines tell the database they are alive, and what they do (``sendstatus engines``).

An engine's row also carries its claimant: the name its recipient claims carry. Every
claim an engine makes checks, in its transaction, that its row still names that claimant
(``check_claimant``). When an engine's heartbeat expires (it was silent for longer than
the heartbeat's time to live), the leader clears the claimant and hands its claims back
(coordination/rescue.py); the engine, if it was only stalled, learns it at its next beat
and goes on under a new claimant, so nothing it still reports is counted. An engine silent
for LOST_AFTER, much longer, is shown as lost.
"""

import functools
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlmodel import Session, col, delete

from sendstatus_tui.core.model.models import EngineHeartbeat, utc_now
from sendstatus_tui.core.store.together import Reading, columns_of, read_one, rows_as
from sendstatus_tui.errors import SendStatusError

# an engine beats every lease renewal (a second); one silent for longer than this is
# shown as lost (it died, or cannot reach the database)
LOST_AFTER = timedelta(seconds=15)
# rows of engines lost this long ago are removed by the leader
FORGOTTEN_AFTER = timedelta(hours=1)


@dataclass(frozen=True)
class Beat:
    id: str
    host: str
    pid: int
    role: str
    started_at: datetime
    sending: tuple[int, ...]
    sent: int
    rate: float
    connections: int
    connections_reason: str
    claimant: str = ""  # none: an engine that claims nothing (yet)


class ClaimantLost(SendStatusError):
    """The leader handed this engine's claims back (its heartbeat expired): it must not
    claim under that claimant any more."""

    def __init__(self, claimant: str):
        super().__init__(
            f"the claims of {claimant} were handed back by the leader (this engine was silent"
            " too long)"
        )


def beat(session: Session, beat: Beat, *, fresh: bool) -> bool:
    """Writes the engine's row (created on its first beat). False, writing nothing, when
    the row no longer names the engine's claimant (the leader rescued its claims) unless
    the claimant is ``fresh`` (this engine's new one, which the beat registers). The row
    is locked ``FOR NO KEY UPDATE``: the engine's own claims under way do not hold its
    beat up (the lock order: core/store/locks.py)."""
    row = session.get(EngineHeartbeat, beat.id, with_for_update={"key_share": True})
    if not fresh and (row is None or row.claimant != beat.claimant):
        return False
    row = row or EngineHeartbeat(
        id=beat.id,
        host=beat.host,
        pid=beat.pid,
        role=beat.role,
        started_at=beat.started_at,
        heartbeat_at=utc_now(),
    )
    row.role, row.heartbeat_at, row.claimant = beat.role, utc_now(), beat.claimant
    row.sending = ",".join(map(str, beat.sending))
    row.sent, row.rate = beat.sent, round(beat.rate, 1)
    row.connections, row.connections_reason = beat.connections, beat.connections_reason
    session.add(row)
    return True


def check_claimant(session: Session, engine_id: str, claimant: str) -> None:
    """Raises ClaimantLost unless the engine's row still names ``claimant``. The row is
    locked ``FOR KEY SHARE`` on PostgreSQL, so that a rescue (``FOR UPDATE``) waits for
    the claim to commit (and then hands it back too), and the engine's beat does not."""
    row = session.get(EngineHeartbeat, engine_id, with_for_update={"read": True, "key_share": True})
    if row is None or row.claimant != claimant:
        raise ClaimantLost(claimant)


def forget(session: Session, engine_id: str) -> None:
    """An engine that stops cleanly takes its row away."""
    session.exec(delete(EngineHeartbeat).where(col(EngineHeartbeat.id) == engine_id))


def forget_lost(session: Session) -> int:
    """Removes the rows of engines silent for FORGOTTEN_AFTER; how many."""
    result = session.exec(
        delete(EngineHeartbeat).where(
            col(EngineHeartbeat.heartbeat_at) < utc_now() - FORGOTTEN_AFTER
        )
    )
    return result.rowcount or 0


def engines(session: Session) -> list[EngineHeartbeat]:
    """Every engine row, the leader first, then by start."""
    return read_one(session, engines_reading())


@functools.cache
def engines_reading() -> Reading[list[EngineHeartbeat]]:
    beats = rows_as(EngineHeartbeat)
    return Reading(
        sa.select(*columns_of(EngineHeartbeat)),
        lambda rows: sorted(beats(rows), key=lambda r: (r.role != "leader", r.started_at)),
    )


def is_lost(row: EngineHeartbeat, now: datetime | None = None) -> bool:
    return (now or utc_now()) - row.heartbeat_at > LOST_AFTER


def lost_ids(rows: list[EngineHeartbeat], now: datetime | None = None) -> set[str]:
    """The engines among ``rows`` that are lost: silent too long, or a leader whose lead
    another engine has taken since (one killed mid-send keeps its row, saying leader, until
    it is silent for LOST_AFTER; the lease moved on within seconds)."""
    now = now or utc_now()
    lost = {row.id for row in rows if is_lost(row, now)}
    leaders = [row for row in rows if row.role == "leader" and row.id not in lost]
    freshest = max(leaders, key=lambda row: row.heartbeat_at, default=None)
    return lost | {row.id for row in leaders if row is not freshest}


def sending_ids(row: EngineHeartbeat) -> list[int]:
    return [int(part) for part in row.sending.split(",") if part]
