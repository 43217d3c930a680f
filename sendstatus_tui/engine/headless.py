"""``sendstatus engine``: the engine alone, for a service manager.

Logs to stderr; on SIGTERM or SIGINT it finishes and records the batches in flight,
releases the lease (so that another engine can take over at once) and exits 0. With
``--workers N`` the command supervises N such engines instead (supervisor.py).
"""

import asyncio
import logging
import os
import signal
from collections.abc import Callable

from sendstatus_tui.core.store.store import Store
from sendstatus_tui.engine.engine import Engine, EngineSettings
from sendstatus_tui.engine.supervisor import WORKER_ENV, Supervisor
from sendstatus_tui.engine.transports import Transport

log = logging.getLogger("sendstatus.engine")


def run_headless(
    db_url: str, relay_url: str | None, transport: Transport, rate_per_second: float | None
) -> None:
    """Serves ``db_url`` through ``transport`` (built by the caller from ``relay_url`` and the
    credentials, so that a bad setting is refused before anything starts)."""
    log_to_stderr(os.environ.get(WORKER_ENV))
    store = Store(db_url)
    settings = EngineSettings(rate_per_second=rate_per_second)
    log.info("engine starting: %s", _described(store.safe_url, relay_url, rate_per_second))
    asyncio.run(_serve(Engine(store, transport, settings)))


def log_to_stderr(worker: str | None = None) -> None:
    """Log lines on stderr; a worker's (``--workers``) name it, as they mix with the
    other workers' on the supervisor's stderr."""
    who = f" (worker {worker}, pid %(process)d)" if worker else ""
    logging.basicConfig(
        level=logging.INFO,
        format=f"%(asctime)s %(levelname)s %(name)s{who}: %(message)s",
    )
    logging.getLogger("apscheduler").setLevel(logging.WARNING)  # every job run is noise


def run_supervisor(
    workers: int,
    environment: dict[str, str],
    safe_db_url: str,
    relay_url: str | None,
    transport: Transport,
    rate_per_second: float | None,
) -> None:
    """``sendstatus engine --workers N`` (N > 1): N engine processes running with
    ``environment`` (the command's settings), supervised."""
    log_to_stderr()
    # a worker's stop waits for the relay's replies (engine.py's _drain), then releases
    # its lease; past that, and a margin, it is stuck
    stop_seconds = EngineSettings().stop_grace_seconds + transport.reply_timeout + 10
    Supervisor(workers, environment, stop_seconds).run(
        _described(safe_db_url, relay_url, rate_per_second)
    )


def _described(safe_db_url: str, relay_url: str | None, rate_per_second: float | None) -> str:
    cap = f", at most {rate_per_second * 3600:.0f}/h from this engine" if rate_per_second else ""
    return (
        f"database {safe_db_url}, relay {relay_url or 'the default maildir'}, the rate stored"
        f" for the database{cap}"
    )


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
