"""Random interleavings of what engines and operators do to one mailing's recipients (claim,
record, a lease lost to a takeover, stop, send again) against the core, with the books
checked after every step: counters equal the recipients by status and never pass the
total, an engine whose claims were handed back records nothing, doubts are bounded, and
the mailing always completes once every recipient is settled."""

import tempfile
from datetime import timedelta
from pathlib import Path

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule
from sqlmodel import select

from sendstatus_tui.core.coordination import deliveries, lease
from sendstatus_tui.core.coordination.lease import LeaseLost
from sendstatus_tui.core.importing.drafts import MailingDraft, create_mailing
from sendstatus_tui.core.model import lifecycle
from sendstatus_tui.core.model.models import FailureClass, Recipient, utc_now
from sendstatus_tui.core.store.store import Store

from .books import assert_balanced, finish, outcome, stop_or_send_again
from .books import books as mailing_books

RECIPIENTS = 6
TTL = timedelta(seconds=5)
OUTCOMES = [
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


class Bookkeeping(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.directory = tempfile.TemporaryDirectory()
        self.store = Store(f"sqlite:///{Path(self.directory.name) / 'books.db'}")
        self.mailing_id = self._mailing()
        self.clock = utc_now()
        self.engines = {name: EngineView(name) for name in ("A", "B")}
        self._take_lease(self.engines["A"])
        with self.store.write() as session:
            lifecycle.send_now(session, self.mailing_id)
            lifecycle.mark_prepared(session, self.mailing_id)

    def _mailing(self) -> int:
        csv = Path(self.directory.name) / "people.csv"
        csv.write_text("email\n" + "".join(f"p{i}@example.com\n" for i in range(RECIPIENTS)))
        draft = MailingDraft(name="Books", subject="Hi", sender="a@example.com", text_body="x")
        with self.store.write() as session:
            return create_mailing(session, draft, csv)[0].id

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

    @rule(name=st.sampled_from("AB"), size=st.integers(1, RECIPIENTS))
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
        statuses=st.lists(st.sampled_from(OUTCOMES), min_size=1, max_size=5),
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

    # --- what operators do -----------------------------------------------------------------

    @rule()
    def operator_stops_or_sends_again(self):
        stop_or_send_again(self.store, self.mailing_id)

    # --- the books -------------------------------------------------------------------------

    @invariant()
    def counters_equal_the_recipients_by_status(self):
        assert_balanced(self.store, self.mailing_id, RECIPIENTS)

    @invariant()
    def claims_have_an_owner_and_doubts_a_bound(self):
        with self.store.read() as session:
            recipients = session.exec(select(Recipient)).all()
        for r in recipients:
            assert (r.status == "in_flight") == (r.claimed_by is not None)
            assert r.doubts <= deliveries.MAX_DOUBTS
            if r.doubts == deliveries.MAX_DOUBTS:
                assert (r.status, r.failure_class) == ("failed", FailureClass.DOUBT)

    def teardown(self):
        """Whatever happened, the leader can finish the mailing and it completes."""
        try:
            leader = next(e for e in self.engines.values() if self._leads(e))
            self._take_lease(leader)  # a fresh serve: every claim handed back
            finish(self.store, self.mailing_id, RECIPIENTS, leader.claimant)
        finally:
            self.store.dispose()
            self.directory.cleanup()

    def _leads(self, engine: EngineView) -> bool:
        with self.store.read() as session:
            current = lease.current(session)
        return (current.holder, current.generation) == (engine.holder, engine.generation)


Bookkeeping.TestCase.settings = settings(
    max_examples=100, stateful_step_count=40, deadline=None, database=None
)
test_bookkeeping = Bookkeeping.TestCase


def test_a_stale_engine_records_nothing_after_a_takeover_reclaimed_its_batch():
    """The interleaving of the SIGSTOP break, spelled out: A claims, B takes over and claims
    the same recipients, A wakes and reports them sent."""
    books = Bookkeeping()
    try:
        books.claim("A", 3)
        books.take_over("B")
        books.claim("B", RECIPIENTS)
        books.record("A", [deliveries.SENT] * 3, stale=True)  # asserts nothing was written
        books.record("B", [deliveries.SENT] * 3, stale=False)
        books.counters_equal_the_recipients_by_status()
        assert mailing_books(books.store, books.mailing_id)[0].sent == 3
    finally:
        books.teardown()
