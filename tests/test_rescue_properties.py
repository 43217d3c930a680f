"""Random interleavings of several sending engines on one mailing (register, claim, record,
fall silent and be rescued by the leader, wake up and report late) and an operator
(stop, send again), against the core, with the books checked after every step: counters
equal the recipients by status, every claim belongs to a live claimant once the leader has
rescued, a rescued engine can neither claim nor record under its old claimant, and the
mailing always completes once every recipient is settled."""

import tempfile
from datetime import timedelta
from pathlib import Path

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule
from sqlmodel import select

from sendstatus_tui.core.coordination import deliveries, heartbeats, rescue
from sendstatus_tui.core.coordination.heartbeats import ClaimantLost
from sendstatus_tui.core.importing.drafts import MailingDraft, create_mailing
from sendstatus_tui.core.model import lifecycle
from sendstatus_tui.core.model.models import EngineHeartbeat, Recipient, utc_now
from sendstatus_tui.core.store.store import Store

from .books import assert_balanced, finish, outcome, stop_or_send_again

RECIPIENTS = 8
EXPIRED_AFTER = timedelta(seconds=5)
NAMES = "ABC"
OUTCOMES = [deliveries.SENT, deliveries.DEFERRED, deliveries.IN_DOUBT, deliveries.PENDING]


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


class Senders(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.directory = tempfile.TemporaryDirectory()
        self.store = Store(f"sqlite:///{Path(self.directory.name) / 'senders.db'}")
        csv = Path(self.directory.name) / "people.csv"
        csv.write_text("email\n" + "".join(f"p{i}@example.com\n" for i in range(RECIPIENTS)))
        draft = MailingDraft(name="Senders", subject="Hi", sender="a@example.com", text_body="x")
        with self.store.write() as session:
            self.mailing_id = create_mailing(session, draft, csv)[0].id
            lifecycle.send_now(session, self.mailing_id)
            lifecycle.mark_prepared(session, self.mailing_id)
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

    @rule(name=st.sampled_from(NAMES), size=st.integers(1, RECIPIENTS))
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
        statuses=st.lists(st.sampled_from(OUTCOMES), min_size=1, max_size=4),
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

    # --- what operators do -----------------------------------------------------------------

    @rule()
    def operator_stops_or_sends_again(self):
        stop_or_send_again(self.store, self.mailing_id)

    # --- the books -------------------------------------------------------------------------

    @invariant()
    def counters_equal_the_recipients_by_status(self):
        assert_balanced(self.store, self.mailing_id, RECIPIENTS)

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

    def teardown(self):
        """Whatever happened, one engine finishes the mailing once the leader rescued."""
        try:
            finisher = self.senders["A"]
            finisher.number += 1
            self._beat(finisher, fresh=True)
            with self.store.write() as session:
                for row in session.exec(select(EngineHeartbeat)).all():
                    if row.id != "A":
                        row.heartbeat_at = utc_now() - EXPIRED_AFTER * 2
                rescue.rescue(session, utc_now() - EXPIRED_AFTER, keep="A")
            finish(self.store, self.mailing_id, RECIPIENTS, finisher.claimant)
        finally:
            self.store.dispose()
            self.directory.cleanup()

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
test_senders = Senders.TestCase
