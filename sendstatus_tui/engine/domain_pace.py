"""Limits per recipient domain, as this engine keeps to them (``config set domain_limits``).

Each group's rate is shared by every engine: slots are reserved from its row in the
database in blocks of about HORIZON_SECONDS (coordination/domain_rate.py), at the group's
effective rate (halved by a 4.7.x deferral, recovering slowly), and handed one by one to its
messages. Its cap on messages in flight is this engine's own.

Domains interleave: a message whose group has no slot soon does not wait in its batch (the
batch would hold up the other domains' messages); it is held back, put back with a time to
be claimed again (deliveries.HELD): its slot's, or, with no slot reserved for it, one spaced
at its group's rate. That is decided as it is claimed (``admit``, on a database thread, so
that the batch committed in flight holds only messages that go now: core/coordination/
held_back.py), and again as it is sent (``turn``: a throttling may have come between); the
batch goes on without it.
"""

import asyncio
import contextlib
import itertools
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from sendstatus_tui.core.coordination import deliveries
from sendstatus_tui.core.coordination.shared_rate import ReservedSlots
from sendstatus_tui.core.model.domain_limits import DomainGroup, domain_of
from sendstatus_tui.core.store.store import StoreError

log = logging.getLogger("sendstatus.engine")
# a message waits in its batch for its group's slot at most this long; later: held back
WAIT_IN_PLACE_SECONDS = 0.02
# this engine writes a throttling of one group at most this often (the replies to the
# messages in flight when the provider began throttling are one throttling)
THROTTLE_NOTED_EVERY_SECONDS = 5.0
# slots are given to held messages (as tickets) this far ahead at most
TICKETS_AHEAD_SECONDS = 1.0
TICKETS_KEPT_SECONDS = 60.0  # a ticket whose message has not come back by then is dropped
# a message whose turn (given as it was claimed, or its ticket) comes within this stays in
# its batch and waits there for it; later, it is held back until about then. Short: its
# batch ends only once it has gone, and a lane whose batch waits sends nothing (waits of up
# to 0.25 s as it was sent cut the other domains to 0.76 of their speed in bench_routes)
ADMIT_WITHIN_SECONDS = 0.1
# a mailing none of whose messages went to a relay for this long, while its last batch held
# some back, waits for its domains' limits (a group's rate spaces its messages: shorter gaps
# are its sending, and noting each would cost a write)
DOMAIN_WAIT_SECONDS = 1.0

# reserves (group key, configured rate) slots in the database
Reserve = Callable[[str, float], Awaitable[ReservedSlots]]
# writes a throttling: (group key, domain, enhanced status, configured rate)
NoteThrottle = Callable[[str, str, str, float], Awaitable[None]]


@dataclass(frozen=True)
class Turn:
    """A message's turn in its group: go at ``at`` (epoch seconds; it waits in its batch
    until then), or, not ``go``, be held back and claimed again at ``at``."""

    at: float
    go: bool


