"""A claim that holds back, in its own transaction, the recipients whose domain's turn is not
soon (core/coordination/held_back.py): only those that go now are committed in flight, the
others go back deferred until their time, and the next recipients take their place; the
books balance (SQLite and PostgreSQL)."""

from collections import Counter
from datetime import timedelta

from sqlmodel import select

from sendstatus_tui.core.coordination import deliveries, held_back
from sendstatus_tui.core.importing import suppression
from sendstatus_tui.core.model import lifecycle
from sendstatus_tui.core.model.models import Mailing, Recipient, utc_now

from .engine_processes import status_counts


def sending(store, make_mailing, recipients: int) -> int:
    mailing_id = make_mailing(recipients=recipients)
    with store.write() as session:
        lifecycle.send_now(session, mailing_id)
    return mailing_id


def person(i: int) -> str:
    return f"person{i}@example.com"


class Holding:
    """Holds back the recipients of the given numbers until ``until``; counts its calls."""

    def __init__(self, numbers: set[int], until):
        self.held = {person(i) for i in numbers}
        self.until = until
        self.asked: list[str] = []

    def __call__(self, recipient: deliveries.Claimed):
        self.asked.append(recipient.email)
        return self.until if recipient.email in self.held else None


def claim(store, mailing_id: int, limit: int, hold, now=None) -> held_back.Sendable:
    with store.write() as session:
        return held_back.claim(session, mailing_id, limit, hold, claimant="A#1", now=now)


def rows(store, mailing_id: int) -> dict[str, Recipient]:
    with store.read() as session:
        found = session.exec(select(Recipient).where(Recipient.mailing_id == mailing_id)).all()
        return {r.email: r for r in found}


def counters(store, mailing_id: int) -> tuple[int, int]:
    with store.read() as session:
        mailing = session.get_one(Mailing, mailing_id)
        return mailing.deferred, mailing.suppressed


def test_those_held_back_go_back_deferred_and_the_next_take_their_place(store, make_mailing):
    mailing_id = sending(store, make_mailing, 10)
    back_at = utc_now() + timedelta(minutes=5)
    sendable = claim(store, mailing_id, 5, Holding({1, 4}, back_at))
    assert [c.email for c in sendable.going] == [person(i) for i in (0, 2, 3, 5, 6)]
    assert [(o.recipient.email, o.status, o.retry_at) for o in sendable.held] == [
        (person(1), deliveries.HELD, back_at),
        (person(4), deliveries.HELD, back_at),
    ]
    # in flight: only those that go, and no more than asked
    assert status_counts(store, mailing_id) == Counter(in_flight=5, deferred=2, pending=3)
    assert counters(store, mailing_id) == (2, 0)
    found = rows(store, mailing_id)
    for i in (1, 4):  # never claimed, no attempt counted, back at their time
        row = found[person(i)]
        assert (row.claimed_by, row.attempts, row.next_attempt_at) == (None, 0, back_at)
    assert {found[person(i)].claimed_by for i in (0, 2, 3, 5, 6)} == {"A#1"}


def test_retries_due_again_held_again_going_or_suppressed_keep_the_counters(store, make_mailing):
    mailing_id = sending(store, make_mailing, 8)
    with store.write() as session:
        first = deliveries.claim(session, mailing_id, 3, claimant="A#1")
    deferred = [deliveries.Outcome(c, deliveries.DEFERRED, "451 later", utc_now()) for c in first]
    with store.write() as session:
        deliveries.record(session, mailing_id, deferred, claimant="A#1")
        suppression.add(session, [person(2), person(3)])
    assert counters(store, mailing_id) == (3, 0)
    back_at = utc_now() + timedelta(minutes=5)
    later = utc_now() + timedelta(seconds=1)
    # person0 due again goes, person1 due again is held again, person2 due again and
    # person3 pending are suppressed, person4 pending goes
    sendable = claim(store, mailing_id, 2, Holding({1}, back_at), now=later)
    assert [c.email for c in sendable.going] == [person(0), person(4)]
    assert [o.recipient.email for o in sendable.held] == [person(1)]
    assert status_counts(store, mailing_id) == Counter(
        in_flight=2, deferred=1, suppressed=2, pending=3
    )
    assert counters(store, mailing_id) == (1, 2)
    found = rows(store, mailing_id)
    assert (found[person(1)].attempts, found[person(1)].last_reply) == (1, "451 later")
    assert found[person(1)].next_attempt_at == back_at


def test_a_domain_that_holds_back_all_is_not_read_to_the_end(store, make_mailing):
    mailing_id = sending(store, make_mailing, 100)
    everyone = Holding(set(range(100)), utc_now() + timedelta(minutes=5))
    sendable = claim(store, mailing_id, 10, everyone)
    assert sendable.going == []
    # one read ahead of the batch: the rest stays pending, untouched
    assert len(everyone.asked) == len(sendable.held) == 10 * held_back.READ_AHEAD
    assert status_counts(store, mailing_id) == Counter(deferred=15, pending=85)


def test_reads_again_while_too_few_go(store, make_mailing):
    mailing_id = sending(store, make_mailing, 40)
    half = Holding(set(range(0, 40, 2)), utc_now() + timedelta(minutes=5))
    sendable = claim(store, mailing_id, 10, half)
    assert [c.email for c in sendable.going] == [person(i) for i in range(1, 20, 2)]
    assert status_counts(store, mailing_id) == Counter(in_flight=10, deferred=10, pending=20)


def test_show_tells_those_held_back_for_their_domain_from_those_retrying(store, make_mailing, run):
    mailing_id = sending(store, make_mailing, 10)
    sendable = claim(store, mailing_id, 5, Holding({1, 4}, utc_now() + timedelta(minutes=5)))
    deferred_by_relay, *sent = sendable.going
    retry_at = utc_now() + timedelta(minutes=1)
    with store.write() as session:
        deliveries.record(
            session,
            mailing_id,
            [
                deliveries.Outcome(
                    deferred_by_relay, deliveries.DEFERRED, "451 4.3.0 later", retry_at
                ),
                *(deliveries.Outcome(r, deliveries.SENT) for r in sent),
            ],
            claimant="A#1",
        )
    status, out, _ = run("show", str(mailing_id))
    assert status == 0
    assert "3 deferred (2 held for a domain limit, 1 retrying)" in out
    status, out, _ = run("show", "--json", str(mailing_id))
    assert '"held_for_domains": 2' in out
