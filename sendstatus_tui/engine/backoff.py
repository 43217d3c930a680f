"""Waiting for a relay that is down."""

import logging
from collections.abc import Awaitable, Callable

from sendstatus_tui.engine.smtp.errors import RelayUnavailable

log = logging.getLogger("sendstatus.engine")


class RelayBackoff:
    """Waits between attempts to reach a relay that is down: 1 s, doubling, up to a cap."""

    def __init__(self, cap_seconds: float, pause: Callable[[float], Awaitable[None]]):
        self._cap, self._pause = cap_seconds, pause
        self.reset()

    def reset(self) -> None:
        self.next_seconds = min(1.0, self._cap)

    async def wait(self, mailing_id: int, trouble: RelayUnavailable) -> None:
        log.warning(
            "mailing %s: relay unavailable (%s); retrying in %.1f s",
            mailing_id,
            trouble.reply,
            self.next_seconds,
        )
        await self._pause(self.next_seconds)
        self.next_seconds = min(self.next_seconds * 2, self._cap)