class DomainPace:
    """One group's slots and in-flight cap in this engine.

    Slots are reserved in the background: no message waits in its batch for a database
    write (on SQLite, behind the claims and records of every mailing). A message whose slot
    lies further than WAIT_IN_PLACE_SECONDS is held back with that slot as its ticket, and
    goes when it comes back (late, never early; and never within one interval of this
    engine's last message of the group, so that tickets used late make no burst). Beyond
    TICKETS_AHEAD_SECONDS of slots it is held back without one, spaced at the rate, so that
    little is reserved at a rate a throttling may halve.

    A claim gives a message its turn: its slot (its ticket, or the next one), no sooner than
    one interval after the turn given before. The message stays in the batch when the turn
    comes within ADMIT_WITHIN_SECONDS, else it is held back until about then; either way
    the turn is kept for it, and ``turn`` finds it when a batch sends it (a turn given anew
    on each claim would be taken again and again by others claimed in between). Claims run
    on database threads and sends on the event loop: the state is changed under a lock."""

    def __init__(
        self,
        key: str,
        configured: float,
        in_flight: int | None,
        reserve: Reserve,
        loop: asyncio.AbstractEventLoop,
    ):
        self.key, self.configured, self.in_flight_cap = key, configured, in_flight
        self.in_flight = asyncio.Semaphore(in_flight) if in_flight else None
        self._reserve, self._loop = reserve, loop
        self._lock = threading.Lock()
        self._slots: ReservedSlots | None = None
        self._used = 0
        self._refilling: asyncio.Task[None] | None = None
        self._tickets: dict[int, float] = {}  # recipient id -> its slot, while held back
        self._turns: dict[int, float] = {}  # recipient id -> the turn a claim gave it
        # held back with no slot left, in the order they came: the next block's (a dict:
        # while a domain is backlogged hundreds join a second)
        self._awaiting: dict[int, None] = {}
        self._next_go = 0.0  # this engine's next message of the group, at the soonest
        self._next_turn = 0.0  # the next turn a claim gives, at the soonest
        self._promised = 0.0  # the last time a held message without a ticket comes back
        self._refill_asked = False  # a block asked for, on its way to the loop

    def turn(self, recipient_id: int, now: float) -> Turn:
        """As the message is sent (on the event loop): go, or be held back."""
        with self._lock:
            ticket = self._turns.pop(recipient_id, None)
            if ticket is None:
                ticket = self._tickets.pop(recipient_id, None)
            if ticket is not None:  # its turn: it may wait in its batch as a claim admits
                return self._go_or_hold(recipient_id, ticket, now, ADMIT_WITHIN_SECONDS)
            slot = self._take_slot(recipient_id, now)
            if slot is None:
                return Turn(self._unticketed(now), go=False)
            return self._go_or_hold(recipient_id, slot, now, WAIT_IN_PLACE_SECONDS)

    def admit(self, recipient_id: int, now: float) -> float | None:
        """As the message is claimed (on a database thread): None when its turn comes within
        ADMIT_WITHIN_SECONDS (it stays in its batch); else when it is to be claimed again."""
        with self._lock:
            turn = self._turns.get(recipient_id)
            if turn is None:
                slot = self._tickets.pop(recipient_id, None)
                if slot is None:
                    slot = self._take_slot(recipient_id, now)
                    if slot is None:
                        return self._unticketed(now)
                turn = max(slot, self._next_turn, self._next_go, now)
                self._next_turn = turn + (self._slots.interval if self._slots else 0.0)
                self._turns[recipient_id] = turn
            if turn > now + ADMIT_WITHIN_SECONDS:
                # back a little before it: it waits for its turn in a batch, not for a claim
                return turn - ADMIT_WITHIN_SECONDS / 2
            return None

    def _take_slot(self, recipient_id: int, now: float) -> float | None:
        """The next slot for a message without a ticket; None when there is none within
        TICKETS_AHEAD_SECONDS (it is held back without one)."""
        slots = self._slots
        if slots is not None:
            # slots long gone that nobody took are not caught up on: no burst at the provider
            while self._used < slots.count and slots.at(self._used) < now - slots.interval:
                self._used += 1
        if slots is None or self._used >= slots.count:
            # a block on its way gives it a ticket: it may come back late for it. In line
            # in the order of their promises (``_unticketed``): one back before its ticket
            # came goes to the end, or the ticket would wait for it while others are back
            self._awaiting.pop(recipient_id, None)
            self._awaiting[recipient_id] = None
            self._refill(now)
            return None
        at = slots.at(self._used)
        if at > now + TICKETS_AHEAD_SECONDS:
            return None
        self._awaiting.pop(recipient_id, None)  # it has its slot
        self._used += 1
        if self._used == slots.count:
            self._refill(now)  # the next block, before the next message asks
        return at

    def _go_or_hold(self, recipient_id: int, slot: float, now: float, wait: float) -> Turn:
        """Goes at its slot, but never sooner than one interval after this engine's last
        message of the group (slots used late must not make a burst); held back with its
        slot as a ticket when that is further than ``wait``."""
        at = max(slot, self._next_go)
        if at > now + wait:
            self._tickets[recipient_id] = at
            return Turn(at, go=False)
        interval = self._slots.interval if self._slots else 0.0
        self._next_go = at + interval
        return Turn(at, go=True)

    def slow_down(self) -> None:
        """Its provider throttles us: the slots and tickets at the old rate are given up,
        and the next block is reserved at the halved one (those held come back for it)."""
        with self._lock:
            self._slots, self._tickets, self._turns = None, {}, {}
            self._next_go = self._next_turn = 0.0

    def _unticketed(self, now: float) -> float:
        """When a message held back without a ticket is claimed again: such messages spaced
        at the rate, after the slots reserved."""
        per_second = self._slots.per_second if self._slots else self.configured
        start = max(now, self._slots.end if self._slots else now)
        self._promised = max(self._promised, start) + 1 / per_second
        return self._promised

    def _refill(self, now: float) -> None:
        """Asks for the next block (under the lock, on any thread: it is reserved from the
        event loop)."""
        if self._slots is not None and self._slots.end > now + TICKETS_AHEAD_SECONDS:
            return  # far enough ahead: those held come back for the slots reserved
        if not self._refill_asked:
            self._refill_asked = True
            with contextlib.suppress(RuntimeError):  # the loop closed: the engine stopped
                self._loop.call_soon_threadsafe(self._start_refill, now)

    def _start_refill(self, now: float) -> None:
        with self._lock:
            self._refill_asked = False
        if self._refilling is None or self._refilling.done():
            self._refilling = asyncio.ensure_future(self._reserve_block(now))

    async def _reserve_block(self, now: float) -> None:
        with self._lock:
            # tickets of messages that never came back (stopped, claimed by another engine)
            kept_from = now - TICKETS_KEPT_SECONDS
            self._tickets = {i: at for i, at in self._tickets.items() if at > kept_from}
            self._turns = {i: at for i, at in self._turns.items() if at > kept_from}
        try:
            slots = await self._reserve(self.key, self.configured)
        except StoreError as exc:  # its messages are held back meanwhile
            log.error("the rate of %s cannot be reserved: %s", self.key, exc)
            return
        with self._lock:
            self._slots, self._used = slots, 0
            for recipient_id in list(itertools.islice(self._awaiting, slots.count)):
                del self._awaiting[recipient_id]
                self._tickets[recipient_id] = slots.at(self._used)
                self._used += 1


