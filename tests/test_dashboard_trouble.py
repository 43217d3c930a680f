"""A database that goes away for a while (a PostgreSQL restart, an SQLite file another
process locks) ends neither the dashboard nor the engine inside it: the header says since
when the database cannot be reached, and everything resumes by itself when it returns."""

import asyncio
import dataclasses
import os
import sqlite3
import threading
import time
import uuid

import pytest
import sqlalchemy as sa

from sendstatus_tui.core.model import lifecycle
from sendstatus_tui.core.store.store import Store, StoreError
from sendstatus_tui.engine.engine import Engine
from sendstatus_tui.engine.thread import EngineThread
from sendstatus_tui.engine.transports import transport_for
from sendstatus_tui.tui import app as app_module
from sendstatus_tui.tui.app import SendStatusApp
from sendstatus_tui.tui.trouble import NOTICES, Trouble, kind_of
from sendstatus_tui.views.engine_fact import EngineFact, EngineWhere
from sendstatus_tui.views.header import (
    database_text,
    header_parts,
    header_status,
    locked_text,
)

from .helpers import (
    FAST,
    FIXED_NOW,
    ZONE,
    Mailings,
    act,
    mailing,
    notifications,
    open_dashboard,
    refresh,
    scenario,
    until,
)

OUTAGE_SECONDS = 15
POSTGRES_ENV = "SENDSTATUS_TEST_POSTGRES_URL"
# slow enough that the outage falls in the middle of the send, fast enough to end soon
ENGINE = dataclasses.replace(FAST, rate_per_second=10)
RECIPIENTS = 40
UNREACHABLE = "database unreachable since"
LOCKED = "database locked since"


async def send_through_an_outage(store: Store, relay, directory, outage) -> list[str]:
    """Sends a mailing from a dashboard with its engine; ``outage()`` (run on a thread once
    some messages went out) makes the database unusable for a while. Returns the headers
    the dashboard showed meanwhile."""
    mailing_id = Mailings(store, directory).add("Outage news", RECIPIENTS)
    engine = EngineThread(Engine(store, transport_for(relay.url), ENGINE)).start()
    app = SendStatusApp(store, zone_name=ZONE, blink=False, refresh_seconds=0.2, engine=engine)
    headers: list[str] = []
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            act(store, lifecycle.send_now, mailing_id)
            await until(pilot, lambda: mailing(store, mailing_id).sent >= 5, "a start", 20)
            outage_over = threading.Event()
            threading.Thread(target=lambda: (outage(), outage_over.set()), daemon=True).start()
            loop = asyncio.get_running_loop()
            deadline = loop.time() + OUTAGE_SECONDS + 30
            # the dashboard polls on by itself: nothing here refreshes it
            while not outage_over.is_set() or UNREACHABLE in app.sub_title:
                assert loop.time() < deadline, "the dashboard never recovered"
                headers.append(app.sub_title)
                await pilot.pause(0.1)

            def completed() -> bool:
                return mailing(store, mailing_id).state == "completed"

            await until(pilot, completed, "the mailing completed", 30)
            assert app.is_running and engine.alive
    finally:
        engine.stop()
    everyone = {f"person{i}@example.com" for i in range(RECIPIENTS)}
    assert set(relay.recipients()) == everyone
    return headers


@pytest.mark.idle  # waits out the outage: no bound but deadlines
@scenario
async def test_a_postgresql_outage_ends_neither_the_dashboard_nor_its_engine(tmp_path, relay):
    server = os.environ.get(POSTGRES_ENV)
    if not server:
        pytest.skip(f"{POSTGRES_ENV} is not set")
    name = f"sendstatus_outage_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.exec_driver_sql(f"CREATE DATABASE {name}")
    url = sa.engine.make_url(server).set(database=name).render_as_string(hide_password=False)
    store = Store(url)

    def outage() -> None:
        with admin.connect() as connection:
            connection.exec_driver_sql(f"ALTER DATABASE {name} ALLOW_CONNECTIONS false")
            connection.exec_driver_sql(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                f" WHERE datname = '{name}' AND pid <> pg_backend_pid()"
            )
            time.sleep(OUTAGE_SECONDS)
            connection.exec_driver_sql(f"ALTER DATABASE {name} ALLOW_CONNECTIONS true")

    try:
        headers = await send_through_an_outage(store, relay, tmp_path, outage)
    finally:
        store.dispose()
        with admin.connect() as connection:
            connection.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.dispose()
    assert any(UNREACHABLE in header for header in headers), headers[-5:]


