"""Random interleavings of what engines and operators do to one mailing's recipients,
against the core, with the books checked after every step: counters equal the recipients
by status and never pass the total, and the mailing always completes once every recipient
is settled. Two machines share that mailing, the operator's steps and the balance:

- ``Bookkeeping``: one leader at a time (claim, record, a lease lost to a takeover, stop,
  send again): an engine whose claims were handed back records nothing, every claim has an
  owner, doubts are bounded;
- ``Senders``: several sending engines (register, claim, record, fall silent and be
  rescued by the leader, wake up and report late): every claim belongs to a live claimant
  once the leader has rescued, and a rescued engine can neither claim nor record under its
  old claimant.
"""

import tempfile
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule
from sqlmodel import func, select

from sendstatus_tui.core.coordination import deliveries, heartbeats, lease, rescue
from sendstatus_tui.core.coordination.heartbeats import ClaimantLost
from sendstatus_tui.core.coordination.lease import LeaseLost
from sendstatus_tui.core.model import lifecycle
from sendstatus_tui.core.model.models import (
    EngineHeartbeat,
    FailureClass,
    Mailing,
    Recipient,
    utc_now,
)
from sendstatus_tui.core.model.retry_policy import MAX_DOUBTS
from sendstatus_tui.core.store.store import Store

from .helpers import add_mailing, migrated_store


@pytest.fixture(autouse=True, scope="module")
def from_a_template(sqlite_template):
    """Each example's database is a copy of the session's migrated file: migrating it anew
    took most of the time of these tests."""
    OneMailing.template = sqlite_template


# --- the books of one mailing ----------------------------------------------------------------


def stop_or_send_again(store: Store, mailing_id: int) -> None:
    """Stops a sending mailing, or sends a parked one again (or completes it, settled)."""
    with store.write() as session:
        mailing = deliveries.mailing(session, mailing_id)
        if mailing.state == "sending" and mailing.remaining == 0:
            lifecycle.complete(session, mailing_id)
        elif mailing.state == "sending":
            lifecycle.stop(session, mailing_id)
        elif mailing.state == "standby":
            lifecycle.send_now(session, mailing_id)
            lifecycle.mark_prepared(session, mailing_id)


def books(store: Store, mailing_id: int) -> tuple[Mailing, Counter]:
    """The mailing, and its recipients counted by status."""
    with store.read() as session:
        mailing = deliveries.mailing(session, mailing_id)
        counts = Counter(
            dict(
                session.exec(
                    select(Recipient.status, func.count())
                    .where(Recipient.mailing_id == mailing_id)
                    .group_by(Recipient.status)
                ).all()
            )
        )
    return mailing, counts


def assert_balanced(store: Store, mailing_id: int, recipients: int) -> None:
    """The counters equal the recipients by status, and never pass the total."""
    mailing, counts = books(store, mailing_id)
    assert (mailing.sent, mailing.failed, mailing.deferred) == (
        counts["sent"],
        counts["failed"],
        counts["deferred"],
    )
    assert sum(counts.values()) == mailing.total == recipients
    assert 0 <= mailing.remaining == recipients - mailing.sent - mailing.failed


def outcome(claimed: deliveries.Claimed, status: str) -> deliveries.Outcome:
    if status == deliveries.FAILED:
        return deliveries.Outcome(claimed, status, "550 no", failure_class=FailureClass.REFUSED)
    if status == deliveries.DEFERRED:  # due again at once
        return deliveries.Outcome(claimed, status, "451 later", utc_now() - timedelta(seconds=1))
    if status == deliveries.IN_DOUBT:
        return deliveries.Outcome(claimed, status, "no reply after DATA")
    return deliveries.Outcome(claimed, status, "250 ok" if status == deliveries.SENT else None)


def finish(store: Store, mailing_id: int, recipients: int, claimant: str) -> None:
    """Sends everyone still due as ``claimant``, then completes the mailing, which must
    then hold every recipient settled."""
    if books(store, mailing_id)[0].state == "standby":
        stop_or_send_again(store, mailing_id)
    for _ in range(recipients * MAX_DOUBTS + 5):
        with store.write() as session:
            batch = deliveries.claim(session, mailing_id, recipients, claimant=claimant)
            if not batch:
                break
            deliveries.record(
                session,
                mailing_id,
                [deliveries.Outcome(r, deliveries.SENT, "250 ok") for r in batch],
                claimant=claimant,
            )
    stop_or_send_again(store, mailing_id)  # completes it, all being settled
    mailing, counts = books(store, mailing_id)
    assert mailing.state == "completed", (mailing, counts)
    assert mailing.sent + mailing.failed == recipients


