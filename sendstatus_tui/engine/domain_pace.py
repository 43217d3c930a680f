"""Limits per recipient domain, as this engine keeps to them (``config set domain_limits``).

Each group's rate is shared by every engine: slots are reserved from its row in the
database in blocks of about HORIZON_SECONDS (coordination/domain_rate.py), at the group's
effective rate (halved by a 4.7.x deferral, recovering slowly), and handed one by one to its
messages. Its cap on messages in flight is this engine's own.

Domains interleave: a message whose group has no slot within WAIT_IN_PLACE_SECONDS does not
wait in its batch (the batch would hold up the other domains' messages); it is held back,
its claim recorded with a time to be claimed again (deliveries.HELD), spaced at its group's
rate, and the batch goes on without it.
"""

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable

from sendstatus_tui.core.coordination.domain_rate import Throttle
from sendstatus_tui.core.coordination.shared_rate import ReservedSlots
from sendstatus_tui.core.model.domain_limits import DomainGroup, domain_of, pace_key

log = logging.getLogger("sendstatus.engine")
# a message waits in its batch for its group's slot at most this long; later: held back
WAIT_IN_PLACE_SECONDS = 0.02
# this engine writes a throttling of one group at most this often (the replies to the
# messages in flight when the provider began throttling are one throttling)
THROTTLE_NOTED_EVERY_SECONDS = 5.0
RATE_SPAN_SECONDS = 10.0  # what the rate a domain is sent at is measured over

# reserves (group key, configured rate) slots in the database; None: not limited any more
Reserve = Callable[[str, float | None], Awaitable[ReservedSlots | None]]
# writes a throttling: (group key, domain, enhanced status, configured rate, rate sent at)
NoteThrottle = Callable[[str, str, str, float | None, float], Awaitable[None]]


class DomainPace:
    """One group's (or one throttled domain's) slots and in-flight cap in this engine."""

    def __init__(self, key: str, configured: float | None, in_flight: int | None, reserve: Reserve):
        self.key, self.configured, self.in_flight_cap = key, configured, in_flight
        self.in_flight = asyncio.Semaphore(in_flight) if in_flight else None
        self._reserve = reserve
        self._slots: ReservedSlots | None = None
        self._used = 0
        self._lock = asyncio.Lock()
        self._promised = 0.0  # the last time a held message was told to come back at

    async def turn(self, now: float) -> float | None:
        """The epoch time of this message's slot, when it comes within
        WAIT_IN_PLACE_SECONDS (the message is then counted); None: hold it back."""
        async with self._lock:  # one reservation at a time; slots in the order asked
            if self._slots is None or self._used >= self._slots.count:
                if self._slots is not None and self._slots.end > now + WAIT_IN_PLACE_SECONDS:
                    return None  # what a reservation would give lies further still
                slots = await self._reserve(self.key, self.configured)
                if slots is None:
                    return now  # a throttled domain recovered: no limit
                self._slots, self._used = slots, 0
            at = self._slots.at(self._used)
            if at > now + WAIT_IN_PLACE_SECONDS:
                return None
            self._used += 1
            return at

    def hold_until(self, now: float) -> float:
        """When a message held back now is claimed again: held ones spaced at the rate."""
        per_second = self._slots.per_second if self._slots else self.configured or 1.0
        start = max(now, self._slots.end if self._slots else now)
        self._promised = max(self._promised, start) + 1 / per_second
        return self._promised


class DomainLimits:
    """The groups this engine keeps to, followed as the setting and the throttlings
    change."""

    def __init__(self, reserve: Reserve, note_throttle: NoteThrottle):
        self._reserve, self._note_throttle = reserve, note_throttle
        self._groups: dict[str, DomainGroup] = {}  # domain -> its group
        self._paces: dict[str, DomainPace] = {}  # group key (or domain key) -> pace
        self._by_domain: dict[str, DomainPace] = {}
        self._noted: dict[str, float] = {}  # group key -> monotonic time it was throttled
        self._notes: set[asyncio.Task[None]] = set()
        # messages sent per domain, this span and the last (the rate of a domain in no group
        # when it is throttled)
        self._counts: Counter[str] = Counter()
        self._last_counts: Counter[str] = Counter()
        self._span_began = time.monotonic()

    def follow(self, groups: Iterable[DomainGroup], throttles: Iterable[Throttle]) -> None:
        """The stored groups, and the domains in no group that are throttled now."""
        wanted: dict[str, tuple[float | None, int | None]] = {}
        by_domain: dict[str, str] = {}
        self._groups = {}
        for group in groups:
            wanted[group.key] = (group.per_second, group.in_flight)
            for domain in group.domains:
                by_domain[domain] = group.key
                self._groups[domain] = group
        for throttle in throttles:
            if throttle.key not in wanted:  # a domain in no group, slowed down
                wanted[throttle.key] = (None, None)
                by_domain[throttle.domain] = throttle.key
        for key, (per_second, in_flight) in wanted.items():
            pace = self._paces.get(key)
            if pace is None or (pace.configured, pace.in_flight_cap) != (per_second, in_flight):
                self._paces[key] = DomainPace(key, per_second, in_flight, self._reserve)
        for key in set(self._paces) - set(wanted):
            del self._paces[key]
        self._by_domain = {domain: self._paces[key] for domain, key in by_domain.items()}

    def pace_for(self, email: str) -> DomainPace | None:
        if not self._by_domain:
            return None
        return self._by_domain.get(domain_of(email))

    def sent(self, email: str) -> None:
        """Counts a message handed to the relay, by its domain."""
        now = time.monotonic()
        if now - self._span_began >= RATE_SPAN_SECONDS:
            self._last_counts, self._counts, self._span_began = self._counts, Counter(), now
        self._counts[domain_of(email)] += 1

    def throttled(self, email: str, status: str) -> None:
        """A 4.7.x deferral for ``email``: its group (or its domain) is slowed down for every
        engine, in the background; the replies that follow it closely are the same one."""
        domain = domain_of(email)
        group = self._groups.get(domain)
        key = group.key if group else pace_key(domain)
        now = time.monotonic()
        if now - self._noted.get(key, -THROTTLE_NOTED_EVERY_SECONDS) < THROTTLE_NOTED_EVERY_SECONDS:
            return
        self._noted[key] = now
        log.warning("%s throttles us (%s): slowing it down", domain, status)
        sending_at = (self._counts[domain] + self._last_counts[domain]) / (
            now - self._span_began + RATE_SPAN_SECONDS
        )
        note = asyncio.ensure_future(
            self._note_throttle(
                key, domain, status, group.per_second if group else None, sending_at
            )
        )
        self._notes.add(note)
        note.add_done_callback(self._noted_done)

    def _noted_done(self, note: "asyncio.Task[None]") -> None:
        self._notes.discard(note)
        if not note.cancelled() and (error := note.exception()) is not None:
            log.error("a throttling could not be written: %s", error)
