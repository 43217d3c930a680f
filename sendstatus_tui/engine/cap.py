"""This engine's own cap (``--rate``): at most so many messages a second from this engine,
whatever the rate stored for the database allows, shared by its mailings that are sending.

Messages are spaced evenly (no bursts), and waiters are served in the order they arrived
(asyncio.Lock is fair), so mailings sending at once share the cap fairly.
"""

import asyncio
import time
from collections.abc import Callable


class EngineCap:
    """Hands out permissions to send, at most ``per_second`` of them a second."""

    def __init__(self, per_second: float | None, clock: Callable[[], float] = time.monotonic):
        self.per_second = per_second
        self._interval = 1 / per_second if per_second else 0.0
        self._clock = clock
        self._next = 0.0
        self._lock = asyncio.Lock()

    async def wait_turn(self) -> None:
        if not self.per_second:
            return
        async with self._lock:
            delay = self._next - self._clock()
            if delay > 0:
                await asyncio.sleep(delay)
            # keep to the schedule despite sleep overshoot, but after an idle spell start
            # again from now (at most one message early): no catch-up burst
            self._next = max(self._next, self._clock() - self._interval) + self._interval
