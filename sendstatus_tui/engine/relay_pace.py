"""A relay's own rate (``relay add NAME --rate``), as this engine keeps to it: send slots
reserved from the relay's row, shared by every engine (core/coordination/shared_rate.py), in
blocks of about HORIZON_SECONDS, and handed one by one to the messages routed to the relay."""

import asyncio
from collections.abc import Awaitable, Callable

from sendstatus_tui.core.coordination.shared_rate import HORIZON_SECONDS, ReservedSlots

# reserves (relay, per second, count) in the database
Reserve = Callable[[str, float, int], Awaitable[ReservedSlots]]


class RelayPace:
    def __init__(self, relay: str, per_second: float, reserve: Reserve):
        self.relay = relay
        self.per_second = per_second
        self._reserve = reserve
        self._block = max(1, int(per_second * HORIZON_SECONDS))
        self._slots: ReservedSlots | None = None
        self._used = 0
        self._lock = asyncio.Lock()

    async def wait_turn(self) -> None:
        """Until this message's slot of the relay's rate has come."""
        async with self._lock:  # one reservation at a time; slots in the order asked
            if self._slots is None or self._used >= self._slots.count:
                self._slots = await self._reserve(self.relay, self.per_second, self._block)
                self._used = 0
            slots, index = self._slots, self._used
            self._used += 1
        await slots.wait(index)
