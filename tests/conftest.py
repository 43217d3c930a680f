"""Shared fixtures: real databases (an SQLite file; PostgreSQL when a server is given)."""

import os
import resource
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import textual._wait

from sendstatus_tui.cli.main import main
from sendstatus_tui.core.model import audit
from sendstatus_tui.core.store.store import Store
from sendstatus_tui.engine.engine import Engine
from sendstatus_tui.engine.thread import EngineThread
from sendstatus_tui.engine.transports import transport_for

from .helpers import FAST, Mailings, add_mailing, migrated_store, stop_engine_thread
from .postgres_copies import PostgresCopies, create_database, database_url, drop_database
from .smtp_relay import RelayScript, SmtpRelay

POSTGRES_ENV = "SENDSTATUS_TEST_POSTGRES_URL"


def pytest_collection_modifyitems(items):
    """A test is in one of the README's three sets: the fast one, idle or slow. The long
    tests run first: at the end of the fast set they kept one worker busy for 20 s while
    the others had finished (a stable sort: the rest keep their order)."""
    items.sort(key=lambda item: item.get_closest_marker("long") is None)
    both = [
        item.nodeid
        for item in items
        if item.get_closest_marker("slow") and item.get_closest_marker("idle")
    ]
    if both:
        raise pytest.UsageError(f"marked both slow and idle: {', '.join(both)}")


# Textual's test pilot waits after each key press until the process is idle, polling every
# 20 ms: the dashboard tests spent most of their time asleep there (109 s of the 2-core run
# of test_dashboard_*, 66 s with a poll every 2 ms). What a test needs to have happened it
# waits for itself (helpers.settle, until, resize), not for a poll to be long enough.
# Textual is pinned (pyproject.toml): these are its module's own names.
textual._wait.SLEEP_GRANULARITY = 1 / 500
textual._wait.SLEEP_IDLE = textual._wait.SLEEP_GRANULARITY / 20


def pytest_addoption(parser):
    parser.addoption(
        "--core-share",
        metavar="FILE",
        help="append each test's wall time and processor time (the test's process and the "
        "processes it waited for) to FILE, tab-separated: how a test is put in the idle set",
    )


def _processor_seconds() -> float:
    own, children = (
        resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
    )
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    """With --core-share, measures the share of a core a test takes (docs/maintenance.md)."""
    path = item.config.getoption("--core-share")
    if not path:
        yield
        return
    started, processor = time.perf_counter(), _processor_seconds()
    yield
    wall, processor = time.perf_counter() - started, _processor_seconds() - processor
    with open(path, "a") as out:
        out.write(f"{item.nodeid}\t{wall:.2f}\t{processor:.2f}\n")


@pytest.fixture(autouse=True)
def no_user_database(tmp_path, monkeypatch):
    """A test never touches the operator's own database or settings."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))
    monkeypatch.delenv("SENDSTATUS_DB", raising=False)
    monkeypatch.delenv("SENDSTATUS_TZ", raising=False)
    # operators act from the command line unless a dashboard opens (and says so), as one
    # user, neither through sudo nor over SSH unless a test says so: the trail is the same
    # on every machine
    monkeypatch.setattr(audit, "_operator_source", audit.Source.CLI)
    monkeypatch.setenv("LOGNAME", "ann")
    for variable in ("SUDO_USER", "SSH_CONNECTION", "SSH_CLIENT"):
        monkeypatch.delenv(variable, raising=False)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path) -> Iterator[str]:
    """A new database: an SQLite file not there yet, or a database on the PostgreSQL server
    copied from one migrated to the newest schema (postgres_template), as the first Store()
    on it would have left it; marked ``empty_database``, an empty one, as an operator's
    new database is before the first command.

    Each test has its own (its tmp_path; a database named at random, emptied for a later test
    or dropped afterwards: postgres_recycling.py), so tests running at once in pytest-xdist's
    workers (``-n 3``) never share a database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'sendstatus.db'}"
        return
    server = os.environ.get(POSTGRES_ENV)
    if not server:
        pytest.skip(f"{POSTGRES_ENV} is not set (.ci/run sets it when a server answers)")
    if request.node.get_closest_marker("empty_database"):
        yield from _empty_postgres_database(server)
    else:
        copies = request.getfixturevalue("postgres_copies")
        url = copies.take()
        yield url
        copies.give_back(url)


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'sendstatus.db'}"


