"""Sending one mailing: its lanes claim a batch (with its send slots under a rate), send
it, record what the relay answered, and complete the mailing when nothing remains."""

import asyncio
import contextlib
import functools
import logging
import math
import time
from dataclasses import dataclass, field
from datetime import datetime

from sqlmodel import Session

from sendstatus_tui.core.coordination import deliveries, heartbeats, held_back, shared_rate
from sendstatus_tui.core.coordination.heartbeats import ClaimantLost
from sendstatus_tui.core.coordination.shared_rate import ReservedSlots
from sendstatus_tui.core.model import guard, lifecycle, signing
from sendstatus_tui.core.model.models import utc_now
from sendstatus_tui.core.model.relays import names_of
from sendstatus_tui.core.model.states import State
from sendstatus_tui.core.model.when import WhenError
from sendstatus_tui.core.model.window import stored_window
from sendstatus_tui.core.store.store import StoreError, lock_transitions
from sendstatus_tui.engine.backoff import RelayBackoff
from sendstatus_tui.engine.context import EngineContext
from sendstatus_tui.engine.domain_pace import DomainLimits, DomainWait
from sendstatus_tui.engine.message import Template, template_of
from sendstatus_tui.engine.metrics import NoMetrics
from sendstatus_tui.engine.pauses import at_most
from sendstatus_tui.engine.routes import Routes
from sendstatus_tui.engine.sending import BatchSender
from sendstatus_tui.engine.steps import Steps

log = logging.getLogger("sendstatus.engine")
# batches of one mailing in flight at once: while one waits for its last replies (a round
# trip to a relay far away), the other keeps the connections busy
DISPATCH_LANES = 2
# under a rate, a mailing's batches in flight hold about this long of it: claims reserve
# their send slots ahead, and a short window keeps engines and mailings taking turns
RATED_WINDOW_SECONDS = 0.5
# how often a mailing with nothing to claim looks again while domains are limited: those
# held back for their domain's turn come back for their slots on time
HELD_BACK_SECONDS = 0.1


@dataclass(frozen=True)
class Claim:
    """What one claim brought: the batch, its send slots under a rate, and whether the
    mailing is done (stopped, or completed now); or, under a rate, when the next send slot
    may be claimed (epoch seconds), when it is not due yet."""

    batch: list[deliveries.Claimed]
    slots: ReservedSlots | None = None
    # put back by the claim itself, held back for their domains' turns
    held: list[deliveries.Outcome] = field(default_factory=list)
    done: bool = False
    finished: bool = False  # nothing remains: to be completed
    not_before: float | None = None  # no send slot is due yet: claim again then
    # outside its sending window: nothing is claimed until it opens then
    window_opens: datetime | None = None
    # inside it: no message of the batch goes to the relay from then on (epoch seconds)
    window_closes: float = math.inf
    # why it cannot be sent until an operator acts (a window in a zone no longer known)
    unsendable: str | None = None


