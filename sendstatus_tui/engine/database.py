"""The engine's database work, off its event loop.

Transactions run on threads, so that a database that is slow, or whose write lock another
process holds, holds up the engine's bookkeeping and not its sending: messages already
claimed keep going to the relay meanwhile. Heartbeats have a thread of their own, so that
they never queue behind claims and records waiting for a lock.

A write that took long, waiting to begin or for a lock on a row or table, is a sign that
others could not write meanwhile either (SQLite has one writer at a time; on PostgreSQL a
locked table holds up every engine that needs it): other engines' heartbeats and the
leader's lease were held up too, so their silence during that wait says nothing of their
health. ``expired_before`` moves the line accordingly.
"""

import asyncio
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from sqlmodel import Session

from sendstatus_tui.core.store.store import Store

Result = TypeVar("Result")
WORK_THREADS = 4  # claims and records of several lanes and mailings at once
LONG_WAIT_SECONDS = 1.0  # a write that took longer (waiting for a lock) marks a stall


class EngineDatabase:
    def __init__(self, store: Store):
        self.store = store
        self._work = ThreadPoolExecutor(WORK_THREADS, thread_name_prefix="sendstatus-db")
        self._beats = ThreadPoolExecutor(1, thread_name_prefix="sendstatus-beat")
        # wall-clock start and end of the last stall: writes that waited long to begin,
        # merged when they overlap (the one that asked first tells when it began)
        self._stall: tuple[float, float] | None = None
        self._stall_lock = threading.Lock()
        # the writes begun and not ended, by thread, with when each was asked for
        self._pending: dict[int, float] = {}

    async def write(self, work: Callable[[Session], Result]) -> Result:
        """Runs ``work`` in a write transaction on a worker thread."""
        return await self._run(self._work, lambda: self._write(work))

    async def read(self, work: Callable[[Session], Result]) -> Result:
        def in_read() -> Result:
            with self.store.read() as session:
                return work(session)

        return await self._run(self._work, in_read)

    async def beat(self, work: Callable[[Session], Result]) -> Result:
        """Runs a heartbeat's write transaction on the heartbeat thread."""
        return await self._run(self._beats, lambda: self._write(work))

    def expired_before(self, now: datetime, ttl: timedelta) -> datetime:
        """Before when a heartbeat must be to have expired: ``ttl`` before now, or, if a
        stall ended less than ``ttl`` ago, ``ttl`` before the stall began."""
        line = now - ttl
        if self._stall is not None:
            began, ended = self._stall
            if now.timestamp() - ended < ttl.total_seconds():
                line = min(line, datetime.fromtimestamp(began, UTC) - ttl)
        return line

    def oldest_pending_write(self) -> datetime | None:
        """When the oldest write still in progress was asked for (None: none is): one
        that is seconds old waits for a lock (on SQLite, another process's write lock)."""
        with self._stall_lock:
            oldest = min(self._pending.values(), default=None)
        return None if oldest is None else datetime.fromtimestamp(oldest, UTC)

    def close(self) -> None:
        self._work.shutdown(wait=True)
        self._beats.shutdown(wait=True)

    def _write(self, work: Callable[[Session], Result]) -> Result:
        asked = time.time()
        thread = threading.get_ident()  # a thread runs one write at a time
        with self._stall_lock:
            self._pending[thread] = asked
        try:
            with self.store.write() as session:
                return work(session)
        finally:
            with self._stall_lock:
                del self._pending[thread]
            # a wait for a lock is a stall wherever it happens: at BEGIN (SQLite's write
            # lock) or at a statement (a row or table another transaction holds)
            ended = time.time()
            if ended - asked > LONG_WAIT_SECONDS:
                self._note_stall(asked, ended)

    def _note_stall(self, asked: float, began: float) -> None:
        with self._stall_lock:
            if self._stall is not None and asked <= self._stall[1]:
                asked, began = min(asked, self._stall[0]), max(began, self._stall[1])
            self._stall = (asked, began)

    @staticmethod
    async def _run(executor: ThreadPoolExecutor, call: Callable[[], Result]) -> Result:
        return await asyncio.get_running_loop().run_in_executor(executor, call)
