"""``sendstatus engine``: the engine alone, for a service manager.

Logs to stderr; on SIGTERM or SIGINT it finishes and records the batches in flight,
releases the lease (so that another engine can take over at once) and exits 0.
"""

import asyncio
import logging
import signal
from collections.abc import Callable

from ..core.store import Store
from .engine import Engine, EngineSettings
from .transports import Transport

log = logging.getLogger("sendstatus.engine")


def run_headless(
    db_url: str, relay_url: str | None, transport: Transport, rate_per_second: float | None
) -> None:
    """Serves ``db_url`` through ``transport`` (built by the caller from ``relay_url`` and the
    credentials, so that a bad setting is refused before anything starts)."""
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("apscheduler").setLevel(logging.WARNING)  # every job run is noise
    store = Store(db_url)
    settings = EngineSettings(rate_per_second=rate_per_second)
    log.info(
        "engine starting: database %s, relay %s, rate %s",
        store.safe_url,
        relay_url or "the default maildir",
        f"{rate_per_second * 3600:.0f}/h" if rate_per_second else "unlimited",
    )
    asyncio.run(_serve(Engine(store, transport, settings)))


async def _serve(engine: Engine) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        loop.add_signal_handler(signum, _stopper(stop, signum))
    await engine.run(stop)


def _stopper(stop: asyncio.Event, signum: int) -> Callable[[], None]:
    def request_stop() -> None:
        log.info("%s: finishing the batches in flight, then stopping", signal.Signals(signum).name)
        stop.set()

    return request_stop
