"""A batch claimed and recorded in few round trips (PostgreSQL: one statement claims, two
pipelines record) keeps the books as the statement-by-statement path does on SQLite:
fencing, retries, doubt, suppression, counters, minutes, errors, try numbers."""

import threading
from collections import Counter
from datetime import timedelta

import pytest
import sqlalchemy as sa
from sqlmodel import select

from sendstatus_tui.core.coordination import deliveries, held_back
from sendstatus_tui.core.importing import suppression
from sendstatus_tui.core.model import lifecycle
from sendstatus_tui.core.model.models import (
    DeliveryError,
    FailureClass,
    Mailing,
    Recipient,
    SendMinute,
    utc_now,
)
from sendstatus_tui.core.model.retry_policy import MAX_DOUBTS
from sendstatus_tui.core.store import store as store_module
from sendstatus_tui.core.store.store import Store

from .engine_processes import status_counts


def sending(store: Store, make_mailing, recipients: int) -> int:
    mailing_id = make_mailing(recipients=recipients)
    with store.write() as session:
        lifecycle.send_now(session, mailing_id)
    return mailing_id


def claim(store: Store, mailing_id: int, limit: int, claimant: str = "A#1", now=None):
    with store.write() as session:
        return deliveries.claim(session, mailing_id, limit, now, claimant=claimant)


def record(store: Store, mailing_id: int, outcomes, claimant: str = "A#1", now=None):
    with store.write() as session:
        return deliveries.record(session, mailing_id, outcomes, claimant=claimant, now=now)


def mailing_row(store: Store, mailing_id: int) -> Mailing:
    with store.read() as session:
        return session.get_one(Mailing, mailing_id)


def recipients(store: Store, mailing_id: int) -> dict[int, Recipient]:
    with store.read() as session:
        rows = session.exec(select(Recipient).where(Recipient.mailing_id == mailing_id)).all()
        return {r.id: r for r in rows}


def test_a_mixed_batch_is_recorded_with_its_counters_minutes_errors_and_try_numbers(
    store, make_mailing
):
    mailing_id = sending(store, make_mailing, 8)
    batch = claim(store, mailing_id, 8)
    assert [c.id for c in batch] == sorted(c.id for c in batch) and len(batch) == 8
    retry_at = utc_now() + timedelta(minutes=5)
    # as claimed on its last allowed try (the counts in the row are added to, from 0 here)
    doubted = deliveries.Claimed(batch[5].id, batch[5].email, None, 2, MAX_DOUBTS - 1)
    outcomes = [
        deliveries.Outcome(batch[0], deliveries.SENT, "250 ok"),
        deliveries.Outcome(
            batch[1], deliveries.FAILED, "550 5.1.1 no", failure_class=FailureClass.REFUSED
        ),
        deliveries.Outcome(batch[2], deliveries.DEFERRED, "451 later", retry_at=retry_at),
        deliveries.Outcome(batch[3], deliveries.IN_DOUBT, "timeout after DATA"),
        deliveries.Outcome(batch[4], deliveries.HELD, retry_at=retry_at),
        deliveries.Outcome(doubted, deliveries.IN_DOUBT, "timeout again"),  # its last try
        deliveries.Outcome(batch[6], deliveries.PENDING),  # handed back untried
        deliveries.Outcome(batch[7], deliveries.FAILED, "bad", failure_class=FailureClass.ERROR),
    ]
    now = utc_now()
    recorded = record(store, mailing_id, outcomes, now=now)
    assert (recorded.written, recorded.dropped) == (8, 0)

    mailing = mailing_row(store, mailing_id)
    counts = status_counts(store, mailing_id)
    assert counts == Counter(sent=1, failed=3, deferred=2, pending=2)
    assert (mailing.sent, mailing.failed, mailing.deferred) == (1, 3, 2)
    assert mailing.resent_in_doubt == 1
    assert mailing.tries == 5  # sent, refused, deferred, in doubt, doubt: not held, untried, error
    rows = recipients(store, mailing_id)
    assert all(r.claimed_by is None for r in rows.values())
    assert [rows[c.id].tried_seq for c in batch] == [1, 2, 3, 4, None, 5, None, None]
    assert [rows[c.id].attempts for c in batch] == [1, 1, 1, 1, 0, 1, 0, 1]
    assert rows[batch[3].id].doubts == 1 and rows[batch[5].id].doubts == 1
    assert rows[batch[5].id].failure_class == FailureClass.DOUBT
    assert (
        rows[batch[1].id].failure_class == FailureClass.REFUSED
        and rows[batch[2].id].failure_class is None
    )
    assert rows[batch[2].id].next_attempt_at == retry_at
    assert rows[batch[2].id].last_reply == "451 later"
    with store.read() as session:
        minute = session.exec(select(SendMinute).where(SendMinute.mailing_id == mailing_id)).one()
        errors = session.exec(
            select(DeliveryError.email, DeliveryError.reply).where(
                DeliveryError.mailing_id == mailing_id
            )
        ).all()
    assert (minute.sent, minute.failed) == (1, 3)
    assert {email for email, _ in errors} == {batch[i].email for i in (1, 2, 3, 5, 7)}
    assert {reply for _, reply in errors} == {rows[batch[i].id].last_reply for i in (1, 2, 3, 5, 7)}


