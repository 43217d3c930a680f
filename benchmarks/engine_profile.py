"""cProfile on an engine hosted on its thread: the engine's thread and each of its database
threads (a profiler sees its own thread only), merged into one set of statistics.

Each thread's profiler counts that thread's processor time (``time.thread_time``), not the
time on the clock: a database thread that waits for the GIL after SQLite answers, or the
loop waiting in epoll, would otherwise count as cost."""

import cProfile
import pstats
import threading
import time
from collections.abc import Callable
from typing import Any

from sendstatus_tui.engine.database import EngineDatabase
from sendstatus_tui.engine.thread import EngineThread


class EngineProfile:
    def __init__(self) -> None:
        self.profiles: list[cProfile.Profile] = []
        self._local = threading.local()

    def profile(self) -> cProfile.Profile:
        """This thread's profile (made on first use)."""
        profile = getattr(self._local, "profile", None)
        if profile is None:
            profile = self._local.profile = cProfile.Profile(time.thread_time)
            self.profiles.append(profile)
        return profile

    def install(self) -> Callable[[], None]:
        """Profiles what the engine runs on its database threads; returns the undoing."""
        run = EngineDatabase._run
        profiling = self

        async def profiled_run(executor: Any, call: Callable[[], Any]) -> Any:
            def on_thread() -> Any:
                profile = profiling.profile()
                profile.enable()
                try:
                    return call()
                finally:
                    profile.disable()

            return await run(executor, on_thread)

        EngineDatabase._run = staticmethod(profiled_run)  # type: ignore[method-assign]

        def undo() -> None:
            EngineDatabase._run = staticmethod(run)  # type: ignore[method-assign]

        return undo

    def thread_class(self) -> type[EngineThread]:
        """An EngineThread whose engine thread is profiled."""
        profiling = self

        class ProfiledEngineThread(EngineThread):
            def _main(self) -> None:
                profile = profiling.profile()
                profile.enable()
                try:
                    super()._main()
                finally:
                    profile.disable()

        return ProfiledEngineThread

    def report(self, path: str, heaviest: int = 25, cumulative: int = 40) -> None:
        """Prints the heaviest functions, by their own time and with their callees, and
        saves the merged statistics to ``path``."""
        stats = pstats.Stats(self.profiles[0])
        for profile in self.profiles[1:]:
            stats.add(profile)
        stats.dump_stats(path)
        stats.sort_stats("tottime").print_stats(heaviest)
        stats.sort_stats("cumulative").print_stats(cumulative)
        print(f"statistics saved to {path}")
