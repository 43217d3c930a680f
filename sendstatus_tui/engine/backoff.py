"""Waiting for a relay that is down."""

import logging
from collections.abc import Awaitable, Callable

from sendstatus_tui.core.model.retry_policy import RelayWaits, RetryPolicy

log = logging.getLogger("sendstatus.engine")


class RelayBackoff:
    """Waits between attempts to reach a relay that is down, as the retry policy says (1 s,
    doubling, up to a cap)."""

    def __init__(self, retries: RetryPolicy, pause: Callable[[float], Awaitable[None]]):
        self._waits, self._pause = RelayWaits(retries), pause

    @property
    def next_seconds(self) -> float:
        return self._waits.next_seconds

    def reset(self) -> None:
        self._waits.reset()

    async def wait(self, mailing_id: int, trouble: str) -> None:
        """Waits after ``trouble`` (the relay's verdict, in words)."""
        log.warning(
            "mailing %s: relay unavailable (%s); retrying in %.1f s",
            mailing_id,
            trouble,
            self.next_seconds,
        )
        await self._pause(self._waits.failed())
