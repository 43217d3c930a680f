"""A claim that holds back, in its own transaction, the recipients whose domain's turn is
not soon (``hold`` says until when; engine/domain_pace.py decides): they are put back
deferred until then, never marked in flight, and the next recipients due are taken in their
place. What the claim commits in flight is a full batch of messages that go now and never
more: a crash leaves at most ``limit`` in doubt, none of those held back.

Candidates are those ``deliveries.claim`` would take (the pending in id order and the
deferred due again soonest, merged in id order; on PostgreSQL the rows other engines hold
are skipped, and those read are locked), READ_AHEAD per recipient wanted, in at most ROUNDS
reads. A candidate read but not needed is left as it was. Each read costs statements, not
rows, hence reading ahead: a claim is one read when a sixth of a list is held back.
"""

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

from sqlmodel import Session

from sendstatus_tui.core.coordination import deliveries
from sendstatus_tui.core.coordination.deliveries import (
    DEFERRED,
    HELD,
    IN_FLIGHT,
    PENDING,
    SUPPRESSED,
    Claimed,
    Outcome,
)
from sendstatus_tui.core.model.models import Mailing, utc_now
from sendstatus_tui.core.store.driver import driver_cursor

READ_AHEAD = 1.5  # candidates read per recipient wanted: room for those held back
ROUNDS = 3  # reads at most (more when many are held back or suppressed)

# when a recipient is held back for its domain's turn (None: it goes now)
Hold = Callable[[Claimed], datetime | None]


@dataclass(frozen=True)
class Sendable:
    going: list[Claimed]  # in flight under the claim
    held: list[Outcome]  # HELD, put back deferred until their retry_at


class _Candidate(NamedTuple):
    id: int
    email: str
    field_values: str | None
    attempts: int
    doubts: int
    deferred: bool  # deferred before, due again; else pending


def claim(
    session: Session,
    mailing_id: int,
    limit: int,
    hold: Hold,
    *,
    claimant: str,
    now: datetime | None = None,
) -> Sendable:
    """Up to ``limit`` recipients due for sending that go now, in flight under
    ``claimant``'s claim; those ``hold`` holds back are deferred until their time, and
    those on the suppression list since the import marked suppressed."""
    now = now or utc_now()
    going: list[Claimed] = []
    held: list[Outcome] = []
    read: list[_Candidate] = []
    blocked: set[int] = set()
    for _ in range(ROUNDS):
        wanted = math.ceil((limit - len(going)) * READ_AHEAD)
        after = read[-1].id if read else 0
        candidates = _candidates(session, mailing_id, wanted, now, after)
        read += candidates
        blocked |= deliveries.suppressed_ids(session, candidates)
        kept_before, held_before = len(going), len(held)
        for candidate in candidates:
            if len(going) == limit:
                break
            if candidate.id in blocked:
                continue
            recipient = Claimed(*candidate[:5])
            back = hold(recipient)
            if back is None:
                going.append(recipient)
            else:
                held.append(Outcome(recipient, HELD, retry_at=back))
        if len(going) == limit or len(candidates) < wanted:
            break  # full, or nothing more is due
        if len(going) == kept_before and len(held) > held_before:
            break  # its domain holds back all: reading more would hold back more
    _write(session, mailing_id, going, held, blocked, read, claimant)
    return Sendable(going, held)


