"""One contracted rate per database, shared by every engine and every mailing sending.

The stored ``rate`` setting (``sendstatus config set rate 36000/h``) is a sequence of send
slots, one every 1/rate seconds. An engine that claims a batch reserves as many
consecutive slots in the same transaction, by moving the one ``NextSlot`` row on, and
hands each message to the relay no earlier than its slot. Since slots are never given
twice, all engines together never send more than the rate since the first slot (a message
late for its slot goes out late, never early). Slots nobody reserved while nothing was
sending are not caught up on: a reservation starts at the earliest now.

Slot times are seconds since the epoch on each engine's clock: engines on several
machines need their clocks in step (NTP), as for their heartbeats.
"""

import asyncio
import time
from dataclasses import dataclass

from sqlmodel import Session

from sendstatus_tui.core.model import settings
from sendstatus_tui.core.model.models import NextSlot
from sendstatus_tui.core.model.rates import parse_rate

RATE_ROW = "rate"  # the name of the one NextSlot row


@dataclass(frozen=True)
class ReservedSlots:
    """Consecutive send slots reserved for one batch: the first, and the spacing."""

    first_at: float  # seconds since the epoch
    interval: float

    def at(self, index: int) -> float:
        return self.first_at + index * self.interval

    async def wait(self, index: int) -> None:
        """Until the slot of the batch's message number ``index`` has come."""
        delay = self.at(index) - time.time()
        if delay > 0:
            await asyncio.sleep(delay)


def contracted(session: Session) -> float | None:
    """The stored rate in messages a second; None when sending is not limited."""
    return parse_rate(settings.read(session, "rate"))


def reserve(
    session: Session, count: int, per_second: float, now: float | None = None
) -> ReservedSlots:
    """Reserves ``count`` consecutive slots at ``per_second``, in the caller's transaction
    (the row stays locked until it ends, so that two engines never get the same slot)."""
    now = time.time() if now is None else now
    row = session.get(NextSlot, RATE_ROW, with_for_update=True)
    if row is None:
        row = NextSlot(name=RATE_ROW, next_slot_at=now)
    interval = 1 / per_second
    first = max(row.next_slot_at, now)
    row.next_slot_at = first + count * interval
    session.add(row)
    session.flush()
    return ReservedSlots(first, interval)
