"""The engine's sleeps: each wakes at once when the engine drains; and the rounds of its
loops, which outlive an unforeseen error."""

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVarTuple

log = logging.getLogger("sendstatus.engine")
Arguments = TypeVarTuple("Arguments")


class Pauses:
    def __init__(self) -> None:
        self.draining = False
        self._drained = asyncio.Event()  # set with draining, to wake sleepers

    def drain(self) -> None:
        """No new work starts from now on, and every pause ends at once."""
        self.draining = True
        self._drained.set()

    async def pause(self, seconds: float) -> None:
        """Sleeps, but wakes at once when the engine is told to stop."""
        await at_most(seconds, self._drained)


async def at_most(seconds: float, event: asyncio.Event) -> None:
    """Waits until ``event`` is set, ``seconds`` at most.

    (asyncio.timeout, never asyncio.wait_for: on Python 3.11, wait_for returns the event's
    result when a cancel comes in the same turn, and a cancelled loop goes on for ever.)"""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await event.wait()


async def until(event: asyncio.Event, seconds: float) -> bool:
    """Sleeps ``seconds``, or until ``event`` is set (and clears it); whether it was."""
    await at_most(seconds, event)
    woken = event.is_set()
    event.clear()
    return woken


async def surviving(step: Callable[[*Arguments], Awaitable[None]], *args: *Arguments) -> None:
    """Runs one round of a loop that must outlive an unforeseen error: without its
    heartbeat an engine would stop sending, without its sending loop it would stop
    noticing mailings."""
    try:
        await step(*args)
    except Exception:  # noqa: BLE001  logged with its traceback, for a bug report
        log.exception("unexpected error in the engine; going on")