class OneMailing(RuleBasedStateMachine):
    """One mailing of ``recipients`` people, sending, in a database of its own; an operator
    who stops it or sends it again at any step; its books balanced after every step."""

    recipients: int
    template: Path  # the session's migrated SQLite file (from_a_template)

    def __init__(self):
        super().__init__()
        self.directory = tempfile.TemporaryDirectory()
        url = f"sqlite:///{Path(self.directory.name) / 'books.db'}"
        self.store = migrated_store(url, self.template)
        self.mailing_id = add_mailing(
            self.store,
            Path(self.directory.name),
            [f"p{i}@example.com" for i in range(self.recipients)],
            name=type(self).__name__,
            sender="a@example.com",
            subject="Hi",
            text_body="x",
        )
        with self.store.write() as session:
            lifecycle.send_now(session, self.mailing_id)
            lifecycle.mark_prepared(session, self.mailing_id)

    @rule()
    def operator_stops_or_sends_again(self):
        stop_or_send_again(self.store, self.mailing_id)

    @invariant()
    def counters_equal_the_recipients_by_status(self):
        assert_balanced(self.store, self.mailing_id, self.recipients)

    def teardown(self):
        """Whatever happened, an engine can finish the mailing and it completes."""
        try:
            finish(self.store, self.mailing_id, self.recipients, self.finisher())
        finally:
            self.store.dispose()
            self.directory.cleanup()

    def finisher(self) -> str:
        """The claimant that finishes the mailing, made ready to."""
        raise NotImplementedError


# --- one leader at a time: the lease ----------------------------------------------------------

TTL = timedelta(seconds=5)
LEADERS_RECIPIENTS = 6
LEADERS_OUTCOMES = [
    deliveries.SENT,
    deliveries.FAILED,
    deliveries.DEFERRED,
    deliveries.IN_DOUBT,
    deliveries.PENDING,
]


class EngineView:
    """What one engine believes: its lease generation and the claims in its hands."""

    def __init__(self, holder: str):
        self.holder = holder
        self.generation = 0
        # (the claimant it claimed them as, the recipient)
        self.in_hand: list[tuple[str, deliveries.Claimed]] = []
        self.stale: list[tuple[str, deliveries.Claimed]] = []  # handed back behind its back

    @property
    def claimant(self) -> str:
        return f"{self.holder}#{self.generation}"


class Bookkeeping(OneMailing):
    recipients = LEADERS_RECIPIENTS

    def __init__(self):
        super().__init__()
        self.clock = utc_now()
        self.engines = {name: EngineView(name) for name in ("A", "B")}
        self._take_lease(self.engines["A"])

    def _take_lease(self, engine: EngineView) -> None:
        """The lease expires (time jumps past it) and ``engine`` takes it, then hands every
        claim back, as an engine starting to serve does."""
        self.clock += TTL * 2
        with self.store.write() as session:
            state = lease.acquire(session, engine.holder, TTL, now=self.clock)
            assert state.held
            engine.generation = state.generation
            lease.check(session, engine.holder, engine.generation)
            deliveries.hand_back_claims(session)
        for view in self.engines.values():
            view.stale += view.in_hand
            view.in_hand = []

    # --- what engines do -------------------------------------------------------------------

    @rule(name=st.sampled_from("AB"), size=st.integers(1, LEADERS_RECIPIENTS))
    def claim(self, name, size):
        engine = self.engines[name]
        try:
            with self.store.write() as session:
                lease.check(session, engine.holder, engine.generation)
                if deliveries.mailing(session, self.mailing_id).state != "sending":
                    return
                batch = deliveries.claim(session, self.mailing_id, size, claimant=engine.claimant)
        except LeaseLost:
            assert not self._leads(engine)
            return
        assert self._leads(engine)
        engine.in_hand += [(engine.claimant, claimed) for claimed in batch]

    @rule(
        name=st.sampled_from("AB"),
        statuses=st.lists(st.sampled_from(LEADERS_OUTCOMES), min_size=1, max_size=5),
        stale=st.booleans(),
    )
    def record(self, name, statuses, stale):
        engine = self.engines[name]
        claims = engine.stale if stale else engine.in_hand
        batch, claims[:] = claims[: len(statuses)], claims[len(statuses) :]
        if not batch:
            return
        by_claimant: dict[str, list[deliveries.Outcome]] = {}
        for (claimant, claimed), status in zip(batch, statuses, strict=False):
            by_claimant.setdefault(claimant, []).append(outcome(claimed, status))
        for claimant, outcomes in by_claimant.items():  # recorded under the claim made
            with self.store.write() as session:
                recorded = deliveries.record(session, self.mailing_id, outcomes, claimant=claimant)
            if stale:
                assert recorded.written == 0  # fenced: the claims were handed back
            else:
                assert (recorded.written, recorded.dropped) == (len(outcomes), 0)

    @rule(name=st.sampled_from("AB"))
    def take_over(self, name):
        self._take_lease(self.engines[name])

    @invariant()
    def claims_have_an_owner_and_doubts_a_bound(self):
        with self.store.read() as session:
            recipients = session.exec(select(Recipient)).all()
        for r in recipients:
            assert (r.status == "in_flight") == (r.claimed_by is not None)
            assert r.doubts <= MAX_DOUBTS
            if r.doubts == MAX_DOUBTS:
                assert (r.status, r.failure_class) == ("failed", FailureClass.DOUBT)

    def finisher(self) -> str:
        """The engine leading, serving afresh."""
        leader = next(e for e in self.engines.values() if self._leads(e))
        self._take_lease(leader)  # a fresh serve: every claim handed back
        return leader.claimant

    def _leads(self, engine: EngineView) -> bool:
        with self.store.read() as session:
            current = lease.current(session)
        return (current.holder, current.generation) == (engine.holder, engine.generation)