class Batches:
    def __init__(
        self,
        context: EngineContext,
        steps: Steps,
        sender: BatchSender,
        routes: Routes,
        domains: DomainLimits,
        metrics: NoMetrics,
    ):
        self.db, self.settings, self.standing = context.db, context.settings, context.standing
        self.pauses, self.trouble, self.steps = context.pauses, context.trouble, steps
        self.sender, self.routes, self.domains, self.metrics = sender, routes, domains, metrics
        # set when a mailing is stopped by an operator, or for all when the engine drains:
        # no new message starts for it
        self.stops: dict[int, asyncio.Event] = {}
        self.sent = 0  # messages the relay accepted from this engine, for its heartbeat

    def stopping(self, mailing_id: int) -> asyncio.Event:
        return self.stops.setdefault(mailing_id, asyncio.Event())

    def _may_hand_over(self, mailing_id: int, claimant: str, window_closes: float) -> bool:
        """A message may go to the relay: neither stopped nor draining, the claims still
        surely this engine's, and its sending window not closed since the claim (what is
        already in the relay's hands then finishes; the rest goes back to pending)."""
        return (
            time.time() < window_closes
            and not self.pauses.draining
            and not self.stopping(mailing_id).is_set()
            and claimant == self.standing.claimant
            and time.monotonic() < self.standing.send_deadline
        )

    async def dispatch(self, mailing_id: int, claimant: str) -> None:
        """Sends the mailing, in its lanes, until it is done or stopped."""
        mailing, return_path, key = await self.db.read(
            lambda session: (
                deliveries.mailing(session, mailing_id),
                signing.return_path(session),
                signing.signing_key(session),
            )
        )
        if mailing is None or mailing.state != State.SENDING:
            return  # deleted or stopped meanwhile
        template = template_of(mailing, return_path, key)
        through = names_of(mailing)
        domain_wait = DomainWait(self.domains)  # its lanes' together
        async with asyncio.TaskGroup() as lanes:  # one failing cancels the other
            for _ in range(DISPATCH_LANES):
                lanes.create_task(
                    self._send_batches(mailing_id, template, through, claimant, domain_wait)
                )

    async def _send_batches(
        self,
        mailing_id: int,
        template: Template,
        through: tuple[str, ...] | None,
        claimant: str,
        domain_wait: DomainWait,
    ) -> None:
        """Claims, sends and records batches until the mailing is done or stopped."""
        backoff = RelayBackoff(self.settings.retry_policy, self.pauses.pause)
        stopping = self.stopping(mailing_id)
        standing, pauses = self.standing, self.pauses
        while not pauses.draining and not stopping.is_set() and claimant == standing.claimant:
            if time.monotonic() >= standing.send_deadline:
                await pauses.pause(0.2)  # the heartbeat may be stale: wait for the next
                continue
            try:
                claim = await self.db.write(
                    lambda session: self._claim(session, mailing_id, claimant)
                )
            except shared_rate.NotDue as not_due:  # what it claimed went back with it
                claim = Claim([], not_before=not_due.due)
            except ClaimantLost:
                return  # the beat learns it too, and takes a new claimant
            except StoreError as exc:
                self.trouble.report("claim", exc)
                await pauses.pause(1.0)
                continue
            self.trouble.report("claim", None)
            if claim.unsendable is not None:
                await self.steps.interrupt(None, mailing_id, claim.unsendable, claimant)
                return
            if claim.finished:
                await self._complete(mailing_id, claimant)
                return
            if claim.done:
                return
            if claim.window_opens is not None:
                await self._outside_window(mailing_id, claim.window_opens, stopping, claimant)
                continue
            if claim.not_before is not None:
                await self._until_due(mailing_id, claim.not_before, stopping)
                continue
            if not claim.batch:  # all in flight elsewhere, or deferred until their retry
                # (held back for their domain's turn: soon, and for their slot)
                idle = HELD_BACK_SECONDS if self.domains.limited else 1.0
                domain_wait.batch(claim.held)
                await self._show_domain_wait(mailing_id, domain_wait, claimant)
                await pauses.pause(min(idle, self.settings.retry_base.total_seconds()))
                continue
            outcomes, trouble = await self.sender.send(
                template,
                claim.batch,
                functools.partial(self._may_hand_over, mailing_id, claimant, claim.window_closes),
                stopping,
                claim.slots,
                through,
            )
            recorded = await self._record(mailing_id, outcomes, claimant)
            if claim.slots is not None:
                await self._release_unused(claim.slots, outcomes)
            if not recorded:
                return
            went = domain_wait.batch([*claim.held, *outcomes])
            if trouble is not None and trouble.refuses_us:
                await self.steps.interrupt(None, mailing_id, trouble.text, claimant)
                return
            # a relay that failed while another one the mailing uses is up: its share has
            # moved already (engine/routes.py), nothing to wait for
            if trouble is not None and not self.routes.any_up(through):
                await self.steps.show_relay_down(None, mailing_id, trouble.text, backoff, claimant)
                await backoff.wait(mailing_id, trouble.text)
            else:
                backoff.reset()
                if went:
                    await self.steps.clear_waiting(None, mailing_id, claimant)
                else:  # held back for their domains (or handed back untried on a stop)
                    await self._show_domain_wait(mailing_id, domain_wait, claimant)

    async def _show_domain_wait(
        self, mailing_id: int, domain_wait: DomainWait, claimant: str
    ) -> None:
        if (reason := domain_wait.reason()) is not None:
            await self.steps.show_domain_limit(mailing_id, reason, domain_wait.until, claimant)

    def _claim(self, session: Session, mailing_id: int, claimant: str) -> Claim:
        """The next batch and its send slots (on a database thread)."""
        heartbeats.check_claimant(session, self.standing.holder, claimant)
        mailing = deliveries.mailing(session, mailing_id)
        if mailing is None or mailing.state != State.SENDING:
            return Claim([], done=True)  # stopped by an operator
        try:
            sending_window, now = stored_window(mailing.window), utc_now()
        except WhenError as exc:  # its zone left this machine's tz database since
            return Claim([], unsendable=f"its sending window cannot be read: {exc}")
        if sending_window is not None and not sending_window.is_open(now) and mailing.remaining:
            return Claim([], window_opens=sending_window.next_opening(now))
        closes = sending_window.next_close(now) if sending_window is not None else None
        contracted = shared_rate.contracted(session)
        if contracted and (due := shared_rate.due(session, contracted, mailing_id)) > time.time():
            return Claim([], not_before=due)
        size = self._lane_size(contracted)
        batch, held = self._claim_sendable(session, mailing_id, size, claimant)
        if batch:
            # NotDue when another claim took the slots meanwhile: this one is rolled back
            slots = (
                shared_rate.reserve(session, len(batch), contracted, mailing_id)
                if contracted
                else None
            )
            closing = closes.timestamp() if closes else math.inf
            return Claim(batch, slots, held, window_closes=closing)
        if mailing.remaining:
            return Claim([], held=held)
        # completed in a transaction of its own, which takes the transitions lock first:
        # this one holds row locks already (the lock order: core/store/locks.py)
        return Claim([], done=True, finished=True)

    def _claim_sendable(
        self, session: Session, mailing_id: int, size: int, claimant: str
    ) -> tuple[list[deliveries.Claimed], list[deliveries.Outcome]]:
        """The batch, and those its claim held back: while domains are limited, a batch
        holds only messages whose domain lets them go now (core/coordination/held_back.py),
        so that all its room goes to the relay."""
        if not self.domains.limited:
            return deliveries.claim(session, mailing_id, size, claimant=claimant), []
        sendable = held_back.claim(
            session, mailing_id, size, self.domains.held_until, claimant=claimant
        )
        return sendable.going, sendable.held

    async def _complete(self, mailing_id: int, claimant: str) -> None:
        """Completes the mailing if, read afresh under the lock, it is still sending with
        nothing remaining; logged once committed."""

        def complete(session: Session) -> bool:
            lock_transitions(session)
            heartbeats.check_claimant(session, self.standing.holder, claimant)
            return lifecycle.complete_if_done(session, mailing_id) is not None

        try:
            completed = await self.db.write(complete)
        except ClaimantLost:
            return  # the beat learns it too, and takes a new claimant
        except StoreError as exc:
            self.trouble.report("claim", exc)
            return  # the next round tries again
        if completed:  # else completed by another engine first, stopped, retried, deleted
            log.info("mailing %s: completed", mailing_id)

    async def _outside_window(
        self, mailing_id: int, opens: datetime, stopping: asyncio.Event, claimant: str
    ) -> None:
        """Outside its sending window: its row says when the window opens, and nothing is
        claimed until then (or a stop)."""
        await self.steps.show_outside_window(mailing_id, opens, claimant)
        while not self.pauses.draining and not stopping.is_set():
            left = (opens - utc_now()).total_seconds()
            if left <= 0:  # open: the row no longer says it waits
                await self.steps.clear_waiting(None, mailing_id, claimant)
                return
            # a minute at most: the wall clock may be set meanwhile
            await at_most(min(left, 60.0), stopping)

    async def _until_due(self, mailing_id: int, not_before: float, stopping: asyncio.Event) -> None:
        """Waits for the next send slot of the rate, looking again at the rate and the
        slots every reconcile interval: a raised rate brings the slot nearer (a lowered
        one, further), and the claim that follows finds the slots as they are then."""
        while not self.pauses.draining and not stopping.is_set():
            left = not_before - time.time()
            if left <= 0:
                return
            await at_most(min(left, self.settings.reconcile_seconds), stopping)
            try:
                due = await self.db.read(lambda session: _slot_due(session, mailing_id))
            except StoreError:
                continue  # the claim that follows reports it
            not_before = time.time() if due is None else due

    async def _release_unused(
        self, slots: ReservedSlots, outcomes: list[deliveries.Outcome]
    ) -> None:
        """Gives back the send slots after the batch's last message that went to the relay
        (a stop, or relay trouble, left them unused): the next claim is not pushed out."""
        used = next(
            (i + 1 for i in range(len(outcomes) - 1, -1, -1)
             if outcomes[i].status not in (deliveries.PENDING, deliveries.HELD)),
            0,
        )  # fmt: skip
        if used < slots.count:
            with contextlib.suppress(StoreError):
                await self.db.write(lambda session: shared_rate.release(session, slots, used))

    def _lane_size(self, contracted: float | None) -> int:
        """What one lane claims: the lanes of a mailing together have at most batch_size
        recipients in flight (what a crash can leave in doubt), and under a rate about
        RATED_WINDOW_SECONDS of it (so that engines and mailings take turns, and stopping
        is quick)."""
        rates = [r for r in (contracted, self.settings.rate_per_second) if r]
        in_flight = self.settings.batch_size
        if rates:
            in_flight = min(in_flight, max(1, int(min(rates) * RATED_WINDOW_SECONDS)))
        return max(1, in_flight // DISPATCH_LANES)

    async def _record(
        self, mailing_id: int, outcomes: list[deliveries.Outcome], claimant: str
    ) -> bool:
        """Records a batch's outcomes, waiting while the database cannot be written; False
        when the engine must give up on them (its claims were handed back, or it stops)."""
        while True:
            try:
                recorded = await self.db.write(
                    lambda session: deliveries.record(
                        session, mailing_id, outcomes, claimant=claimant
                    )
                )
                if not recorded.dropped:
                    self.sent += sum(o.status == deliveries.SENT for o in outcomes)
                    self.metrics.recorded(outcomes)
                break
            except StoreError as exc:
                self.trouble.report("record", exc)
                if self.pauses.draining or claimant != self.standing.claimant:
                    return False  # left in flight: handed back in doubt
                await self.pauses.pause(1.0)
        self.trouble.report("record", None)
        if recorded.check_guard:
            await self._guard(mailing_id)
        if recorded.dropped:
            # the leader handed the claims back (this engine stalled past its heartbeat),
            # or the mailing is gone: either way this dispatcher's view is stale
            log.error(
                "mailing %s: %d outcomes not recorded: their claims are no longer this"
                " engine's; it stops sending them",
                mailing_id,
                recorded.dropped,
            )
            return False
        return True

    async def _guard(self, mailing_id: int) -> None:
        """Stops the mailing if the relay refused too many of its last recipients (core/
        model/guard.py); the dispatcher then finds it stopped at its next claim."""
        try:
            reason = await self.db.write(lambda session: guard.check_refusals(session, mailing_id))
        except StoreError as exc:
            self.trouble.report("guard", exc)  # the next batch with refusals checks
            return
        self.trouble.report("guard", None)
        if reason is not None:
            log.error("mailing %s: %s", mailing_id, reason)
            self.stopping(mailing_id).set()


def _slot_due(session: Session, mailing_id: int) -> float | None:
    """When the mailing may claim its next send slot of the stored rate; None: no rate."""
    contracted = shared_rate.contracted(session)
    return None if contracted is None else shared_rate.due(session, contracted, mailing_id)