@pytest.mark.idle  # waits out the outage: no bound but deadlines
@scenario
async def test_an_sqlite_file_locked_for_a_while_ends_neither_the_dashboard_nor_its_engine(
    tmp_path, relay
):
    path = tmp_path / "sendstatus.db"
    store = Store(f"sqlite:///{path}")

    def outage() -> None:
        locker = sqlite3.connect(path, isolation_level=None, timeout=30)
        try:
            locker.execute("BEGIN EXCLUSIVE")
            time.sleep(OUTAGE_SECONDS)
            locker.execute("COMMIT")
        finally:
            locker.close()

    try:
        headers = await send_through_an_outage(store, relay, tmp_path, outage)
    finally:
        store.dispose()
    # readers pass an SQLite write lock: what the operator sees is the engine's writes waiting
    assert any(LOCKED in header for header in headers), headers[-5:]


class TestTheHeader:
    def test_it_says_since_when_the_database_is_unreachable_in_the_operators_zone(self):
        from zoneinfo import ZoneInfo

        text = database_text(FIXED_NOW, ZoneInfo(ZONE))  # 09:00 UTC is 10:00 in Rome
        assert text == "database unreachable since 10:00, retrying"
        assert database_text(None, ZoneInfo(ZONE)) is None

    def test_the_database_comes_first_and_stays_at_80_columns(self):
        engine = EngineFact(EngineWhere.HERE, "here:1:ab", None, self_starting=True, running=1)
        parts = header_parts(
            None, engine, ZONE, None, database="database unreachable since 10:00, retrying"
        )
        status = header_status(parts, 80 - 18)
        assert status.startswith("database unreachable since 10:00, retrying")

    def test_a_locked_database_comes_first_instead_of_where_the_engine_runs(self):
        from zoneinfo import ZoneInfo

        locked = locked_text(FIXED_NOW, ZoneInfo(ZONE))
        assert locked == "database locked since 10:00, writes waiting"
        assert locked_text(None, ZoneInfo(ZONE)) is None
        status = header_status(header_parts(None, None, ZONE, None, database=locked), 80 - 18)
        assert status == f"{locked} · {ZONE}"


class TestOneTable:
    def test_every_trouble_has_a_severity_and_a_timeout(self):
        assert set(NOTICES) == set(Trouble)
        assert kind_of(StoreError("cannot read database x")) is Trouble.DATABASE
        assert kind_of(lifecycle.MailingNotFound(3)) is Trouble.REFUSED
        assert kind_of(ZeroDivisionError()) is Trouble.UNFORESEEN


@scenario
async def test_a_refresh_that_fails_is_told_and_the_next_one_draws(db, monkeypatch):
    """A read that fails, foreseen (the database) or not (a bug), ends nothing: the header or
    a notification says so, and the next refresh draws the panes and clears the header."""
    db.sending("Spring sale")
    real = app_module.read_snapshot
    failures = iter([StoreError("cannot read database x: connection refused"), KeyError("k")])

    def failing(*args, **kwargs):
        error = next(failures, None)
        if error is not None:
            raise error
        return real(*args, **kwargs)

    async with open_dashboard(db.store) as (app, pilot):
        monkeypatch.setattr(app_module, "read_snapshot", failing)
        await refresh(pilot)
        assert "database unreachable since 10:00, retrying" in app.sub_title
        assert any("connection refused" in text for text in notifications(app))
        await refresh(pilot)  # a bug this time: told as one
        assert any("unexpected error (KeyError" in text for text in notifications(app))
        await refresh(pilot)
        assert app.is_running
        assert "unreachable" not in app.sub_title
        assert any("answers again" in text for text in notifications(app))
