"""Opening the dashboard: with the engine in-process (its own thread) unless another engine
holds the lease, in which case it attaches as a client."""

import logging
from pathlib import Path

from platformdirs import user_log_path

from ..core import lease
from ..core.models import utc_now
from ..core.store import Store
from ..engine.credentials import load_credentials
from ..engine.engine import Engine, EngineSettings
from ..engine.send_test import relay_for_tests
from ..engine.thread import EngineThread
from ..engine.transports import Transport, transport_for


def run_dashboard(
    store: Store,
    *,
    zone_name: str | None,
    relay_url: str | None = None,
    rate_per_second: float | None = None,
    engine_wanted: bool = True,
    blink: bool = True,
    transport: Transport | None = None,
    log_file: Path | None = None,
    demo: bool = False,
) -> None:
    from ..app import SendStatusApp  # textual is imported only for the dashboard

    test_relay = relay_for_tests(relay_url, transport)  # the demo's maildir, or the relay's
    engine = None
    if engine_wanted and not _lease_taken(store):
        _log_engine_to(log_file or user_log_path("sendstatus", appauthor=False) / "engine.log")
        transport = transport or transport_for(relay_url, load_credentials())
        engine = EngineThread(
            Engine(store, transport, EngineSettings(rate_per_second=rate_per_second))
        ).start()
    app = SendStatusApp(
        store,
        zone_name=zone_name,
        blink=blink,
        engine=engine,
        demo=demo,
        test_relay=test_relay,
    )
    try:
        app.run()
    finally:
        if engine is not None:
            engine.stop()  # finishes and records the batches in flight


def _lease_taken(store: Store) -> bool:
    with store.read() as session:
        current = lease.current(session)
    return current is not None and current.expires_at > utc_now()


def _log_engine_to(path: Path) -> None:
    """The engine logs to a file: the terminal belongs to the dashboard."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    engine_log = logging.getLogger("sendstatus")
    engine_log.addHandler(handler)
    engine_log.setLevel(logging.INFO)