def _candidates(
    session: Session, mailing_id: int, limit: int, now: datetime, after: int
) -> list[_Candidate]:
    """The first ``limit`` recipients due for sending with ids above ``after``."""
    to_driver = deliveries.datetime_to_driver(session)
    cursor, mark = driver_cursor(session)
    try:
        if session.get_bind().dialect.name == "postgresql":
            cursor.execute(
                _CANDIDATES_POSTGRESQL,
                {"mailing": mailing_id, "limit": limit, "now": to_driver(now), "after": after},
            )
            return [_Candidate(*row) for row in cursor.fetchall()]
        # two queries, not one with OR, as a claim's: the pending in id order, the deferred
        # due again soonest first
        columns = "id, email, field_values, attempts, doubts"
        cursor.execute(
            f"SELECT {columns}, 0 FROM recipient WHERE mailing_id = {mark}"
            f" AND status = '{PENDING}' AND id > {mark} ORDER BY id LIMIT {mark}",
            (mailing_id, after, limit),
        )
        pending = cursor.fetchall()
        cursor.execute(
            f"SELECT {columns}, 1 FROM recipient WHERE mailing_id = {mark}"
            f" AND status = '{DEFERRED}' AND next_attempt_at <= {mark} AND id > {mark}"
            f" ORDER BY next_attempt_at LIMIT {mark}",
            (mailing_id, to_driver(now), after, limit),
        )
        due_again = cursor.fetchall()
    finally:
        cursor.close()
    rows = sorted([*pending, *due_again], key=lambda row: row[0])[:limit]
    return [_Candidate(row[0], row[1], row[2], row[3], row[4], bool(row[5])) for row in rows]


# as deliveries._CLAIM_POSTGRESQL (the pending status matched as a range: see there),
# reading and locking instead of claiming, from an id on
_CANDIDATES_POSTGRESQL = f"""
WITH pending AS (
    SELECT id FROM recipient
    WHERE mailing_id = %(mailing)s AND status BETWEEN '{PENDING}' AND '{PENDING}'
        AND id > %(after)s
    ORDER BY status, id LIMIT %(limit)s FOR UPDATE SKIP LOCKED
), retries AS (
    SELECT id FROM recipient
    WHERE mailing_id = %(mailing)s AND status = '{DEFERRED}' AND next_attempt_at <= %(now)s
        AND id > %(after)s
    ORDER BY next_attempt_at LIMIT %(limit)s FOR UPDATE SKIP LOCKED
)
SELECT id, email, field_values, attempts, doubts, status = '{DEFERRED}' FROM recipient
WHERE id IN (SELECT id FROM pending UNION ALL SELECT id FROM retries)
ORDER BY id LIMIT %(limit)s
"""


def _write(
    session: Session,
    mailing_id: int,
    going: list[Claimed],
    held: list[Outcome],
    blocked: set[int],
    read: list[_Candidate],
    claimant: str,
) -> None:
    """The recipients going in flight, those held back deferred, the suppressed ones, and
    the mailing's counters (after its recipients: core/store/locks.py)."""
    connection = session.connection()
    cursor, mark = driver_cursor(session)
    to_driver = deliveries.datetime_to_driver(session)
    try:
        # ids come from the database as integers: written into the statement
        if going:
            ids = ", ".join(str(int(r.id)) for r in going)
            connection.exec_driver_sql(
                f"UPDATE recipient SET status = '{IN_FLIGHT}', claimed_by = {mark}"
                f" WHERE id IN ({ids})",
                (claimant,),
            )
        if held:
            cursor.executemany(
                f"UPDATE recipient SET status = '{DEFERRED}', next_attempt_at = {mark}"
                f" WHERE id = {mark}",
                [(to_driver(o.retry_at or utc_now()), o.recipient.id) for o in held],
            )
        if blocked:
            connection.exec_driver_sql(
                f"UPDATE recipient SET status = '{SUPPRESSED}', claimed_by = NULL"
                f" WHERE id IN ({', '.join(str(int(i)) for i in blocked)})"
            )
    finally:
        cursor.close()
    was_deferred = {c.id for c in read if c.deferred}
    # deferred: those held back that were pending, less those due again that go or are
    # suppressed (one held back again stays deferred)
    deferred = sum(o.recipient.id not in was_deferred for o in held)
    deferred -= sum(r.id in was_deferred for r in going) + len(blocked & was_deferred)
    if deferred or blocked:
        mailing = session.get_one(Mailing, mailing_id, with_for_update=True)
        mailing.deferred += deferred
        mailing.suppressed += len(blocked)
        session.flush()
