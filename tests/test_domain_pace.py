"""A group's pace as claims ask it (engine/domain_pace.py): a turn given to a message at its
claim is kept for it while it is held back, and those waiting for a block of slots get
their tickets in the order they will come back. Times are given, slots reserved by a fake."""

import asyncio

import pytest

from sendstatus_tui.core.coordination.shared_rate import ReservedSlots
from sendstatus_tui.engine.domain_pace import ADMIT_WITHIN_SECONDS, DomainPace

T = 1_000_000.0  # the claims' clock, epoch seconds


class Blocks:
    """Reserves blocks of ``count`` slots at ``per_second``, one after the other from T."""

    def __init__(self, per_second: float, count: int):
        self.per_second, self.count, self.next_at = per_second, count, T

    async def __call__(self, key: str, configured: float) -> ReservedSlots:
        slots = ReservedSlots(self.next_at, self.per_second, self.count)
        self.next_at = slots.end
        return slots


async def reserved() -> None:
    """Lets the pace reserve the block it asked for (on the event loop)."""
    for _ in range(5):
        await asyncio.sleep(0)


def test_a_turn_given_at_a_claim_is_kept_while_its_message_is_held_back():
    async def scenario() -> None:
        pace = DomainPace("g", 10.0, None, Blocks(10.0, 5), asyncio.get_running_loop())
        assert pace.admit(1, T) is not None  # no slots yet: held back, a block asked for
        await reserved()  # slots at T, T + 0.1, ... T + 0.4: T is 1's ticket
        assert pace.admit(2, T) is None  # T + 0.1: goes now
        back = pace.admit(3, T)  # T + 0.2: held back until a little before it
        assert back is not None and T + 0.1 < back < T + 0.2
        assert pace.admit(4, back) is not None  # T + 0.3, claimed meanwhile
        assert pace.admit(3, back) is None  # back: its turn is still its own
        turn = pace.turn(3, back)
        assert turn.go and turn.at == pytest.approx(T + 0.2)
        # 1 came back late: it goes after the turns given since, not before them
        assert pace.admit(1, T + 0.2) == pytest.approx(T + 0.4 - ADMIT_WITHIN_SECONDS / 2)

    asyncio.run(scenario())


def test_a_message_back_before_its_ticket_goes_to_the_end_of_the_line():
    """Else the next block's ticket would go to it while it is away again, and those
    waiting behind it would come back to find none: the group starved."""

    async def scenario() -> None:
        pace = DomainPace("g", 10.0, None, Blocks(10.0, 1), asyncio.get_running_loop())
        assert pace.admit(1, T) is not None
        assert pace.admit(2, T) is not None
        assert pace.admit(1, T + 0.1) is not None  # back before any block came
        await reserved()  # one slot: 2's, first in line now
        assert pace.admit(2, T + 0.1) is None
        assert pace.admit(1, T + 0.1) is not None

    asyncio.run(scenario())


def test_a_message_waits_in_its_batch_no_longer_than_a_claim_would_admit_it():
    """Its turn pushed back as it is sent (another message of its group went first, from
    the other lane's batch): it is held back with that turn as its ticket rather than wait
    in its batch, which ends, and lets its lane claim again, only once it has gone."""

    async def scenario() -> None:
        pace = DomainPace("g", 10.0, None, Blocks(10.0, 5), asyncio.get_running_loop())
        assert pace.admit(1, T) is not None  # no slots yet: a block asked for, 1's ticket T
        await reserved()
        assert pace.admit(2, T) is None  # its turn: T + 0.1
        back = pace.admit(3, T + 0.05)  # T + 0.2: held back until a little before it
        assert back is not None and pace.admit(3, back) is None
        assert pace.turn(3, back).go  # goes at T + 0.2: the group's next at T + 0.3
        turn = pace.turn(2, back)  # its turn at T + 0.1 is now T + 0.3, beyond the bound
        assert back + ADMIT_WITHIN_SECONDS < T + 0.3
        assert not turn.go and turn.at == pytest.approx(T + 0.3)

    asyncio.run(scenario())
