"""One contracted rate per database, shared by every engine and every mailing sending.

The stored ``rate`` setting (``sendstatus config set rate 36000/h``) is a sequence of send
slots, one every 1/rate seconds. An engine that claims a batch reserves as many
consecutive slots in the same transaction, by moving the one ``NextSlot`` row on, and
hands each message to the relay no earlier than its slot. Since slots are never given
twice, all engines together never send more than the rate since the first slot (a message
late for its slot goes out late, never early). Slots nobody reserved while nothing was
sending are not caught up on: a reservation starts at the earliest now.

A change of the rate takes effect within a second, both ways: slots are reserved only
``HORIZON_SECONDS`` ahead (a claim whose first slot lies further is not due yet, and waits),
so that little is ever reserved at the old spacing; and the row keeps the rate its last
slots were reserved at, so that the next slot after a change is the last one reserved plus
the new spacing, not the old. Slots a batch does not use (a stop) are given back when no
reservation followed them.

A relay with a rate of its own (``sendstatus relay add NAME --rate``) has a row of its own,
reserved from in small blocks by each engine as its messages go to that relay
(``reserve_for_relay``); so has each group of recipient domains with a limit
(coordination/domain_rate.py): a message goes out when the database's rate, its relay's
rate, its domain's and its engine's cap all allow it.

Slot times are seconds since the epoch on each engine's clock: engines on several
machines need their clocks in step (NTP), as for their heartbeats.
"""

import asyncio
import time
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session

from sendstatus_tui.core.model import settings
from sendstatus_tui.core.model.models import NextSlot
from sendstatus_tui.core.model.rates import parse_rate

RATE_ROW = "rate"  # the name of the one NextSlot row
# how far ahead of now slots are reserved: what a rate change leaves at the old spacing
HORIZON_SECONDS = 0.5
# the mailing that got the last slots claims the next ones this much later, so that
# another mailing waiting for them gets them first: mailings sending at once take turns
# (slots are reserved HORIZON_SECONDS ahead, so that a mailing alone loses nothing)
TURN_SECONDS = 0.05


@dataclass(frozen=True)
class ReservedSlots:
    """Consecutive send slots reserved for one batch: the first, the rate they are spaced
    at, how many."""

    first_at: float  # seconds since the epoch
    per_second: float
    count: int = 1

    @property
    def interval(self) -> float:
        return 1 / self.per_second

    def at(self, index: int) -> float:
        return self.first_at + index * self.interval

    @property
    def end(self) -> float:
        """The slot after the last one: where the NextSlot row was moved to."""
        return self.at(self.count)

    async def wait(self, index: int, stop: asyncio.Event | None = None) -> bool:
        """Until the slot of the batch's message number ``index`` has come; False when
        ``stop`` was set first."""
        delay = self.at(index) - time.time()
        if stop is None:
            if delay > 0:
                await asyncio.sleep(delay)
            return True
        if delay > 0 and not stop.is_set():
            try:
                async with asyncio.timeout(delay):
                    await stop.wait()
            except TimeoutError:
                return True
        return not stop.is_set()


class NotDue(Exception):  # noqa: N818  a state, not a failure
    """No slot can be reserved before ``due`` (epoch seconds): the caller's transaction is
    rolled back (whatever it claimed goes back), and it claims again then."""

    def __init__(self, due: float):
        super().__init__(f"the next send slot is due at {due:.3f}")
        self.due = due


def contracted(session: Session) -> float | None:
    """The stored rate in messages a second; None when sending is not limited."""
    return parse_rate(settings.read(session, "rate"))


def _first_free(row: NextSlot | None, per_second: float, now: float) -> float:
    """The first slot a reservation at ``per_second`` gets: after the last one reserved,
    spaced at the rate it is reserved at now."""
    if row is None:
        return now
    first = row.next_slot_at
    if row.per_second and row.per_second != per_second:
        first += 1 / per_second - 1 / row.per_second
    return max(first, now)


def _due(row: NextSlot | None, first: float, mailing_id: int) -> float:
    turn = TURN_SECONDS if row is not None and row.mailing_id == mailing_id else 0.0
    return first - HORIZON_SECONDS + turn


