"""Recipient bookkeeping for the engine: claim a batch, record what the relay said.

A recipient goes pending -> in_flight (claimed by one engine) -> sent | failed | deferred
(-> pending again when its retry time comes, by being claimable). Counters on the mailing
change in the same transaction as the recipients they count, from the rows actually
changed, so they always equal the counts by status.

Records are fenced: an outcome is written only while the recipient is still in flight under
the claim of the engine that reports it. An engine that stalled while another took over
(and handed its claims back) reports into the void instead of counting twice.

A send whose DATA went out without a reply, or that was in flight when its engine died, is
in doubt: it goes back to pending, counted in ``resent_in_doubt``, and after 3 such tries it
fails with class ``doubt`` instead of being sent again.

On PostgreSQL the same books are kept in fewer round trips (issue 22): a claim is one
``UPDATE ... FROM (... FOR UPDATE SKIP LOCKED) RETURNING``, and a record two pipelines of
psycopg's (the claims still held and the mailing locked; then the outcomes through
``unnest``, the counters, the minute and the errors). SQLite, in process, keeps its plain
statements (``benchmarks/count_round_trips.py`` counts them).
"""

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, select

from sendstatus_tui.core.importing import suppression
from sendstatus_tui.core.model import guard, send_minutes, settings
from sendstatus_tui.core.model.addresses import InvalidAddress
from sendstatus_tui.core.model.models import (
    DeliveryError,
    FailureClass,
    Mailing,
    Recipient,
    RecipientStatus,
    UTCDateTime,
    utc_now,
)
from sendstatus_tui.core.model.retry_policy import RetryPolicy
from sendstatus_tui.core.model.states import State
from sendstatus_tui.core.model.waiting import WaitingKind
from sendstatus_tui.core.store.driver import driver_cursor

PENDING, IN_FLIGHT, SENT, DEFERRED, FAILED, SUPPRESSED = (
    RecipientStatus.PENDING,
    RecipientStatus.IN_FLIGHT,
    RecipientStatus.SENT,
    RecipientStatus.DEFERRED,
    RecipientStatus.FAILED,
    RecipientStatus.SUPPRESSED,
)
IN_DOUBT = "in_doubt"  # an outcome only: DATA went out, no reply came
# an outcome only: held back untried for its domain's limit (engine/domain_pace.py), to be
# claimed again at its retry_at; recorded as deferred, without counting an attempt
HELD = "held"
# the doubt limit is every engine's: one engine's sends in doubt may be rescued by another
DOUBTS = RetryPolicy()
ERRORS_KEPT = 50  # per mailing, for the operator


@dataclass(frozen=True)
class Claimed:
    id: int
    email: str
    field_values: str | None
    attempts: int
    doubts: int = 0


@dataclass(frozen=True)
class Outcome:
    """What became of one claimed recipient."""

    recipient: Claimed
    status: str  # SENT, FAILED, DEFERRED, IN_DOUBT, HELD or PENDING (handed back untried)
    reply: str | None = None
    retry_at: datetime | None = None
    failure_class: str | None = None  # for FAILED: a FailureClass
    relay: str | None = None  # the relay that answered, by name (for the engine's metrics)
    # for FAILED: the relay said the mailbox does not exist (RelayVerdict.unknown_user)
    unknown_user: bool = False


@dataclass(frozen=True)
class Recorded:
    """What a record did: outcomes written, and those dropped because the claim was lost."""

    written: int
    dropped: int
    # the batch may have pushed the refusal share over the guard's limit: the caller
    # checks, in a transaction of its own (guard.check_refusals)
    check_guard: bool = False


def claim(
    session: Session,
    mailing_id: int,
    limit: int,
    now: datetime | None = None,
    *,
    claimant: str,
) -> list[Claimed]:
    """Marks up to ``limit`` recipients due for sending as in flight under ``claimant``'s
    claim, in id order. Those put on the suppression list since the import are marked
    suppressed instead, and left out (a batch that was all suppressed is followed by the
    next, so that an empty claim still means that nothing is due)."""
    now = now or utc_now()
    while True:
        claimed, suppressed = _claim_once(session, mailing_id, limit, now, claimant)
        if claimed or not suppressed:
            return claimed