Bookkeeping.TestCase.settings = settings(
    max_examples=100, stateful_step_count=40, deadline=None, database=None
)
test_bookkeeping = pytest.mark.long(Bookkeeping.TestCase)  # 10 to 25 s


def test_a_stale_engine_records_nothing_after_a_takeover_reclaimed_its_batch():
    """The interleaving of the SIGSTOP break, spelled out: A claims, B takes over and claims
    the same recipients, A wakes and reports them sent."""
    machine = Bookkeeping()
    try:
        machine.claim("A", 3)
        machine.take_over("B")
        machine.claim("B", LEADERS_RECIPIENTS)
        machine.record("A", [deliveries.SENT] * 3, stale=True)  # asserts nothing was written
        machine.record("B", [deliveries.SENT] * 3, stale=False)
        machine.counters_equal_the_recipients_by_status()
        assert books(machine.store, machine.mailing_id)[0].sent == 3
    finally:
        machine.teardown()


# --- several senders: heartbeats and rescue ----------------------------------------------------

EXPIRED_AFTER = timedelta(seconds=5)
NAMES = "ABC"
SENDERS_RECIPIENTS = 8
SENDERS_OUTCOMES = [deliveries.SENT, deliveries.DEFERRED, deliveries.IN_DOUBT, deliveries.PENDING]


class Sender:
    """What one engine believes: its claimant and the claims in its hands."""

    def __init__(self, name: str):
        self.name = name
        self.number = 0
        self.registered = False
        self.rescued = False  # the leader cleared its claimant
        self.in_hand: list[tuple[str, deliveries.Claimed]] = []

    @property
    def claimant(self) -> str:
        return f"{self.name}#{self.number}"


