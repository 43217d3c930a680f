"""The engine on a thread of its own, with its own event loop: how the dashboard (and the
tests) host it, so that sending at full speed never slows the caller's loop."""

import asyncio
import contextlib
import logging
import threading
from collections import Counter

from sendstatus_tui.engine.collector import set_for_sending
from sendstatus_tui.engine.engine import Engine

log = logging.getLogger("sendstatus.engine")
# how long a stop waits for the engine to record the batches in flight (its own bound is the
# stop grace plus one relay timeout: far less, unless the engine is stuck)
STOP_SECONDS = 60.0


class EngineThread:
    def __init__(self, engine: Engine, relay: str = "the default maildir"):
        self.engine = engine
        self.relay = relay  # what it sends through, for the operator (password masked)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._main, name="sendstatus-engine", daemon=True)
        self.error: BaseException | None = None

    def start(self) -> "EngineThread":
        set_for_sending()  # the whole process's collector: the engine allocates the most
        self._thread.start()
        self._started.wait()
        return self

    def stop(self, timeout: float | None = STOP_SECONDS) -> None:
        """Asks the engine to finish its batches in flight, and waits for it at most
        ``timeout`` seconds; past that, logs where its tasks wait (for a bug report)."""
        if self._thread.is_alive() and self._loop is not None and self._stop is not None:
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: it has stopped
                self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.error(
                "the engine did not stop within %g s; where its tasks wait:\n%s",
                timeout,
                self.task_stacks(),
            )

    def task_stacks(self) -> str:
        """Where the engine's tasks wait, alike ones counted together (a batch has hundreds),
        for a report of an engine that does not stop. Read from another thread: a task that
        changed meanwhile may be missed."""
        if self._loop is None:
            return "(no event loop)"
        try:
            tasks = list(asyncio.all_tasks(self._loop))
        except RuntimeError as exc:  # the set of tasks changed as it was read
            return f"(the tasks changed as they were read: {exc})"
        stacks = Counter(
            "".join(
                f"  {frame.f_code.co_filename}:{frame.f_lineno} in {frame.f_code.co_name}\n"
                for frame in task.get_stack(limit=20)
            )
            for task in tasks
        )
        return "".join(f"{count} task(s) at:\n{stack}" for stack, count in stacks.most_common())

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def _main(self) -> None:
        async def serve() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            self._started.set()
            await self.engine.run(self._stop)

        try:
            asyncio.run(serve())
        except BaseException as exc:  # noqa: BLE001  kept for the host to report
            self.error = exc
            raise
        finally:
            self._started.set()