def test_a_record_under_a_lost_claim_writes_nothing_and_counts_nothing(store, make_mailing):
    mailing_id = sending(store, make_mailing, 4)
    batch = claim(store, mailing_id, 4, claimant="A#1")
    with store.write() as session:  # A stalled: its claims were handed back, B took them
        deliveries.hand_back_claims(session, "A#1")
    again = claim(store, mailing_id, 2, claimant="B#1")
    before = mailing_row(store, mailing_id)
    recorded = record(store, mailing_id, [deliveries.Outcome(c, deliveries.SENT) for c in batch])
    assert (recorded.written, recorded.dropped) == (0, 4)
    after = mailing_row(store, mailing_id)
    assert (after.sent, after.tries, after.updated_at) == (0, before.tries, before.updated_at)
    assert status_counts(store, mailing_id) == Counter(in_flight=2, pending=2)
    # B's claim is still B's: recording it works
    recorded = record(
        store, mailing_id, [deliveries.Outcome(c, deliveries.SENT) for c in again], "B#1"
    )
    assert (recorded.written, recorded.dropped) == (2, 0)
    assert mailing_row(store, mailing_id).sent == 2


def test_a_claim_takes_due_retries_with_pending_in_id_order_and_leaves_suppressed_out(
    store, make_mailing
):
    mailing_id = sending(store, make_mailing, 6)
    first = claim(store, mailing_id, 2)
    record(
        store,
        mailing_id,
        [deliveries.Outcome(c, deliveries.DEFERRED, "451", retry_at=utc_now()) for c in first],
    )
    with store.write() as session:
        suppression.add(session, ["person3@example.com"])
    assert mailing_row(store, mailing_id).deferred == 2
    later = utc_now() + timedelta(seconds=1)
    batch = claim(store, mailing_id, 4, now=later)
    # person3 was among the 4 due: suppressed, and the batch one short
    assert [c.email for c in batch] == [f"person{i}@example.com" for i in (0, 1, 2)]
    assert [c.attempts for c in batch] == [1, 1, 0]
    mailing = mailing_row(store, mailing_id)
    assert (mailing.deferred, mailing.suppressed) == (0, 1)
    assert status_counts(store, mailing_id) == Counter(in_flight=3, suppressed=1, pending=2)


@pytest.fixture
def postgres_store(store):
    if store.engine.dialect.name != "postgresql":
        pytest.skip("row locks held by another transaction: PostgreSQL")
    return store


def test_a_claim_skips_the_rows_another_transaction_has_locked(postgres_store, make_mailing):
    store = postgres_store
    mailing_id = sending(store, make_mailing, 6)
    locked, release = threading.Event(), threading.Event()

    def hold_the_first_two() -> None:
        with store.write() as session:
            session.execute(
                sa.text(
                    "SELECT id FROM recipient WHERE mailing_id = :m ORDER BY id LIMIT 2 FOR UPDATE"
                ),
                {"m": mailing_id},
            ).all()
            locked.set()
            release.wait(10)

    holder = threading.Thread(target=hold_the_first_two)
    holder.start()
    try:
        assert locked.wait(10)
        batch = claim(store, mailing_id, 3, claimant="B#1")
    finally:
        release.set()
        holder.join()
    assert [c.email for c in batch] == [f"person{i}@example.com" for i in (2, 3, 4)]
    # released, they are claimed next, before the last
    assert [c.email for c in claim(store, mailing_id, 3, claimant="C#1")] == [
        f"person{i}@example.com" for i in (0, 1, 5)
    ]


