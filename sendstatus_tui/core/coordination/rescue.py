"""The leader hands back the claims of engines whose heartbeat expired, so that nobody is
skipped.

An engine whose heartbeat expired (silent for longer than the heartbeat's time to live)
has died, or stalled past it: its claimant is cleared (it can claim nothing more, and
learns at its next beat that it must take a new one), and every recipient still in flight
under a claimant that no engine row names goes back to pending, in doubt
(``deliveries.hand_back_claims``). The whole claim counts as in doubt, handed to the relay
or not: engines write nothing per message before sending, which keeps a claim one write;
the cost is that up to a claim's worth of recipients is counted in ``resent_in_doubt``
when an engine dies, of which only those that reached the relay can be duplicates.
"""

from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Session, col, select

from sendstatus_tui.core.coordination import deliveries
from sendstatus_tui.core.model.models import EngineHeartbeat, Recipient


def rescue(session: Session, expired_before: datetime, keep: str) -> dict[int, int]:
    """Clears the claimant of every engine whose last beat is older than ``expired_before``
    (never ``keep``'s: the leader's own), and hands back the claims of every claimant no
    engine row names. Returns {mailing id: recipients handed back}."""
    silent = (
        col(EngineHeartbeat.claimant) != "",
        col(EngineHeartbeat.heartbeat_at) < expired_before,
        col(EngineHeartbeat.id) != keep,
    )
    # FOR UPDATE, in id order: a claim under way (FOR KEY SHARE) commits first, and is
    # then handed back too (the lock order: core/store/locks.py)
    ids = session.exec(
        select(col(EngineHeartbeat.id))
        .where(*silent)
        .order_by(col(EngineHeartbeat.id))
        .with_for_update()
    ).all()
    if ids:
        session.execute(
            sa.update(EngineHeartbeat)
            .where(col(EngineHeartbeat.id).in_(ids), *silent)
            .values(claimant="")
            .execution_options(synchronize_session=False)
        )
    # the claims are read before the live claimants: an engine registers its claimant
    # before it claims, so a claim read here has its claimant among those read next
    claiming = set(
        session.exec(
            select(col(Recipient.claimed_by))
            .where(col(Recipient.claimed_by).is_not(None))
            .distinct()
        ).all()
    )
    if not claiming:
        return {}
    live = set(
        session.exec(
            select(col(EngineHeartbeat.claimant)).where(col(EngineHeartbeat.claimant) != "")
        ).all()
    )
    orphans = sorted(c for c in claiming - live if c is not None)
    if not orphans:
        return {}
    # in one hand-back: every recipient first, then their mailings (the lock order)
    return deliveries.hand_back_claims(session, orphans)