def _claim_once(
    session: Session, mailing_id: int, limit: int, now: datetime, claimant: str
) -> tuple[list[Claimed], int]:
    """One claim: (the recipients claimed, how many were found suppressed)."""
    if session.get_bind().dialect.name == "postgresql":
        return _claim_once_postgresql(session, mailing_id, limit, now, claimant)
    cursor, mark = driver_cursor(session)
    # two queries, not one with OR: the pending in id order, walking the claim index, and
    # the deferred due again soonest first, walking the index of the deferred by due time
    # (its condition, status = 'deferred', written as it is for SQLite to use it); each
    # stops after ``limit`` rows. The OR made SQLite read and sort every recipient of the
    # mailing on each claim (0.3 s for a million); the deferred taken in id order, every
    # deferred one (25 ms a claim with 150,000 deferred for later)
    try:
        cursor.execute(
            "SELECT id, email, field_values, attempts, doubts FROM recipient"
            f" WHERE mailing_id = {mark} AND status = {mark} ORDER BY id LIMIT {mark}",
            (mailing_id, PENDING, limit),
        )
        pending = cursor.fetchall()
        cursor.execute(
            "SELECT id, email, field_values, attempts, doubts FROM recipient"
            f" WHERE mailing_id = {mark} AND status = '{DEFERRED}'"
            f" AND next_attempt_at <= {mark} ORDER BY next_attempt_at LIMIT {mark}",
            (mailing_id, datetime_to_driver(session)(now), limit),
        )
        retries = cursor.fetchall()
    finally:
        cursor.close()
    rows = sorted([*pending, *retries], key=lambda row: row[0])[:limit] if retries else pending
    if not rows:
        return [], 0
    blocked = suppressed_ids(session, rows)
    # ids come from the database as integers: written into the statement, they spare the
    # driver 200 parameters
    ids = ", ".join(str(int(row[0])) for row in rows if row[0] not in blocked)
    if ids:
        session.connection().exec_driver_sql(
            f"UPDATE recipient SET status = '{IN_FLIGHT}', claimed_by = {mark} WHERE id IN ({ids})",
            (claimant,),
        )
    if blocked:
        session.connection().exec_driver_sql(
            f"UPDATE recipient SET status = '{SUPPRESSED}', claimed_by = NULL"
            f" WHERE id IN ({', '.join(str(int(i)) for i in blocked)})"
        )
    if retries or blocked:
        claimed_retries = {row[0] for row in retries} & {row[0] for row in rows}
        mailing = session.get_one(Mailing, mailing_id, with_for_update=True)
        mailing.deferred -= len(claimed_retries)
        mailing.suppressed += len(blocked)
    return [Claimed(*row) for row in rows if row[0] not in blocked], len(blocked)


# One statement claims on PostgreSQL: the first ``limit`` pending, walking the claim index
# in id order, and the ``limit`` deferred due again soonest, walking the index of the
# deferred by due time, each skipping the rows another engine has locked; the first
# ``limit`` of both, in id order, go in flight. Their status before (``due.status``) says
# which were retries.
# The pending status is matched as a range and ordered on, though it is one value: with
# ``status = 'pending' ORDER BY id`` the planner may walk the primary key in id order and
# filter, expecting pending rows everywhere, when a send leaves them all after the ones
# already sent (claims go in id order): 72 ms a claim at 150,000 sent of 200,000, growing
# with them. Ordered by (status, id), only the claim index gives the order: 3 ms.
_CLAIM_POSTGRESQL = f"""
WITH pending AS (
    SELECT id, status FROM recipient
    WHERE mailing_id = %(mailing)s AND status BETWEEN '{PENDING}' AND '{PENDING}'
    ORDER BY status, id LIMIT %(limit)s FOR UPDATE SKIP LOCKED
), retries AS (
    SELECT id, status FROM recipient
    WHERE mailing_id = %(mailing)s AND status = '{DEFERRED}' AND next_attempt_at <= %(now)s
    ORDER BY next_attempt_at LIMIT %(limit)s FOR UPDATE SKIP LOCKED
), due AS (
    SELECT id, status FROM (SELECT * FROM pending UNION ALL SELECT * FROM retries) AS both_
    ORDER BY id LIMIT %(limit)s
)
UPDATE recipient SET status = '{IN_FLIGHT}', claimed_by = %(claimant)s
FROM due WHERE recipient.id = due.id
RETURNING recipient.id, recipient.email, recipient.field_values, recipient.attempts,
    recipient.doubts, due.status
"""


