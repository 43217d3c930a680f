"""``sendstatus engine``: the engine alone, for a service manager.

Logs to stderr; on SIGTERM or SIGINT it finishes and records the batches in flight,
releases the lease (so that another engine can take over at once) and exits 0. With
``--workers N`` the command supervises N such engines instead (supervisor.py).

Environment (read by ``sendstatus engine`` and, through their environment, its workers):

``SENDSTATUS_LEASE_SECONDS``
    How long the lease and each heartbeat last, in seconds (default 5): an engine silent
    that long is replaced, and its claims handed back. The engine beats, and renews the
    lease, every fifth of it. At least 1 (``LEASE_FLOOR_SECONDS``): a shorter lease would
    expire between beats on a busy machine; below it the command refuses to start. Tests
    of engine processes (kill -9, SIGSTOP, takeover) set it short so that they wait less;
    operators have no reason to change it.
"""

import asyncio
import logging
import math
import os
import signal
from collections.abc import Callable, Mapping
from datetime import timedelta

from sendstatus_tui.core.store.store import Store
from sendstatus_tui.engine.engine import Engine, EngineSettings
from sendstatus_tui.engine.supervisor import WORKER_ENV, Supervisor
from sendstatus_tui.engine.transports import Transport
from sendstatus_tui.errors import SendStatusError

log = logging.getLogger("sendstatus.engine")

LEASE_ENV = "SENDSTATUS_LEASE_SECONDS"
LEASE_FLOOR_SECONDS = 1.0
BEATS_PER_LEASE = 5  # the default lease (5 s) renewed every second


def engine_settings(
    rate_per_second: float | None, environment: Mapping[str, str] = os.environ
) -> EngineSettings:
    """The engine's settings: its own cap, and the lease from ``SENDSTATUS_LEASE_SECONDS``
    when set (see the module's docstring)."""
    text = environment.get(LEASE_ENV, "").strip()
    if not text:
        return EngineSettings(rate_per_second=rate_per_second)
    try:
        seconds = float(text)
    except ValueError:
        seconds = 0.0
    if not LEASE_FLOOR_SECONDS <= seconds < math.inf:  # also refuses nan
        raise SendStatusError(
            f"{LEASE_ENV}={text!r}: give the lease's length in seconds,"
            f" {LEASE_FLOOR_SECONDS:g} or more (default 5)"
        )
    return EngineSettings(
        rate_per_second=rate_per_second,
        lease_ttl=timedelta(seconds=seconds),
        lease_renew_seconds=seconds / BEATS_PER_LEASE,
    )


def run_headless(
    db_url: str, relay_url: str | None, transport: Transport, rate_per_second: float | None
) -> None:
    """Serves ``db_url`` through ``transport`` (built by the caller from ``relay_url`` and the
    credentials, so that a bad setting is refused before anything starts)."""
    settings = engine_settings(rate_per_second)  # a bad setting is refused before the log
    log_to_stderr(os.environ.get(WORKER_ENV))
    store = Store(db_url)
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
    engine_settings(rate_per_second)  # a bad lease is refused once, not by every worker
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