class DomainLimits:
    """The groups this engine keeps to, followed as the setting changes."""

    def __init__(self, reserve: Reserve, note_throttle: NoteThrottle):
        self._reserve, self._note_throttle = reserve, note_throttle
        self._groups: dict[str, DomainGroup] = {}  # domain -> its group
        self._paces: dict[str, DomainPace] = {}  # group key -> pace
        self._by_domain: dict[str, DomainPace] = {}
        self._noted: dict[str, float] = {}  # group key -> monotonic time it was throttled
        self._notes: set[asyncio.Task[None]] = set()

    def follow(self, groups: Iterable[DomainGroup]) -> None:
        """The stored groups (a pace kept while its group's limits stay)."""
        wanted: dict[str, tuple[float, int | None]] = {}
        by_domain: dict[str, str] = {}
        self._groups = {}
        for group in groups:
            wanted[group.key] = (group.per_second, group.in_flight)
            for domain in group.domains:
                by_domain[domain] = group.key
                self._groups[domain] = group
        loop = asyncio.get_running_loop()
        for key, (per_second, in_flight) in wanted.items():
            pace = self._paces.get(key)
            if pace is None or (pace.configured, pace.in_flight_cap) != (per_second, in_flight):
                self._paces[key] = DomainPace(key, per_second, in_flight, self._reserve, loop)
        for key in set(self._paces) - set(wanted):
            del self._paces[key]
        self._by_domain = {domain: self._paces[key] for domain, key in by_domain.items()}

    @property
    def limited(self) -> bool:
        """Whether any domain is limited now."""
        return bool(self._by_domain)

    def pace_for(self, email: str) -> DomainPace | None:
        by_domain = self._by_domain  # replaced whole by ``follow``: read once (any thread)
        if not by_domain:
            return None
        return by_domain.get(domain_of(email))

    def held_until(self, recipient: deliveries.Claimed) -> datetime | None:
        """As ``recipient`` is claimed (on a database thread): None when it goes now, else
        when it is to be claimed again, held back for its group's limit (``admit``)."""
        pace = self.pace_for(recipient.email)
        back = None if pace is None else pace.admit(recipient.id, time.time())
        return None if back is None else datetime.fromtimestamp(back, UTC)

    def limit_of(self, email: str) -> str | None:
        """The limit of ``email``'s group, in words (gmail.com limit 20/s); None: none."""
        group = self._groups.get(domain_of(email))
        return group.limit if group is not None else None

    def throttled(self, email: str, status: str) -> None:
        """A 4.7.x deferral for ``email``: its group is slowed down for every engine, in the
        background; the replies that follow it closely are the same one. A domain in no
        group is not slowed: its rate is unknown, and a greylisting reply (451 4.7.1) to a
        handful of messages would otherwise crawl a whole provider; it is retried as any
        deferral is."""
        domain = domain_of(email)
        group = self._groups.get(domain)
        if group is None:
            return
        now = time.monotonic()
        noted_at = self._noted.get(group.key, -THROTTLE_NOTED_EVERY_SECONDS)
        if now - noted_at < THROTTLE_NOTED_EVERY_SECONDS:
            return
        self._noted[group.key] = now
        if (pace := self._paces.get(group.key)) is not None:
            pace.slow_down()
        log.warning("%s throttles us (%s): slowing it down", domain, status)
        note = asyncio.ensure_future(
            self._note_throttle(group.key, domain, status, group.per_second)
        )
        self._notes.add(note)
        note.add_done_callback(self._noted_done)

    def _noted_done(self, note: "asyncio.Task[None]") -> None:
        self._notes.discard(note)
        if not note.cancelled() and (error := note.exception()) is not None:
            log.error("a throttling could not be written: %s", error)