# Migrating a new PostgreSQL schema took a fifth of a second of each of some 300 tests;
# copying a database migrated once a session (CREATE DATABASE ... TEMPLATE) takes a tenth
# of that, and is done ahead, on a thread (postgres_copies.py). The template is made by the
# code's own migrations, so it is always at their head.


@pytest.fixture(scope="session")
def postgres_copies() -> Iterator[PostgresCopies]:
    """Copies of a database on the PostgreSQL server migrated to the newest schema: one
    template a session (each xdist worker makes its own), dropped at its end with them."""
    server = os.environ[POSTGRES_ENV]
    name = create_database(server, prefix="sendstatus_template")
    copies = None
    try:
        Store(database_url(server, name)).dispose()  # no connection left: copies need none
        copies = PostgresCopies(server, name)
        yield copies
    finally:
        if copies is not None:
            copies.close()
        drop_database(server, name)


def _empty_postgres_database(server: str) -> Iterator[str]:
    name = create_database(server)
    try:
        yield database_url(server, name)
    finally:
        drop_database(server, name)


# Migrating a new SQLite file runs some sixty statements, a quarter of a second on a busy
# machine, for each test. A test's store starts instead from a copy of a file the
# migrations made once a session (each xdist worker makes its own): what its own Store()
# would have made, the signing key apart, which the copy gets anew (migrated_store).


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory) -> Path:
    """An SQLite file migrated to the newest schema, for copies."""
    path = tmp_path_factory.mktemp("template") / "sendstatus.db"
    Store(f"sqlite:///{path}").dispose()  # the last connection checkpoints the WAL
    return path


@pytest.fixture
def store(db_url, sqlite_template) -> Iterator[Store]:
    store = migrated_store(db_url, sqlite_template)
    yield store
    store.dispose()


@pytest.fixture
def make_mailing(store, tmp_path):
    """Creates a parked mailing with ``recipients`` addresses; returns its id."""
    counter = iter(range(1, 10_000))

    def make(name: str | None = None, recipients: int = 3) -> int:
        number = next(counter)
        return add_mailing(store, tmp_path, recipients, name=name or f"Mailing {number}")

    return make


@pytest.fixture
def relay():
    """A real SMTP server on loopback (aiosmtpd), accepting everything."""
    relay = SmtpRelay().start()
    yield relay
    relay.stop()


@pytest.fixture
def relays():
    """Starts relays on loopback (stopped again at the end)."""
    started: list[SmtpRelay] = []

    def start(
        script: RelayScript | None = None, *, running: bool = True, pipelining: bool = True
    ) -> SmtpRelay:
        relay = SmtpRelay(script, pipelining=pipelining)
        started.append(relay)
        return relay.start() if running else relay

    yield start
    for relay in started:
        relay.stop()


@pytest.fixture
def run(db_url, capsys):
    """Runs ``sendstatus --db <db> ARGS`` in this process; returns (exit status, stdout,
    stderr)."""

    def run_command(*args: str) -> tuple[int, str, str]:
        status = main(["--db", db_url, *args])
        captured = capsys.readouterr()
        return status, captured.out, captured.err

    return run_command


@pytest.fixture
def now() -> datetime:
    return datetime.now(UTC)


@pytest.fixture
def db(sqlite_url, sqlite_template, tmp_path) -> Iterator[Mailings]:
    """An SQLite file for the dashboard's tests, written to as another operator would."""
    store = migrated_store(sqlite_url, sqlite_template)
    yield Mailings(store, tmp_path)
    store.dispose()


@pytest.fixture
def engine_for(store):
    threads = []

    def start(relay, settings=FAST, credentials=None) -> EngineThread:
        engine = Engine(store, transport_for(relay.url, credentials), settings)
        thread = EngineThread(engine).start()
        threads.append(thread)
        return thread

    yield start
    for thread in threads:
        stop_engine_thread(thread)
