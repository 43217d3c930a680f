"""The send capacity: at most ``capacity()`` sends at once, where the capacity may change
while sending (a relay's pool of connections grows and shrinks). Waiters are served in
order."""

import asyncio
from collections import deque
from collections.abc import Callable
from types import TracebackType


class SendCapacity:
    def __init__(self, capacity: Callable[[], int]):
        self._capacity = capacity
        self._taken = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    async def __aenter__(self) -> None:
        if self._taken < self._capacity() and not self._waiters:
            self._taken += 1
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter  # its room is counted as taken when it is woken
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self._release()  # woken as it was cancelled: pass the room on
            else:
                self._waiters.remove(waiter)
            raise

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._release()

    def _release(self) -> None:
        self._taken -= 1
        # a grown capacity lets several waiters in at once
        while self._waiters and self._taken < self._capacity():
            waiter = self._waiters.popleft()
            if not waiter.done():
                self._taken += 1
                waiter.set_result(None)