class DomainWait:
    """Whether one mailing (all its lanes) waits for its recipients' domain limits: what its
    row says (WaitingKind.DOMAIN_LIMIT) while nothing of it goes to a relay."""

    def __init__(self, limits: DomainLimits):
        self._limits = limits
        self._went_at = time.monotonic()
        # the limits holding its messages back: when the last of those comes back (epoch)
        self._held: dict[str, float] = {}
        self.until: datetime | None = None  # when the first of the last batch's comes back

    def batch(self, outcomes: list[deliveries.Outcome]) -> bool:
        """Notes a batch's outcomes; True when one went to a relay (or failed before it)."""
        went = any(o.status not in (deliveries.HELD, deliveries.PENDING) for o in outcomes)
        if went:
            self._went_at = time.monotonic()
        comebacks = [
            (o.recipient.email, o.retry_at)
            for o in outcomes
            if o.status == deliveries.HELD and o.retry_at is not None
        ]
        for email, back in comebacks:
            if (limit := self._limits.limit_of(email)) is not None:
                self._held[limit] = max(back.timestamp(), self._held.get(limit, 0.0))
        if comebacks:
            self.until = min(back for _, back in comebacks)
        return went

    def reason(self) -> str | None:
        """The limits it waits for (gmail.com limit 20/s); None: it does not wait for any."""
        now = time.time()
        self._held = {limit: back for limit, back in self._held.items() if back > now}
        if not self._held or time.monotonic() - self._went_at < DOMAIN_WAIT_SECONDS:
            return None
        return ", ".join(sorted(self._held))
