"""The writers of one SQLite file in this process, served in the order they came.

SQLite lets one writer in at a time, and a writer that finds the lock taken does not queue:
its busy handler sleeps and tries again, for longer and longer (up to 100 ms a try). Beside
an engine that writes back to back from several threads, a dashboard's key press could so
find the lock taken at every try and wait over a second (bench_dashboard.py measured 1.3 s
at the 95th percentile). Writers of this process therefore take their turn here first, in
order, and meet SQLite's lock only when the one before them is done; writers of other
processes still meet it through the busy timeout. An operator's action goes ahead of the
engine's bookkeeping waiting here: it waits for one transaction at most, not for a queue.
"""

import threading
from collections import deque
from pathlib import Path


class WriterQueue:
    """A lock handed over to its waiters first come, first served (``threading.Lock`` lets
    the thread that just released it take it again before those that wait)."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._held = False
        # the writers waiting, first come first: those that asked to go ahead, the others
        self._ahead: deque[threading.Lock] = deque()
        self._behind: deque[threading.Lock] = deque()

    def take(self, timeout: float, ahead: bool = False) -> None:
        """Waits for this thread's turn, at most ``timeout`` seconds (then TimeoutError,
        and the queue goes on without it); ``ahead``: before every writer that did not ask
        to go ahead."""
        line = self._ahead if ahead else self._behind
        with self._guard:
            if not self._held:
                self._held = True
                return
            gate = threading.Lock()
            gate.acquire()
            line.append(gate)
        if gate.acquire(timeout=timeout):
            return  # the writer before passed the turn on to this one
        with self._guard:
            if gate in line:
                line.remove(gate)
                raise TimeoutError(f"no turn to write within {timeout:g} s")
        # handed over between the timeout and the guard: the turn is this writer's

    def release(self) -> None:
        """Passes the turn on to the writer that has waited longest (of those ahead)."""
        with self._guard:
            line = self._ahead or self._behind
            if line:
                line.popleft().release()  # still held: by the next writer now
            else:
                self._held = False


_QUEUES: dict[Path, WriterQueue] = {}
_QUEUES_GUARD = threading.Lock()


def writer_queue(path: Path) -> WriterQueue:
    """The one queue of this process for the SQLite file at ``path``, shared by every store
    opened on it (a dashboard's and the engine it hosts)."""
    key = path.resolve()
    with _QUEUES_GUARD:
        return _QUEUES.setdefault(key, WriterQueue())
