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

``SENDSTATUS_ALERT_TIMEOUT_SECONDS``
    The longest the alert command or the webhook may take, in seconds (default 10); the
    command is killed after it. At least 1. Tests of a hanging command set it short.
"""

import asyncio
import logging
import math
import os
import signal
import threading
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import timedelta

from sendstatus_tui.core.model.relay_url import DEFAULT_TIMEOUT
from sendstatus_tui.core.store.store import Store
from sendstatus_tui.engine.collector import set_for_sending
from sendstatus_tui.engine.engine import Engine
from sendstatus_tui.engine.intake.imap import ImapSource
from sendstatus_tui.engine.intake.run import run_intake
from sendstatus_tui.engine.intake.source import Listener, Source, SourceError
from sendstatus_tui.engine.metrics import EngineMetrics, relay_label
from sendstatus_tui.engine.settings import EngineSettings
from sendstatus_tui.engine.supervisor import WORKER_ENV, Supervisor
from sendstatus_tui.engine.transports import Transport
from sendstatus_tui.errors import SendStatusError

log = logging.getLogger("sendstatus.engine")

LEASE_ENV = "SENDSTATUS_LEASE_SECONDS"
LEASE_FLOOR_SECONDS = 1.0
ALERT_TIMEOUT_ENV = "SENDSTATUS_ALERT_TIMEOUT_SECONDS"
ALERT_TIMEOUT_FLOOR_SECONDS = 1.0  # a command or a webhook needs some time to answer
BEATS_PER_LEASE = 5  # the default lease (5 s) renewed every second
# an intake beside the engine whose source failed (a maildir gone, a port taken) tries again
# after this long, while the engine goes on sending
INTAKE_RETRY_SECONDS = 30.0


def engine_settings(
    rate_per_second: float | None,
    environment: Mapping[str, str] = os.environ,
    allow_alert_command: bool = False,
) -> EngineSettings:
    """The engine's settings: its own cap, whether it runs the alert command, the lease
    from ``SENDSTATUS_LEASE_SECONDS`` and the alerts' timeout from
    ``SENDSTATUS_ALERT_TIMEOUT_SECONDS`` when set (see the module's docstring)."""
    settings = EngineSettings(
        rate_per_second=rate_per_second, allow_alert_command=allow_alert_command
    )
    lease = _seconds(environment, LEASE_ENV, LEASE_FLOOR_SECONDS, 5, "the lease's length")
    if lease is not None:
        settings = replace(
            settings,
            lease_ttl=timedelta(seconds=lease),
            lease_renew_seconds=lease / BEATS_PER_LEASE,
        )
    alert_timeout = _seconds(
        environment,
        ALERT_TIMEOUT_ENV,
        ALERT_TIMEOUT_FLOOR_SECONDS,
        settings.alert_timeout_seconds,
        "the alerts' timeout",
    )
    if alert_timeout is not None:
        settings = replace(settings, alert_timeout_seconds=alert_timeout)
    return settings


def _seconds(
    environment: Mapping[str, str], name: str, floor: float, default: float, what: str
) -> float | None:
    """Seconds from the variable ``name``, at least ``floor``; None when it is unset."""
    text = environment.get(name, "").strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        seconds = 0.0
    if not floor <= seconds < math.inf:  # also refuses nan
        raise SendStatusError(
            f"{name}={text!r}: give {what} in seconds, {floor:g} or more (default {default:g})"
        )
    return seconds


def run_headless(
    db_url: str,
    relay_url: str | None,
    transport: Transport | None,
    rate_per_second: float | None,
    intake: Source | Listener | None = None,
    metrics_address: str | None = None,
    allow_alert_command: bool = False,
) -> None:
    """Serves ``db_url`` through ``transport`` (built by the caller from ``relay_url``, the
    ``--smtp`` override, and the credentials, so that a bad setting is refused before
    anything starts; None: the relays stored in the database); with ``intake``,
    reads bounces and complaints from it on a thread of its own beside the sending; with
    ``metrics_address``, serves what it does to Prometheus there."""
    # a bad setting is refused before the log starts
    settings = engine_settings(rate_per_second, allow_alert_command=allow_alert_command)
    log_to_stderr(os.environ.get(WORKER_ENV))
    metrics = None
    if metrics_address is not None:
        metrics = EngineMetrics(relay_label(relay_url))
        metrics.serve(metrics_address)  # a port taken ends it here, before any claim
    store = Store(db_url)
    log.info("engine starting: %s", _described(store.safe_url, relay_url, rate_per_second))
    stopping = threading.Event()
    reading = None
    if isinstance(intake, ImapSource):  # its IDLE ends when the engine stops, as the loop does
        intake.stop, intake.patient = stopping, True
    if intake is not None:
        reading = threading.Thread(
            target=_run_intake, args=(store, intake, stopping), name="intake", daemon=True
        )
        reading.start()
    set_for_sending()
    try:
        asyncio.run(_serve(Engine(store, transport, settings, metrics), stopping))
    finally:
        stopping.set()
        if reading is not None:
            reading.join()


def _run_intake(store: Store, intake: Source | Listener, stop: threading.Event) -> None:
    """``engine --intake``: the intake follows its source until the engine stops; a source
    that fails is tried again later, and the sending goes on meanwhile."""
    log.info("intake %s: running beside the engine", intake.name)
    while not stop.is_set():
        try:
            tally = run_intake(store, intake, follow=True, stop=stop)
        except SourceError as exc:
            log.error("intake: %s; trying again in %.0f s", exc, INTAKE_RETRY_SECONDS)
        except Exception:  # a bug in the intake must not stop the sending
            log.exception("intake %s failed; trying again later", intake.name)
        else:
            log.info("intake %s stopped: %s", intake.name, tally.line())
            return
        stop.wait(INTAKE_RETRY_SECONDS)


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
    transport: Transport | None,
    rate_per_second: float | None,
    intake: str | None = None,
    metrics_address: str | None = None,
    allow_alert_command: bool = False,
) -> None:
    """``sendstatus engine --workers N`` (N > 1): N engine processes running with
    ``environment`` (the command's settings), supervised; with ``intake`` (a source, as
    given), one intake process beside them; with ``metrics_address``, worker k serves its
    metrics at its port plus k."""
    engine_settings(rate_per_second)  # a bad setting is refused once, not by every worker
    log_to_stderr()
    # a worker's stop waits for the relay's replies (engine.py's _drain), then releases
    # its lease; past that, and a margin, it is stuck
    reply_timeout = transport.reply_timeout if transport else DEFAULT_TIMEOUT
    stop_seconds = EngineSettings().stop_grace_seconds + reply_timeout + 10
    Supervisor(
        workers, environment, stop_seconds, intake, metrics_address, allow_alert_command
    ).run(_described(safe_db_url, relay_url, rate_per_second))


def _described(safe_db_url: str, relay_url: str | None, rate_per_second: float | None) -> str:
    cap = f", at most {rate_per_second * 3600:.0f}/h from this engine" if rate_per_second else ""
    return (
        f"database {safe_db_url}, relay {relay_url or 'the ones stored in the database'},"
        " the rate stored"
        f" for the database{cap}"
    )


async def _serve(engine: Engine, stopping: threading.Event) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        loop.add_signal_handler(signum, _stopper(stop, stopping, signum))
    await engine.run(stop)


def _stopper(stop: asyncio.Event, stopping: threading.Event, signum: int) -> Callable[[], None]:
    def request_stop() -> None:
        log.info("%s: finishing the batches in flight, then stopping", signal.Signals(signum).name)
        stop.set()
        stopping.set()  # the intake beside it, if any, finishes its message in hand

    return request_stop