class Senders(OneMailing):
    recipients = SENDERS_RECIPIENTS

    def __init__(self):
        super().__init__()
        self.senders = {name: Sender(name) for name in NAMES}

    def _beat(self, sender: Sender, fresh: bool, at=None) -> bool:
        beat = heartbeats.Beat(
            sender.name, "host", 1, "sender", utc_now(), (), 0, 0.0, 0, "", sender.claimant
        )
        with self.store.write() as session:
            stands = heartbeats.beat(session, beat, fresh=fresh)
            if stands and at is not None:
                session.get(EngineHeartbeat, sender.name).heartbeat_at = at
        return stands

    # --- what engines do -------------------------------------------------------------------

    @rule(name=st.sampled_from(NAMES))
    def beat(self, name):
        """A beat: registers a new claimant, or finds the old one rescued and takes a new."""
        sender = self.senders[name]
        if sender.registered:
            stands = self._beat(sender, fresh=False)
            assert stands == (not sender.rescued)  # a rescued engine learns it at its beat
            if stands:
                return
            sender.number += 1  # what it holds is no longer its own: a new claimant
        sender.registered = self._beat(sender, fresh=True)
        sender.rescued = False

    @rule(name=st.sampled_from(NAMES), size=st.integers(1, SENDERS_RECIPIENTS))
    def claim(self, name, size):
        sender = self.senders[name]
        try:
            with self.store.write() as session:
                heartbeats.check_claimant(session, sender.name, sender.claimant)
                if deliveries.mailing(session, self.mailing_id).state != "sending":
                    return
                batch = deliveries.claim(session, self.mailing_id, size, claimant=sender.claimant)
        except ClaimantLost:
            assert not self._stands(sender)
            return
        assert self._stands(sender)
        sender.in_hand += [(sender.claimant, claimed) for claimed in batch]

    @rule(
        name=st.sampled_from(NAMES),
        statuses=st.lists(st.sampled_from(SENDERS_OUTCOMES), min_size=1, max_size=4),
    )
    def record(self, name, statuses):
        """Records under the claimant each claim was made as: those of a claimant since
        rescued are dropped, the others written."""
        sender = self.senders[name]
        batch, sender.in_hand = sender.in_hand[: len(statuses)], sender.in_hand[len(statuses) :]
        for (claimant, claimed), status in zip(batch, statuses, strict=False):
            written = outcome(claimed, status)
            with self.store.write() as session:
                held = self._claimed_by(session, claimed.id) == claimant
                recorded = deliveries.record(session, self.mailing_id, [written], claimant=claimant)
            assert (recorded.written, recorded.dropped) == ((1, 0) if held else (0, 1))
            if claimant != sender.claimant:
                assert not held  # a claim of a rescued claimant never records

    @rule(name=st.sampled_from(NAMES))
    def falls_silent_and_is_rescued(self, name):
        """The engine's last beat is older than the heartbeat's life; the leader (another
        engine) rescues."""
        sender = self.senders[name]
        if sender.registered:
            with self.store.write() as session:
                row = session.get(EngineHeartbeat, sender.name)
                row.heartbeat_at = utc_now() - EXPIRED_AFTER * 2
            sender.rescued = True
        leader = next(n for n in NAMES if n != name)
        with self.store.write() as session:
            rescue.rescue(session, utc_now() - EXPIRED_AFTER, keep=leader)

    @rule()
    def leader_rescues_nobody_alive(self):
        """A rescue when every engine beat recently hands back nothing of theirs."""
        with self.store.read() as session:
            before = self._in_flight(session)
        for sender in self.senders.values():
            if sender.registered:
                self._beat(sender, fresh=False)
        with self.store.write() as session:
            live = {
                row.claimant for row in session.exec(select(EngineHeartbeat)).all() if row.claimant
            }
            rescue.rescue(session, utc_now() - EXPIRED_AFTER, keep="A")
        with self.store.read() as session:
            after = self._in_flight(session)
        assert {k: v for k, v in before.items() if v in live} == {
            k: v for k, v in after.items() if v in live
        }

    @invariant()
    def every_claim_belongs_to_a_claimant_a_row_names(self):
        """A claim checks its row, and a rescue clears a claimant and hands its claims
        back at once: no claim is ever left to a claimant nobody names."""
        with self.store.read() as session:
            claimants = set(self._in_flight(session).values())
            named = {row.claimant for row in session.exec(select(EngineHeartbeat)).all()}
        assert claimants <= named

    @invariant()
    def a_rescued_claimant_is_named_by_no_row(self):
        with self.store.read() as session:
            named = {row.claimant for row in session.exec(select(EngineHeartbeat)).all()}
        for sender in self.senders.values():
            for old in range(sender.number):
                assert f"{sender.name}#{old}" not in named

    def finisher(self) -> str:
        """Engine A, with a new claimant, once the leader rescued every other."""
        finisher = self.senders["A"]
        finisher.number += 1
        self._beat(finisher, fresh=True)
        with self.store.write() as session:
            for row in session.exec(select(EngineHeartbeat)).all():
                if row.id != "A":
                    row.heartbeat_at = utc_now() - EXPIRED_AFTER * 2
            rescue.rescue(session, utc_now() - EXPIRED_AFTER, keep="A")
        return finisher.claimant

    def _stands(self, sender: Sender) -> bool:
        with self.store.read() as session:
            row = session.get(EngineHeartbeat, sender.name)
        return row is not None and row.claimant == sender.claimant

    def _claimed_by(self, session, recipient_id: int) -> str | None:
        row = session.get(Recipient, recipient_id)
        return row.claimed_by if row.status == "in_flight" else None

    def _in_flight(self, session) -> dict[int, str]:
        rows = session.exec(
            select(Recipient.id, Recipient.claimed_by).where(Recipient.status == "in_flight")
        ).all()
        return dict(rows)


Senders.TestCase.settings = settings(
    max_examples=60, stateful_step_count=40, deadline=None, database=None
)
test_senders = pytest.mark.long(Senders.TestCase)
