"""A dashboard starts an engine of its own when none runs (also after another engine held
the lease and stopped), through the stored relay; with --no-engine it never does."""

import contextlib

from sendstatus_tui.core.coordination import lease
from sendstatus_tui.core.model import lifecycle, settings
from sendstatus_tui.engine.engine import Engine
from sendstatus_tui.engine.thread import EngineThread
from sendstatus_tui.engine.transports import transport_for
from sendstatus_tui.errors import mask_url
from sendstatus_tui.tui.app import SendStatusApp
from sendstatus_tui.tui.launch.engine_host import EngineHost
from sendstatus_tui.views.engine_fact import EngineWhere

from .helpers import (
    FAST,
    SIZE,
    ZONE,
    act,
    mailing,
    refresh,
    scenario,
    settle,
    until,
    wait_until,
)


@contextlib.asynccontextmanager
async def open_dashboard(store, **settings):
    """The dashboard on the real clock: who holds the lease is judged by it."""
    app = SendStatusApp(store, zone_name=ZONE, blink=False, refresh_seconds=0, **settings)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        yield app, pilot


def holder(store) -> str | None:
    with store.read() as session:
        current = lease.current(session)
    return current.holder if current else None


@scenario
async def test_a_client_starts_an_engine_when_the_other_one_stops(store, make_mailing, relays):
    stored_relay, other_relay = relays(), relays()
    with store.write() as session:
        settings.write(session, "relay", stored_relay.url)
    other = EngineThread(Engine(store, transport_for(other_relay.url), FAST)).start()
    mailing_id = make_mailing(recipients=3)
    host = EngineHost(store, relay_override=None, rate_per_second=None)
    # the other engine leads before the dashboard opens: were the lease free at its first
    # refresh, it would try to start its own (and then wait ENGINE_START_PAUSE_SECONDS
    # before trying again, longer than this test waits)
    wait_until(lambda: holder(store) == other.engine.holder, what="the other engine leading")
    try:
        async with open_dashboard(store, start_engine=host.start_if_free) as (app, pilot):
            await until(pilot, lambda: holder(store) == other.engine.holder, "the lease")
            await refresh(pilot)
            assert app.engine_fact.where == EngineWhere.ELSEWHERE
            # the header (80 columns first) names the engine's host, not its holder id
            other_host = other.engine.holder.partition(":")[0]
            assert f"engine on {other_host}" in app.sub_title
            assert app.engine is None

            other.stop()  # releases the lease: nobody sends now
            await refresh(pilot)
            await until(pilot, lambda: app.engine is not None, "an engine here")
            assert app.engine is host.engine

            async def taken() -> bool:
                await refresh(pilot)
                return app.engine_fact.where == EngineWhere.HERE

            await until(pilot, lambda: holder(store) == app.engine.engine.holder, "lead")
            assert await taken()
            assert app.engine_fact.relay == mask_url(stored_relay.url)
            assert "engine here" in app.sub_title

            act(store, lifecycle.send_now, mailing_id)
            await until(pilot, lambda: mailing(store, mailing_id).state == "completed", "sent", 20)
        # through the relay stored in the database, not the default maildir
        assert sorted(stored_relay.recipients()) == [f"person{i}@example.com" for i in range(3)]
        assert other_relay.recipients() == []
    finally:
        other.stop()
        if host.engine is not None:
            host.engine.stop()


@scenario
async def test_a_pure_client_never_starts_an_engine(store, make_mailing):
    make_mailing()
    async with open_dashboard(store) as (app, pilot):
        await refresh(pilot)
        assert app.engine is None and holder(store) is None
        assert app.engine_fact.where == EngineWhere.NONE
        assert "no engine: nothing is sent" in app.sub_title


def test_the_smtp_option_wins_over_the_stored_relay(store, relays):
    stored, given = relays(running=False), relays(running=False)
    with store.write() as session:
        settings.write(session, "relay", stored.url)
    host = EngineHost(store, relay_override=given.url, rate_per_second=None)
    engine = host.start_if_free()
    try:
        assert engine is not None and engine.relay == given.url
        assert host.start_if_free() is None  # one is enough
    finally:
        engine.stop()