def _claim_once_postgresql(
    session: Session, mailing_id: int, limit: int, now: datetime, claimant: str
) -> tuple[list[Claimed], int]:
    """``_claim_once`` in one round trip (two more when some were retries or suppressed)."""
    cursor = session.connection().connection.cursor()
    try:
        cursor.execute(
            _CLAIM_POSTGRESQL,
            {
                "claimant": claimant,
                "mailing": mailing_id,
                "limit": limit,
                "now": datetime_to_driver(session)(now),
            },
        )
        rows = sorted(cursor.fetchall(), key=lambda row: row[0])
    finally:
        cursor.close()
    if not rows:
        return [], 0
    blocked = suppressed_ids(session, rows)
    if blocked:
        session.connection().exec_driver_sql(
            f"UPDATE recipient SET status = '{SUPPRESSED}', claimed_by = NULL"
            f" WHERE id IN ({', '.join(str(int(i)) for i in blocked)})"
        )
    retries = sum(row[5] == DEFERRED for row in rows)
    if retries or blocked:
        mailing = session.get_one(Mailing, mailing_id, with_for_update=True)
        mailing.deferred -= retries
        mailing.suppressed += len(blocked)
    return [Claimed(*row[:5]) for row in rows if row[0] not in blocked], len(blocked)


def suppressed_ids(session: Session, rows: Sequence[Sequence[Any]]) -> set[int]:
    """The ids among claimable (id, email, ...) rows whose address is on the suppression
    list."""
    keys: dict[str, list[int]] = {}
    for row in rows:
        try:
            keys.setdefault(suppression.mailbox_key(row[1]), []).append(row[0])
        except InvalidAddress:  # imported before a stricter check: the relay will say
            continue
    return {id_ for key in suppression.among(session, keys) for id_ in keys[key]}


def record(
    session: Session,
    mailing_id: int,
    outcomes: list[Outcome],
    *,
    claimant: str,
    now: datetime | None = None,
) -> Recorded:
    """Writes the outcomes still under ``claimant``'s claim, the mailing's counters and its
    minute's counts, in the caller's transaction. The others are dropped: their claim was
    handed back."""
    if not outcomes:
        return Recorded(0, 0)
    if session.get_bind().dialect.name == "postgresql":
        return _record_postgresql(session, mailing_id, outcomes, claimant, now or utc_now())
    held = _still_claimed(session, [o.recipient.id for o in outcomes], claimant)
    kept = [_settle_doubt(o) for o in outcomes if o.recipient.id in held]
    now = now or utc_now()
    check_guard = _write_outcomes(session, mailing_id, kept, claimant, now) if kept else False
    return Recorded(len(kept), len(outcomes) - len(kept), check_guard)


def _still_claimed(session: Session, ids: list[int], claimant: str) -> set[int]:
    """The recipients among ``ids`` in flight under ``claimant``'s claim (on SQLite, whose
    write transaction locks them all; PostgreSQL's record locks them itself)."""
    session.flush()  # what the session holds first, as a query through it would
    cursor, mark = driver_cursor(session)
    # the ids written into the statement, as a claim does: SQLAlchemy's compiling of 200
    # parameters cost more than the query
    try:
        cursor.execute(
            f"SELECT id FROM recipient WHERE id IN ({', '.join(str(int(i)) for i in ids)})"
            f" AND status = '{IN_FLIGHT}' AND claimed_by = {mark}",
            (claimant,),
        )
        return {row[0] for row in cursor.fetchall()}
    finally:
        cursor.close()


def _settle_doubt(outcome: Outcome) -> Outcome:
    """An in-doubt send on its last allowed try fails with class doubt."""
    if outcome.status != IN_DOUBT or not DOUBTS.doubt_settles(outcome.recipient.doubts):
        return outcome
    return Outcome(
        outcome.recipient,
        FAILED,
        f"no reply after DATA on {DOUBTS.max_doubts} tries (it may have been received):"
        f" {outcome.reply or 'no reply'}",
        failure_class=FailureClass.DOUBT,
    )