def test_a_record_waits_for_a_hand_back_in_progress_and_then_drops_the_batch(
    postgres_store, make_mailing
):
    """The hand-back locked the claims first: the record waits for it, then finds them no
    longer its own (its lock on the recipients is the fence, as before)."""
    store = postgres_store
    mailing_id = sending(store, make_mailing, 3)
    batch = claim(store, mailing_id, 3)
    handing_back, release = threading.Event(), threading.Event()

    def hand_back() -> None:
        with store.write() as session:
            deliveries.hand_back_claims(session, "A#1")
            handing_back.set()
            release.wait(10)

    thread = threading.Thread(target=hand_back)
    thread.start()
    assert handing_back.wait(10)
    results: list[deliveries.Recorded] = []
    recording = threading.Thread(
        target=lambda: results.append(
            record(store, mailing_id, [deliveries.Outcome(c, deliveries.SENT) for c in batch])
        )
    )
    recording.start()
    recording.join(0.5)
    assert recording.is_alive()  # waiting for the hand-back's locks
    release.set()
    thread.join()
    recording.join(10)
    assert [(r.written, r.dropped) for r in results] == [(0, 3)]
    mailing = mailing_row(store, mailing_id)
    assert (mailing.sent, mailing.resent_in_doubt) == (0, 3)


def test_a_pooled_connection_killed_while_idle_is_replaced_by_the_ping(
    postgres_store, make_mailing, monkeypatch
):
    store = postgres_store
    mailing_id = sending(store, make_mailing, 1)
    with store.write() as session:
        pid = session.connection().exec_driver_sql("SELECT pg_backend_pid()").scalar()
    killer = sa.create_engine(store.url)
    with killer.connect() as connection:
        connection.execute(sa.text("SELECT pg_terminate_backend(:p)"), {"p": pid})
    killer.dispose()
    monkeypatch.setattr(store_module, "PING_AFTER_IDLE_SECONDS", 0.0)  # idle long enough
    assert len(claim(store, mailing_id, 1)) == 1


def test_a_late_claim_on_postgresql_walks_only_the_pending(store, make_mailing):
    """Three quarters sent, with the statistics of the import (every recipient pending,
    as they are until the table is next analysed): the claim finds its batch among the
    pending recipients, not by walking past every one already sent."""
    if store.engine.dialect.name != "postgresql":
        pytest.skip("PostgreSQL's plan of its one-statement claim (SQLite claims otherwise)")
    mailing_id = sending(store, make_mailing, 20_000)
    with store.write() as session:
        session.execute(sa.text("ANALYZE recipient"))
        first = session.execute(
            sa.text("SELECT min(id) FROM recipient WHERE mailing_id = :m"), {"m": mailing_id}
        ).scalar_one()
    for start in range(first, first + 15_000, 200):  # as batches go: claimed, then sent
        for status in ("in_flight", "sent"):
            with store.write() as session:
                session.execute(
                    sa.text("UPDATE recipient SET status = :s WHERE id BETWEEN :a AND :b"),
                    {"s": status, "a": start, "b": start + 199},
                )
    with store.write() as session:
        cursor = session.connection().connection.cursor()
        parameters = {"mailing": mailing_id, "limit": 200, "now": utc_now(), "claimant": "A#1"}
        for _ in range(6):  # past psycopg's threshold: prepared, the plan a long send runs
            cursor.execute(
                "EXPLAIN (ANALYZE, COSTS OFF) " + deliveries._CLAIM_POSTGRESQL,
                parameters,
                prepare=True,
            )
            plan = "\n".join(row[0] for row in cursor.fetchall())
        session.rollback()
    pending_scan = plan.split("CTE retries")[0]
    assert "Index Scan using ix_recipient_claim" in pending_scan, plan
    assert "Rows Removed by Filter" not in pending_scan, plan


