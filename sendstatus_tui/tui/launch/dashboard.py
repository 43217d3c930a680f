"""Opening the dashboard: with an engine of its own (on its own thread) whenever no other
engine holds the lease, or as a pure client with ``--no-engine``."""

import sys
from pathlib import Path

from platformdirs import user_log_path

from sendstatus_tui.core.model import settings
from sendstatus_tui.core.store.store import Store
from sendstatus_tui.engine.send_test import relay_for_tests
from sendstatus_tui.engine.thread import STOP_SECONDS
from sendstatus_tui.engine.transports import Transport
from sendstatus_tui.tui.launch.engine_host import EngineHost, log_engine_to


def run_dashboard(
    store: Store,
    *,
    zone_name: str | None,
    relay_url: str | None = None,
    rate_per_second: float | None = None,
    engine_wanted: bool = True,
    blink: bool = True,
    transport: tuple[str, Transport] | None = None,
    log_file: Path | None = None,
    demo: bool = False,
) -> None:
    """``relay_url``: the ``--smtp`` override (else the stored relay is used); ``transport``:
    a fixed one (the demo's maildir) with what to call it."""
    from sendstatus_tui.tui.app import SendStatusApp

    # test sends go where the engines send: the --smtp relay, the stored one, or a maildir
    with store.read() as session:
        relay_for_engines = settings.relay_in_use(session, relay_url)
    test_relay = relay_for_tests(relay_for_engines, transport[1] if transport else None)
    host = None
    if engine_wanted:
        log_engine_to(log_file or user_log_path("sendstatus", appauthor=False) / "engine.log")
        host = EngineHost(
            store, relay_override=relay_url, rate_per_second=rate_per_second, transport=transport
        )
        host.start_if_free()
    app = SendStatusApp(
        store,
        zone_name=zone_name,
        blink=blink,
        engine=host.engine if host else None,
        start_engine=host.start_if_free if host else None,
        demo=demo,
        test_relay=test_relay,
    )
    try:
        app.run()
    finally:
        if app.engine is not None and app.engine.alive:
            print("stopping the engine: finishing the batches in flight…", file=sys.stderr)
            app.engine.stop()  # finishes and records the batches in flight
            if app.engine.alive:
                print(
                    f"the engine did not stop within {STOP_SECONDS:g} s: quitting all the same"
                    " (where it waited is in the engine's log)",
                    file=sys.stderr,
                )
    if app.failure is not None:  # what kept the dashboard from showing the database
        raise app.failure
