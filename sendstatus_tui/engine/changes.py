"""Following the change marker (core/model/changes.py): what other processes do (a stop, a
send now, a changed setting, a relay) reaches the engine within a reconcile interval, for
one small read, instead of every loop reading every active mailing a few times a second."""

import asyncio
import time

from sendstatus_tui.core.model import changes
from sendstatus_tui.core.store.store import StoreError
from sendstatus_tui.engine.context import EngineContext
from sendstatus_tui.engine.pauses import surviving


class Changes:
    def __init__(self, context: EngineContext, wakes: tuple[asyncio.Event, ...]):
        """``wakes``: set, each, when the database may have changed: the loops that read
        what they follow (the leader's, the sending loop)."""
        self.db, self.settings, self.trouble = context.db, context.settings, context.trouble
        self.wakes = wakes
        self._seen: int | None = None
        self._full_at = 0.0  # monotonic time of the last wake

    async def loop(self) -> None:
        while True:
            await surviving(self._look)
            # a poll, of one row: neither SQLite nor every PostgreSQL setup (a pooler in
            # transaction mode) tells a process what another one committed
            await asyncio.sleep(self.settings.reconcile_seconds)

    async def _look(self) -> None:
        try:
            counter = await self.db.read(changes.read)
        except StoreError as exc:
            self.trouble.report("read", exc)
            return
        now = time.monotonic()
        if counter != self._seen or now - self._full_at >= self.settings.full_reconcile_seconds:
            self._seen, self._full_at = counter, now
            for wake in self.wakes:
                wake.set()