def _write_outcomes(
    session: Session, mailing_id: int, outcomes: list[Outcome], claimant: str, now: datetime
) -> bool:
    """Writes the outcomes and counters; True when the guard should count refusals."""
    cursor, mark = driver_cursor(session)
    to_driver = datetime_to_driver(session)
    # locked before the recipients are written: the guard's try numbers are handed out
    # under it (core/model/guard.py)
    mailing = session.get_one(Mailing, mailing_id, with_for_update=True)
    tries_before = mailing.tries
    results = [(PENDING if o.status == HELD else o.status, o.failure_class) for o in outcomes]
    tried = guard.numbering(mailing, results)
    try:
        # straight to the driver: SQLAlchemy's executemany cost more than SQLite's work
        cursor.executemany(
            f"UPDATE recipient SET status = {mark}, attempts = attempts + {mark},"
            f" doubts = doubts + {mark}, last_reply = {mark}, next_attempt_at = {mark},"
            f" failure_class = {mark}, claimed_by = NULL,"
            f" tried_seq = COALESCE({mark}, tried_seq)"
            f" WHERE id = {mark} AND claimed_by = {mark}",
            [
                (
                    {IN_DOUBT: PENDING, HELD: DEFERRED}.get(o.status, o.status),
                    0 if o.status in (PENDING, HELD) else 1,
                    1 if o.status == IN_DOUBT or o.failure_class == FailureClass.DOUBT else 0,
                    o.reply,
                    None if o.retry_at is None else to_driver(o.retry_at),
                    o.failure_class if o.status == FAILED else None,
                    seq,
                    o.recipient.id,
                    claimant,
                )
                for o, seq in zip(outcomes, tried, strict=True)
            ],
        )
    finally:
        cursor.close()
    counts = Counter(o.status for o in outcomes)
    mailing.sent += counts[SENT]
    mailing.failed += counts[FAILED]
    mailing.deferred += counts[DEFERRED] + counts[HELD]
    mailing.resent_in_doubt += counts[IN_DOUBT]
    mailing.updated_at = now
    send_minutes.add_outcomes(session, mailing_id, counts[SENT], counts[FAILED], now)
    errors = [
        DeliveryError(mailing_id=mailing_id, email=o.recipient.email, reply=o.reply, at=now)
        for o in outcomes
        if o.status in (FAILED, DEFERRED, IN_DOUBT) and o.reply
    ]
    session.add_all(errors)
    session.flush()
    if errors:
        _prune_errors(session, mailing_id)
    _suppress_unknown_users(session, outcomes)
    return guard.refusals_worth_counting(mailing, tries_before, results)


@dataclass
class _TryCounts:
    tries: int
    guard_from: int


_STILL_CLAIMED_POSTGRESQL = (
    f"SELECT id FROM recipient WHERE id = ANY(%s) AND status = '{IN_FLIGHT}'"
    " AND claimed_by = %s FOR UPDATE"
)
_LOCK_MAILING_POSTGRESQL = "SELECT tries, guard_from FROM mailing WHERE id = %s FOR UPDATE"
_WRITE_OUTCOMES_POSTGRESQL = """
UPDATE recipient SET status = v.status, attempts = recipient.attempts + v.tried,
    doubts = recipient.doubts + v.doubt, last_reply = v.reply, next_attempt_at = v.retry_at,
    failure_class = v.failure_class, claimed_by = NULL,
    tried_seq = COALESCE(v.seq, recipient.tried_seq)
FROM unnest(%s::bigint[], %s::text[], %s::int[], %s::int[], %s::text[], %s::timestamp[],
    %s::text[], %s::bigint[]) AS v(id, status, tried, doubt, reply, retry_at, failure_class, seq)
WHERE recipient.id = v.id AND recipient.claimed_by = %s
"""
_COUNT_OUTCOMES_POSTGRESQL = (
    "UPDATE mailing SET sent = sent + %s, failed = failed + %s, deferred = deferred + %s,"
    " resent_in_doubt = resent_in_doubt + %s, tries = %s, updated_at = %s WHERE id = %s"
)
_ADD_ERROR_POSTGRESQL = (
    "INSERT INTO delivery_error (mailing_id, email, reply, at) VALUES (%s, %s, %s, %s)"
)
_PRUNE_ERRORS_POSTGRESQL = (
    "DELETE FROM delivery_error WHERE mailing_id = %s AND id NOT IN"
    " (SELECT id FROM delivery_error WHERE mailing_id = %s ORDER BY id DESC LIMIT %s)"
)


