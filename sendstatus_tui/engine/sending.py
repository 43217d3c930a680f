"""Hands one claimed batch to the relay: through the pool of connections, in its send slots
and under this engine's cap, with a bounded end.

Every recipient of the batch comes back with an outcome, whatever happens: sent, failed,
deferred, in doubt (the message went out and no reply came), or handed back untried. When
the mailing is stopped or the engine drains, no new message goes out; those already in the
relay's hands get a grace period plus one relay timeout to be answered, and whatever is
still unanswered then is cancelled and counted in doubt.
"""

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from typing import Any

from sendstatus_tui.core.coordination import deliveries
from sendstatus_tui.core.coordination.deliveries import Claimed, Outcome
from sendstatus_tui.core.coordination.shared_rate import ReservedSlots
from sendstatus_tui.core.model.models import FailureClass, utc_now
from sendstatus_tui.core.model.retry_policy import RetryPolicy
from sendstatus_tui.core.model.verdict import RelayVerdict, SendVerdict
from sendstatus_tui.engine.cap import EngineCap
from sendstatus_tui.engine.capacity import SendCapacity
from sendstatus_tui.engine.domain_pace import DomainLimits, DomainPace
from sendstatus_tui.engine.message import Template, render
from sendstatus_tui.engine.metrics import NoMetrics
from sendstatus_tui.engine.routes import Routes
from sendstatus_tui.engine.smtp.errors import RelayError
from sendstatus_tui.engine.smtp.verdict import verdict_of

log = logging.getLogger("sendstatus.engine")


class BatchSender:
    """Sends batches for every mailing of one engine; the pool and the cap are shared.

    Each message waits for its domain's turn (engine/domain_pace.py; held back when that
    is not soon), its slot of the database's shared rate (reserved with the batch's claim),
    then for its turn at this engine's own cap (``--rate``), if any."""

    def __init__(
        self,
        transport: Routes,
        cap: EngineCap,
        retries: RetryPolicy,
        grace_seconds: float,
        metrics: NoMetrics | None = None,
        domains: DomainLimits | None = None,
    ):
        self.transport = transport
        self.domains = domains
        self.metrics = metrics or NoMetrics()
        self.cap = cap
        self.retries = retries
        self._grace_seconds = grace_seconds
        # a send waits for room in the transport before it takes its turn under the cap, so
        # that turns do not pile up while the relay is slow and go out in a burst later
        self._capacity = SendCapacity(lambda: transport.capacity)

    @property
    def stop_bound(self) -> float:
        """How long a stop waits for the messages in the relays' hands before cancelling
        them."""
        return self._grace_seconds + self.transport.reply_timeout

    async def send(
        self,
        template: Template,
        batch: list[Claimed],
        may_hand_over: Callable[[], bool],
        stop: asyncio.Event,
        slots: ReservedSlots | None = None,
        relays: tuple[str, ...] | None = None,
    ) -> tuple[list[Outcome], RelayVerdict | None]:
        """Sends ``batch``; returns an outcome per recipient, and the verdict of the first
        relay trouble seen (``about_relay``), if any.

        ``may_hand_over`` is asked before each message goes to the relay; ``stop`` is set
        when the mailing is stopped or the engine drains. If the caller is cancelled, the
        outcomes are lost with it: the claims stay in flight, to be handed back in doubt."""
        handed: set[int] = set()
        claimed = time.monotonic()  # the batch was claimed just before
        # the batch's slots in the order its messages come to them: one held back for its
        # domain takes none
        indexes = itertools.count()
        sends = [
            asyncio.create_task(
                self._send_one(
                    template, r, may_hand_over, handed, slots, indexes, stop, claimed, relays
                )
            )
            for r in batch
        ]
        try:
            await self._until_answered(sends, stop, batch, handed)
        except asyncio.CancelledError:
            for task in sends:
                task.cancel()
            await asyncio.gather(*sends, return_exceptions=True)
            raise
        outcomes: list[Outcome] = []
        trouble: RelayVerdict | None = None
        for recipient, task in zip(batch, sends, strict=True):
            if task.cancelled():
                outcomes.append(_unanswered(recipient, handed))
                continue
            outcome, verdict = task.result()
            outcomes.append(outcome)
            if trouble is None and verdict is not None and verdict.about_relay:
                trouble = verdict
        return outcomes, trouble

    async def _until_answered(
        self,
        sends: list[asyncio.Task[tuple[Outcome, RelayVerdict | None]]],
        stop: asyncio.Event,
        batch: list[Claimed],
        handed: set[int],
    ) -> None:
        everything = asyncio.gather(*sends, return_exceptions=True)
        stopped = asyncio.ensure_future(stop.wait())
        answered_or_stopped: set[asyncio.Future[Any]] = {everything, stopped}
        try:
            await asyncio.wait(answered_or_stopped, return_when=asyncio.FIRST_COMPLETED)
            if not everything.done():
                await asyncio.wait({everything}, timeout=self.stop_bound)
            if not everything.done():
                # those never handed to the relay go back to pending, untried
                unanswered = sum(
                    not task.done() and recipient.id in handed
                    for recipient, task in zip(batch, sends, strict=True)
                )
                if unanswered:
                    log.warning(
                        "%d sends still unanswered %.0f s after the stop: cancelled, in doubt",
                        unanswered,
                        self.stop_bound,
                    )
                for task in sends:
                    task.cancel()
                await everything
        finally:
            stopped.cancel()

    async def _send_one(
        self,
        template: Template,
        recipient: Claimed,
        may_hand_over: Callable[[], bool],
        handed: set[int],
        slots: ReservedSlots | None,
        indexes: "itertools.count[int]",
        stop: asyncio.Event,
        claimed: float,
        relays: tuple[str, ...] | None,
    ) -> tuple[Outcome, RelayVerdict | None]:
        try:
            message = render(template, recipient.id, recipient.email, recipient.field_values)
        except (KeyError, ValueError, UnicodeError) as exc:
            return _failed(recipient, f"cannot build the message: {exc}", FailureClass.ERROR), None
        pace = self.domains.pace_for(recipient.email) if self.domains else None
        in_flight = pace.in_flight if pace is not None else None
        async with in_flight or contextlib.nullcontext(), self._capacity:
            # its domain's turn as late as may be, so that the domain's provider sees the
            # messages spaced as their slots are (not a burst after a wait for the relay)
            if pace is not None and may_hand_over():
                held = await _domain_turn(pace, recipient, stop)
                if held is not None:
                    return held, None
            # a stop ends the waits for a slot and for the cap at once: what has not gone to
            # the relay goes back to pending, and the slots to the rate
            if slots is not None and may_hand_over():
                await slots.wait(next(indexes), stop)
            # no cap, no turn: two tasks and their waits spared on every message
            if self.cap.per_second and may_hand_over() and not stop.is_set():
                await _unless_stopped(self.cap.wait_turn(), stop)
            if not may_hand_over():
                return Outcome(recipient, deliveries.PENDING), None
            handed.add(recipient.id)
            handing = time.monotonic()
            self.metrics.handed_over(handing - claimed)
            answer = await self._hand_over(template, recipient, message, relays)
            self.metrics.replied(time.monotonic() - handing, answer[0].relay)
            return answer

    async def _hand_over(
        self,
        template: Template,
        recipient: Claimed,
        message: bytes,
        relays: tuple[str, ...] | None,
    ) -> tuple[Outcome, RelayVerdict | None]:
        """The recipient's outcome, and the verdict when it was not sent."""
        try:
            sender = template.envelope_sender(recipient.id)
            reply, relay = await self.transport.send(sender, recipient.email, message, relays)
        except RelayError as exc:
            verdict = verdict_of(exc)
            return self._outcome(recipient, verdict, exc.relay), verdict
        except Exception as exc:  # noqa: BLE001  an unforeseen relay error must not lose anyone
            # it may have happened after the message went out: in doubt, so retries are bounded
            log.exception("unexpected error sending to recipient %s", recipient.id)
            verdict = verdict_of(exc)
            return self._outcome(recipient, verdict, None), verdict
        return Outcome(recipient, deliveries.SENT, reply, relay=relay), None

    def _outcome(self, recipient: Claimed, verdict: RelayVerdict, relay: str | None) -> Outcome:
        """What a send that did not go through comes to for its recipient."""
        match verdict.verdict:
            case SendVerdict.DEFERRED:
                if verdict.throttles_domain and self.domains is not None:
                    # only its domain slows down
                    self.domains.throttled(recipient.email, verdict.status or "4.7.0")
                return self._deferred(recipient, verdict.text, relay)
            case SendVerdict.REFUSED:
                failure_class = verdict.failure_class or ""
                return _failed(recipient, verdict.text, failure_class, relay, verdict.unknown_user)
            case SendVerdict.IN_DOUBT:
                return Outcome(recipient, deliveries.IN_DOUBT, verdict.text, relay=relay)
            case _:  # untried (no relay took it): pending again
                return Outcome(recipient, deliveries.PENDING)

    def _deferred(self, recipient: Claimed, reply: str, relay: str | None) -> Outcome:
        attempt = recipient.attempts + 1
        if self.retries.gives_up(attempt):
            return _failed(
                recipient,
                f"gave up after {attempt} attempts: {reply}",
                FailureClass.DEFERRED_TOO_OFTEN,
                relay,
            )
        retry_at = utc_now() + self.retries.retry_after(attempt)
        return Outcome(recipient, deliveries.DEFERRED, reply, retry_at, relay=relay)


