"""The engine's connections to an SMTP relay: opened on demand, as many as the sizing says.

Each send gets the write turn of one connection (a connection pipelines: its turn passes
on once a message's content is written, so it carries two messages at a time). A
connection that breaks is dropped and another is opened when needed; STARTTLS and AUTH are
done on every new one. Once a second the pool's sizing looks at how busy the connections
were and how many messages went, and grows or shrinks the pool (pool_sizing.py).
"""

import asyncio
import logging
import time
from collections import deque
from collections.abc import Coroutine
from typing import Any

from sendstatus_tui.core.model.relay_url import INITIAL_CONNECTIONS, SmtpSettings
from sendstatus_tui.engine.smtp.connection import RelayConnection, open_connection
from sendstatus_tui.engine.smtp.credentials import Credentials
from sendstatus_tui.engine.smtp.errors import RelayError
from sendstatus_tui.engine.smtp.sizing import Change, PoolSizer, Window
from sendstatus_tui.engine.smtp.verdict import verdict_of

log = logging.getLogger("sendstatus.engine")

SIZING_WINDOW_SECONDS = 1.0
QUIT_SECONDS = 2.0  # the longest a relay that hangs can hold up a close
# a connection idle this long is closed (QUIT): an engine with nothing to send holds none
# open, and none is used that a firewall or NAT may have forgotten on the way (a close by
# the relay itself is seen at once: the connection's reader gets it)
MAX_IDLE_SECONDS = 30.0


