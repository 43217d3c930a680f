"""The engine's waits end when their task is cancelled, even when what they wait for comes
in the same turn of the loop as the cancel: Python 3.11's asyncio.wait_for returned the
result then, and the engine's loops, cancelled at its stop, went on for ever (an engine
thread that never stopped; a stopping engine that kept leading)."""

import asyncio
from collections.abc import Awaitable, Callable

from sendstatus_tui.engine.pauses import Pauses, until


def rounds_after_a_cancel(wait: Callable[[], Awaitable[object]], wake: Callable[[], None]):
    """Runs ``wait()`` in a loop, then wakes it and cancels the loop in one turn: (whether
    the loop ended cancelled within a second, its rounds after that)."""

    async def main() -> tuple[bool, int]:
        rounds = [0]

        async def loop() -> None:
            while rounds[0] < 1000:  # a loop that swallows every cancel ends all the same
                await wait()
                rounds[0] += 1

        task = asyncio.create_task(loop())
        await asyncio.sleep(0.01)  # it waits
        wake()
        task.cancel()
        await asyncio.wait({task}, timeout=1.0)
        ended = task.cancelled()
        await asyncio.wait({task}, timeout=5.0)
        return ended, rounds[0]

    return asyncio.run(main())


def test_until_ends_when_cancelled_as_its_event_is_set():
    event = asyncio.Event()
    assert rounds_after_a_cancel(lambda: until(event, 10.0), event.set) == (True, 0)


def test_a_pause_ends_when_cancelled_as_the_engine_drains():
    pauses = Pauses()
    assert rounds_after_a_cancel(lambda: pauses.pause(10.0), pauses.drain) == (True, 0)