def _record_postgresql(
    session: Session, mailing_id: int, outcomes: list[Outcome], claimant: str, now: datetime
) -> Recorded:
    """``record`` in two round trips, each a pipeline of psycopg's: the recipients still
    claimed, then the mailing, locked (in the lock order: core/store/locks.py); then the
    outcomes, the mailing's counters, its minute and its errors written."""
    driver = session.connection().connection.driver_connection
    assert driver is not None
    with driver.cursor() as claimed, driver.cursor() as locked:
        # read once the pipeline is over: a read within it would send a sync of its own
        with driver.pipeline():
            ids = [o.recipient.id for o in outcomes]
            claimed.execute(_STILL_CLAIMED_POSTGRESQL, (ids, claimant))
            locked.execute(_LOCK_MAILING_POSTGRESQL, (mailing_id,))
        held = {row[0] for row in claimed.fetchall()}
        counters = locked.fetchone()
    kept = [_settle_doubt(o) for o in outcomes if o.recipient.id in held]
    if not kept or counters is None:
        return Recorded(0, len(outcomes))
    mailing = _TryCounts(*counters)
    tries_before = mailing.tries
    results = [(PENDING if o.status == HELD else o.status, o.failure_class) for o in kept]
    tried = guard.numbering(mailing, results)
    to_driver = datetime_to_driver(session)
    counts = Counter(o.status for o in kept)
    errors = [
        (mailing_id, o.recipient.email, o.reply, to_driver(now))
        for o in kept
        if o.status in (FAILED, DEFERRED, IN_DOUBT) and o.reply
    ]
    minute = send_minutes.outcomes_statement(session, mailing_id, counts[SENT], counts[FAILED], now)
    with driver.pipeline(), driver.cursor() as cursor:
        cursor.execute(
            _WRITE_OUTCOMES_POSTGRESQL,
            (
                [o.recipient.id for o in kept],
                [{IN_DOUBT: PENDING, HELD: DEFERRED}.get(o.status, o.status) for o in kept],
                [0 if o.status in (PENDING, HELD) else 1 for o in kept],
                [
                    1 if o.status == IN_DOUBT or o.failure_class == FailureClass.DOUBT else 0
                    for o in kept
                ],
                [o.reply for o in kept],
                [None if o.retry_at is None else to_driver(o.retry_at) for o in kept],
                [o.failure_class if o.status == FAILED else None for o in kept],
                tried,
                claimant,
            ),
        )
        cursor.execute(
            _COUNT_OUTCOMES_POSTGRESQL,
            (
                counts[SENT],
                counts[FAILED],
                counts[DEFERRED] + counts[HELD],
                counts[IN_DOUBT],
                mailing.tries,
                to_driver(now),
                mailing_id,
            ),
        )
        if minute is not None:
            cursor.execute(*minute)
        if errors:
            cursor.executemany(_ADD_ERROR_POSTGRESQL, errors)
            cursor.execute(_PRUNE_ERRORS_POSTGRESQL, (mailing_id, mailing_id, ERRORS_KEPT))
    # a Mailing this session read before is stale now: read afresh when next used
    for loaded in list(session.identity_map.values()):
        if isinstance(loaded, Mailing) and loaded.id == mailing_id:
            session.expire(loaded)
    _suppress_unknown_users(session, kept)
    check_guard = guard.refusals_worth_counting(mailing, tries_before, results)
    return Recorded(len(kept), len(outcomes) - len(kept), check_guard)


def _suppress_unknown_users(session: Session, outcomes: list[Outcome]) -> None:
    """With ``suppress_unknown_users`` set, a refusal saying that the mailbox does not exist
    (5.1.1) puts the address on the suppression list, with the reply as its reason."""
    unknown = [(o.recipient.email, o.reply) for o in outcomes if o.unknown_user]
    if unknown and settings.enabled(session, "suppress_unknown_users"):
        suppression.add_entries(session, unknown)


def datetime_to_driver(session: Session) -> Callable[[datetime], Any]:
    """Converts an aware datetime the way a UTCDateTime column stores it, for the driver."""
    dialect = session.get_bind().dialect
    convert = UTCDateTime().dialect_impl(dialect).bind_processor(dialect)
    assert convert is not None  # a TypeDecorator with process_bind_param always has one
    return convert


