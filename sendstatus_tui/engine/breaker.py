"""This engine's circuit breaker for one relay: a relay that cannot be reached, refuses
connections or drops them is marked down, and gets no messages from this engine while
others are up; it is probed with the retry policy's back-off for a relay (1 s, doubling, up
to a cap: core/model/retry_policy.py) until it answers
again, and then takes its share back. Each engine keeps its own (one engine may reach a
relay that another cannot) and publishes it (core/coordination/relay_breakers.py)."""

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import datetime

from sendstatus_tui.core.coordination.relay_breakers import Down
from sendstatus_tui.core.model.models import utc_now
from sendstatus_tui.core.model.retry_policy import RelayWaits, RetryPolicy
from sendstatus_tui.engine.smtp.errors import RelayError

log = logging.getLogger("sendstatus.engine")


class Breaker:
    """Down once a send or a check through the relay failed for want of the relay (or it
    refused this engine while others take the messages); up again once a probe (a check
    that it accepts us and the last sender) passes."""

    def __init__(self, relay: str, probe: Callable[[], Awaitable[None]], retries: RetryPolicy):
        self.relay = relay
        self._probe = probe  # reaches the relay; raises a RelayError while it is down
        self._retries = retries
        self.down: Down | None = None
        self._tripped_at = 0.0  # monotonic
        self._probing: asyncio.Task[None] | None = None

    @property
    def is_down(self) -> bool:
        return self.down is not None

    def trip(self, reason: str, since: datetime | None = None) -> None:
        """Marks the relay down (once: the first reason stays), and starts probing it."""
        if self.down is not None:
            return
        self.down = Down(since or utc_now(), reason)
        self._tripped_at = time.monotonic()
        log.warning("relay %s is down (%s): its share goes to the others", self.relay, reason)
        self._probing = asyncio.ensure_future(self._probe_until_up())

    def answered(self, asked_at: float) -> None:
        """A send asked at ``asked_at`` (monotonic) went through: the relay is up, unless
        it was asked before the relay was found down (a reply already on its way then)."""
        if self.down is not None and asked_at > self._tripped_at:
            self.reset()

    def reset(self) -> None:
        """The relay answered: it takes its share back."""
        if self.down is None:
            return
        log.info("relay %s answers again: it takes its share back", self.relay)
        self.down = None
        if self._probing is not None and self._probing is not asyncio.current_task():
            self._probing.cancel()
        self._probing = None

    async def close(self) -> None:
        if self._probing is not None:
            self._probing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._probing
            self._probing = None

    async def _probe_until_up(self) -> None:
        waits = RelayWaits(self._retries)
        while self.down is not None:
            await asyncio.sleep(waits.failed())
            try:
                await self._probe()
            except RelayError as exc:  # not reached, or refuses us
                log.info(
                    "relay %s still down (%s); next probe in %.1f s",
                    self.relay,
                    exc,
                    waits.next_seconds,
                )
                continue
            self.reset()