# --- the deferred for later are not read ------------------------------------------------------


def _deferred_mostly_for_later(store: Store, make_mailing) -> int:
    """3,000 recipients: the first 2,900 deferred (a throttled domain's, say), 50 of them
    due again a minute ago and the rest in an hour; 100 pending."""
    mailing_id = sending(store, make_mailing, 3_000)
    now = utc_now()
    with store.write() as session:
        first = session.execute(
            sa.text("SELECT min(id) FROM recipient WHERE mailing_id = :m"), {"m": mailing_id}
        ).scalar_one()
        to_driver = deliveries.datetime_to_driver(session)
        session.execute(
            sa.text(
                "UPDATE recipient SET status = 'deferred', next_attempt_at = CASE"
                " WHEN (id - :first) % 58 = 57 THEN :due ELSE :later END"
                " WHERE mailing_id = :m AND id < :first + 2900"
            ),
            {
                "m": mailing_id,
                "first": first,
                "due": to_driver(now - timedelta(minutes=1)),
                "later": to_driver(now + timedelta(hours=1)),
            },
        )
        session.get_one(Mailing, mailing_id).deferred = 2_900
        session.execute(sa.text("ANALYZE recipient"))
    return mailing_id


CLAIMS = {
    "claim": lambda session, mailing_id: deliveries.claim(session, mailing_id, 200, claimant="A#1"),
    "claim holding back": lambda session, mailing_id: (
        held_back.claim(session, mailing_id, 200, lambda recipient: None, claimant="A#1").going
    ),
}


@pytest.mark.parametrize("claim_with", CLAIMS)
def test_a_claim_reads_the_deferred_due_again_not_those_deferred_for_later(
    store, make_mailing, claim_with
):
    """A throttled domain leaves its recipients deferred by the thousand: a claim finds the
    few due again through the index of the deferred by due time, without reading the
    others (25 ms a claim with 150,000 of them on SQLite, before)."""
    mailing_id = _deferred_mostly_for_later(store, make_mailing)
    with store.read() as session:
        ids = session.exec(
            select(Recipient.id, Recipient.status, Recipient.next_attempt_at)
            .where(Recipient.mailing_id == mailing_id)
        ).all()  # fmt: skip
    now = utc_now()
    expected = {i for i, status, due in ids if status == "pending" or due <= now}
    plans = _plans_of_the_deferred_reads(store, mailing_id, claim_with)
    assert plans
    for plan in plans:
        assert "ix_recipient_due_again" in plan, plan
        assert "Rows Removed by Filter" not in plan, plan
    assert len(expected) == 150  # the 100 pending and the 50 due again
    with store.write() as session:
        claimed = CLAIMS[claim_with](session, mailing_id)
    assert {c.id for c in claimed} == expected


def _plans_of_the_deferred_reads(store: Store, mailing_id: int, claim_with: str) -> list[str]:
    """How a claim plans its reads of deferred recipients, the claim rolled back: on SQLite
    the plan of each statement it ran that reads them, on PostgreSQL its retries, under
    EXPLAIN ANALYZE."""
    with store.write() as session:
        connection = session.connection()
        driver = connection.connection.driver_connection
        if connection.dialect.name == "sqlite":
            statements: list[str] = []
            driver.set_trace_callback(statements.append)
            try:
                CLAIMS[claim_with](session, mailing_id)
            finally:
                driver.set_trace_callback(None)
            reads = [s for s in statements if s.startswith("SELECT") and "'deferred'" in s]
            plans = [
                "\n".join(
                    str(row[-1]) for row in connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {s}")
                )
                for s in reads
            ]
        else:
            sql = (
                deliveries._CLAIM_POSTGRESQL
                if claim_with == "claim"
                else held_back._CANDIDATES_POSTGRESQL
            )
            cursor = connection.connection.cursor()
            parameters = {
                "mailing": mailing_id, "limit": 200, "now": utc_now(), "claimant": "A#1", "after": 0
            }  # fmt: skip
            cursor.execute("EXPLAIN (ANALYZE, COSTS OFF) " + sql, parameters)
            plan = "\n".join(row[0] for row in cursor.fetchall())
            plans = [plan.split("CTE retries")[1].split("CTE ")[0]]
        session.rollback()
    return plans