def hand_back_claims(
    session: Session, claimant: str | list[str] | None = None, mailing_id: int | None = None
) -> dict[int, int]:
    """Puts recipients in flight back to pending as in doubt, since they may have reached
    the relay: those under ``claimant``'s claims (one or several; or anyone's), of
    ``mailing_id`` (or of every mailing). Each counts in ``resent_in_doubt``; one on its
    last allowed try fails with class doubt instead. Returns {mailing id: count}.
    Recipients are locked before their mailings, these in id order (core/store/locks.py).

    The leader does this for an engine that died or stalled past its lease, and an engine
    for its own claims when it cannot go on with them."""
    in_flight = [col(Recipient.status) == IN_FLIGHT]
    if isinstance(claimant, str):
        in_flight.append(col(Recipient.claimed_by) == claimant)
    elif claimant is not None:
        in_flight.append(col(Recipient.claimed_by).in_(claimant))
    if mailing_id is not None:
        in_flight.append(col(Recipient.mailing_id) == mailing_id)
    last_try = col(Recipient.doubts) >= DOUBTS.doubts_before_the_last  # as doubt_settles
    rows = session.exec(
        select(Recipient.mailing_id, last_try, sa.func.count())
        .where(*in_flight)
        .group_by(col(Recipient.mailing_id), last_try)
        .order_by(col(Recipient.mailing_id))
    ).all()
    if not rows:
        return {}
    session.execute(
        sa.update(Recipient)
        .where(*in_flight, last_try)
        .values(
            status=FAILED,
            failure_class=FailureClass.DOUBT,
            doubts=Recipient.doubts + 1,
            attempts=Recipient.attempts + 1,
            last_reply=f"in flight when its engine stopped, on {DOUBTS.max_doubts} tries"
            " (it may have been received)",
            claimed_by=None,
        )
        .execution_options(synchronize_session=False)
    )
    session.execute(
        sa.update(Recipient)
        .where(*in_flight)
        .values(
            status=PENDING,
            doubts=Recipient.doubts + 1,
            attempts=Recipient.attempts + 1,
            claimed_by=None,
        )
        .execution_options(synchronize_session=False)
    )
    counts: Counter[int] = Counter()
    for mailing_id, failing, count in rows:
        mailing = session.get_one(Mailing, mailing_id, with_for_update=True)
        if failing:
            mailing.failed += count
            send_minutes.add_outcomes(session, mailing_id, 0, count, utc_now())
        else:
            mailing.resent_in_doubt += count
        counts[mailing_id] += count
    session.flush()
    return dict(counts)


def mailing(session: Session, mailing_id: int) -> Mailing | None:
    return session.get(Mailing, mailing_id)


@dataclass(frozen=True)
class ActiveMailing:
    id: int
    state: str
    scheduled_at: datetime | None


def active_mailings(session: Session) -> list[ActiveMailing]:
    """The mailings the engine has to do something about: scheduled, starting, sending."""
    rows = session.exec(
        select(Mailing.id, Mailing.state, Mailing.scheduled_at).where(
            col(Mailing.state).in_([State.SCHEDULED, State.STARTING, State.SENDING])
        )
    ).all()
    return [ActiveMailing(*row) for row in rows]


def show_waiting(
    session: Session,
    mailing_id: int,
    kind: WaitingKind | None,
    reason: str | None = None,
    until: datetime | None = None,
    now: datetime | None = None,
) -> None:
    """Notes on the mailing what keeps the engine from sending it (its kind, and the
    engine's words for it) and until when it waits; since when (``now``) is kept while the
    kind stays. A kind of None: nothing any more."""
    mailing = session.get(Mailing, mailing_id, with_for_update=True)
    if mailing is None:
        return
    since: datetime | None = None
    if kind is not None:  # the same wait going on keeps its start
        same = kind == mailing.waiting_kind and mailing.waiting_since is not None
        since = mailing.waiting_since if same else (now or utc_now())
    mailing.waiting_kind, mailing.waiting_reason = kind, reason
    mailing.waiting_since, mailing.waiting_until = since, until
    session.flush()


def _prune_errors(session: Session, mailing_id: int, keep: int = ERRORS_KEPT) -> None:
    newest = (
        select(DeliveryError.id)
        .where(DeliveryError.mailing_id == mailing_id)
        .order_by(col(DeliveryError.id).desc())
        .limit(keep)
    )
    session.execute(
        sa.delete(DeliveryError).where(
            col(DeliveryError.mailing_id) == mailing_id,
            col(DeliveryError.id).not_in(newest.scalar_subquery()),
        )
    )


def last_errors(session: Session, mailing_id: int, limit: int = 10) -> list[DeliveryError]:
    return list(
        session.exec(
            select(DeliveryError)
            .where(DeliveryError.mailing_id == mailing_id)
            .order_by(col(DeliveryError.id).desc())
            .limit(limit)
        )
    )


def failed_by_class(session: Session, mailing_id: int) -> dict[str, int]:
    """Failed recipients counted by class (5xx, 4xx, doubt, error)."""
    # failures recorded before classes were kept (migration 0004) count as refusals
    failure_class = sa.func.coalesce(Recipient.failure_class, FailureClass.REFUSED)
    rows = session.exec(
        select(failure_class, sa.func.count())
        .where(Recipient.mailing_id == mailing_id, Recipient.status == FAILED)
        .group_by(failure_class)
    ).all()
    return dict(rows)