def due(session: Session, per_second: float, mailing_id: int, now: float | None = None) -> float:
    """When a claim for ``mailing_id`` may reserve its first slot (epoch seconds; now or
    earlier: at once). A plain read, for a claimer waiting its turn."""
    now = time.time() if now is None else now
    row = session.get(NextSlot, RATE_ROW)
    return _due(row, _first_free(row, per_second, now), mailing_id)


def reserve(
    session: Session, count: int, per_second: float, mailing_id: int, now: float | None = None
) -> ReservedSlots:
    """Reserves ``count`` consecutive slots at ``per_second`` for ``mailing_id``, in the
    caller's transaction (the row stays locked until it ends, so that two engines never get
    the same slot). Raises NotDue when they are not due yet (see ``due``)."""
    now = time.time() if now is None else now
    row = locked_row(session, now)
    first = _first_free(row, per_second, now)
    if (due_at := _due(row, first, mailing_id)) > now:
        raise NotDue(due_at)
    slots = ReservedSlots(first, per_second, count)
    row.next_slot_at, row.per_second, row.mailing_id = slots.end, per_second, mailing_id
    session.add(row)
    session.flush()
    return slots


def relay_row(relay: str) -> str:
    """The NextSlot row of a relay's own rate (``relay add NAME --rate``)."""
    return f"relay:{relay}"  # names are short enough (core/model/relays.py)


def reserve_for_relay(
    session: Session, relay: str, count: int, per_second: float, now: float | None = None
) -> ReservedSlots:
    """Reserves ``count`` consecutive slots of a relay's own rate, shared by every engine as
    the database's is, in the caller's transaction. They may lie ahead: each engine reserves
    about HORIZON_SECONDS of them at a time, and its messages to the relay wait for them."""
    return reserve_ahead(session, relay_row(relay), count, per_second, now)


def reserve_ahead(
    session: Session, name: str, count: int, per_second: float, now: float | None = None
) -> ReservedSlots:
    """Reserves ``count`` consecutive slots of the NextSlot row ``name`` (a relay's or a
    domain group's own rate), in the caller's transaction."""
    now = time.time() if now is None else now
    row = locked_row(session, now, name)
    slots = ReservedSlots(_first_free(row, per_second, now), per_second, count)
    row.next_slot_at, row.per_second = slots.end, per_second
    session.add(row)
    session.flush()
    return slots


def release(session: Session, slots: ReservedSlots, used: int) -> bool:
    """Gives back the slots of ``slots`` from number ``used`` on (a stop left them unused),
    when no reservation followed them: the next claim, of any mailing or engine, is not
    pushed out by them. Says whether it did (else they are lost: at most one claim's)."""
    if used >= slots.count:
        return False
    row = session.get(NextSlot, RATE_ROW, with_for_update=True, populate_existing=True)
    if row is None or row.next_slot_at != slots.end or row.per_second != slots.per_second:
        return False
    row.next_slot_at = slots.at(used)
    session.add(row)
    return True


def locked_row(session: Session, now: float, name: str = RATE_ROW) -> NextSlot:
    """The NextSlot row ``name``, locked. The migration creates the database's; should one
    be missing (a relay's, at its first use), it is created without a race (two engines at
    once: neither fails on the other's row)."""
    # populate_existing: the values as locked, not those an earlier read of this
    # transaction left in the session (two engines would get the same slots)
    row = session.get(NextSlot, name, with_for_update=True, populate_existing=True)
    if row is not None:
        return row
    table = sa.table("send_pace", sa.column("name"), sa.column("next_slot_at"))
    values = {"name": name, "next_slot_at": now}
    if session.get_bind().dialect.name == "postgresql":
        statement: sa.Executable = (
            postgresql.insert(table).values(values).on_conflict_do_nothing(index_elements=["name"])
        )
    else:
        statement = sqlite.insert(table).values(values).on_conflict_do_nothing(["name"])
    session.execute(statement)
    return session.get_one(NextSlot, name, with_for_update=True, populate_existing=True)