async def _domain_turn(pace: DomainPace, recipient: Claimed, stop: asyncio.Event) -> Outcome | None:
    """Waits for the recipient's slot of its domain's rate; when that is not soon, the
    outcome that holds it back instead (it takes no slot of the database's rate then)."""
    turn = pace.turn(recipient.id, time.time())
    if not turn.go:  # not soon: the others of the batch do not wait for it
        return Outcome(recipient, deliveries.HELD, retry_at=datetime.fromtimestamp(turn.at, UTC))
    await ReservedSlots(turn.at, 1.0).wait(0, stop)
    return None


async def _unless_stopped(wait: Coroutine[Any, Any, None], stop: asyncio.Event) -> None:
    """Awaits ``wait``, or cancels it as soon as ``stop`` is set."""
    waiting = asyncio.ensure_future(wait)
    stopped = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({waiting, stopped}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (waiting, stopped):
            task.cancel()
        await asyncio.gather(waiting, stopped, return_exceptions=True)


def _failed(
    recipient: Claimed,
    reply: str,
    failure_class: str,
    relay: str | None = None,
    unknown_user: bool = False,
) -> Outcome:
    return Outcome(recipient, deliveries.FAILED, reply, None, failure_class, relay, unknown_user)


def _unanswered(recipient: Claimed, handed: set[int]) -> Outcome:
    """A send cancelled by a bounded stop: in doubt once handed to the relay."""
    if recipient.id in handed:
        return Outcome(recipient, deliveries.IN_DOUBT, "no reply before the engine stopped waiting")
    return Outcome(recipient, deliveries.PENDING)