class SmtpTransport:
    def __init__(self, settings: SmtpSettings, credentials: Credentials | None = None):
        self.settings = settings
        self.credentials = credentials
        self.reply_timeout = settings.timeout
        self.sizer = PoolSizer(INITIAL_CONNECTIONS, settings.pool_size, adapt=settings.adapt)
        self._live: list[RelayConnection] = []
        self._free: deque[RelayConnection] = deque()  # live, with their write turn free
        self._waiters: deque[asyncio.Future[RelayConnection | None]] = deque()
        self._opening = 0
        self._pipelining = False  # the last connection opened pipelines
        self._window_started = time.monotonic()
        self._completed = 0
        self._busy_at_start = 0.0  # busy seconds of connections live at the window's start
        self._retired_busy = 0.0  # busy seconds of connections closed during the window
        self._closing: set[asyncio.Task[None]] = set()  # QUITs under way
        self._idle_sweep: asyncio.TimerHandle | None = None

    @property
    def connections(self) -> int:
        """The connections the pool holds (or may open) now."""
        return self.sizer.size

    @property
    def connections_reason(self) -> str:
        return self.sizer.reason

    @property
    def capacity(self) -> int:
        """How many messages may be in the pool's hands at once."""
        return self.sizer.size * (2 if self._pipelining else 1)

    async def check(self, sender: str) -> None:
        connection = await open_connection(self.settings, self.credentials)
        try:
            await connection.check_sender(sender)
        finally:
            await connection.quit(QUIT_SECONDS)

    async def send(self, sender: str, recipient: str, message: bytes) -> str:
        connection = await self._turn()
        try:
            return await connection.send(
                sender, recipient, message, lambda: self._turn_done(connection)
            )
        except RelayError as exc:
            if (closing := verdict_of(exc)).relay_closing:  # fewer connections, then
                self._resized(self.sizer.closed_by_relay(time.monotonic(), closing.text))
            raise
        finally:
            self._completed += 1
            self._size_up()

    async def close(self) -> None:
        """Says QUIT on every connection, all at once and for at most 2 s: a relay that
        hangs must not hold up a stop. The pool stays usable: an engine that lost its lease
        and takes it back sends through it again."""
        connections, self._live = self._live, []
        self._free.clear()
        if self._idle_sweep is not None:  # the next start may run on another event loop
            self._idle_sweep.cancel()
            self._idle_sweep = None
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)
        if connections:
            await asyncio.gather(*(c.quit(QUIT_SECONDS) for c in connections))

    # --- turns --------------------------------------------------------------------------

    async def _turn(self) -> RelayConnection:
        """A connection whose write turn is now the caller's: a free one, a new one if the
        pool may grow, else the next to come free."""
        while True:
            while self._free:
                free = self._free.popleft()
                if free.usable and time.monotonic() - free.idle_since < MAX_IDLE_SECONDS:
                    return free
                self._forget(free)
                self._in_background(free.quit(QUIT_SECONDS))
            if self._may_open():
                opened = await self._open()
                if opened is not None:
                    return opened
                continue
            waiter: asyncio.Future[RelayConnection | None] = (
                asyncio.get_running_loop().create_future()
            )
            self._waiters.append(waiter)
            try:
                handed = await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    late = waiter.result()
                    if late is not None:
                        self._turn_done(late)  # handed over as we were cancelled
                raise
            if handed is not None:
                return handed

    def _turn_done(self, connection: RelayConnection) -> None:
        if not connection.usable or connection not in self._live:
            self._forget(connection)
            self._wake(None)  # a waiter may open a replacement
        elif len(self._live) > self.sizer.size:
            self._forget(connection)
            self._in_background(connection.retire(self.reply_timeout))
        else:
            self._wake(connection)

    def _wake(self, connection: RelayConnection | None) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(connection)
                return
        if connection is not None:
            self._free.append(connection)
            if self._idle_sweep is None:  # one timer for the pool, not one per message
                loop = asyncio.get_running_loop()
                self._idle_sweep = loop.call_later(MAX_IDLE_SECONDS, self._close_idle)

    def _close_idle(self) -> None:
        """An engine with nothing to send keeps no connection open for long: those idle
        MAX_IDLE_SECONDS are closed (within twice that)."""
        self._idle_sweep = None
        now = time.monotonic()
        for idle in [c for c in self._free if now - c.idle_since >= MAX_IDLE_SECONDS]:
            self._free.remove(idle)
            self._forget(idle)
            self._in_background(idle.quit(QUIT_SECONDS))
        if self._free:
            loop = asyncio.get_running_loop()
            self._idle_sweep = loop.call_later(MAX_IDLE_SECONDS, self._close_idle)

    def _may_open(self) -> bool:
        return len(self._live) + self._opening < self.sizer.size and (
            not self._live or self.sizer.may_open(time.monotonic())
        )

    async def _open(self) -> RelayConnection | None:
        """A new connection, or None when the relay refused it while others work (they
        carry on; the pool stops growing)."""
        self._opening += 1
        try:
            connection = await open_connection(self.settings, self.credentials)
        except RelayError as exc:
            refused = verdict_of(exc)
            if refused.refuses_us:  # credentials, greeting: the caller's to say
                raise
            if not self._live:
                # nothing works: the sends waiting for a turn learn it now, not one by one
                for waiter in self._waiters:
                    if not waiter.done():
                        waiter.set_exception(exc)
                self._waiters.clear()
                raise
            # refusals come back faster than the set-up of connections opened with this
            # one, which may still succeed: they count as working
            others = len(self._live) + self._opening - 1
            self._resized(self.sizer.refused(time.monotonic(), others, refused.text))
            return None
        finally:
            self._opening -= 1
        self._live.append(connection)
        self._pipelining = connection.pipelining
        return connection

    def _in_background(self, closing: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(closing)
        self._closing.add(task)  # a task nobody refers to may be collected half-way
        task.add_done_callback(self._closing.discard)

    def _forget(self, connection: RelayConnection) -> None:
        if connection in self._live:
            self._live.remove(connection)
            self._retired_busy += connection.busy_seconds(time.monotonic())

    # --- sizing -------------------------------------------------------------------------

    def _size_up(self) -> None:
        """Once a window has passed: how busy the connections were, and what to do."""
        now = time.monotonic()
        seconds = now - self._window_started
        if seconds < SIZING_WINDOW_SECONDS:
            return
        busy_now = sum(c.busy_seconds(now) for c in self._live) + self._retired_busy
        busy = busy_now - self._busy_at_start
        share = busy / (seconds * max(1, len(self._live)))
        window = Window(seconds, self._completed, min(1.0, share))
        self._window_started, self._completed = now, 0
        self._retired_busy = 0.0
        self._busy_at_start = sum(c.busy_seconds(now) for c in self._live)
        self._resized(self.sizer.observe(now, window))

    def _resized(self, change: Change | None) -> None:
        if change is None:
            return
        log.info("relay connections: %d → %d (%s)", change.old, change.new, change.reason)
        for _ in range(max(0, change.new - len(self._live) - self._opening)):
            self._wake(None)  # waiters open the new connections
        while len(self._live) > change.new and self._free:
            surplus = self._free.pop()
            self._forget(surplus)
            self._in_background(surplus.retire(self.reply_timeout))
