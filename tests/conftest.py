"""Shared fixtures: real databases (an SQLite file; PostgreSQL when a server is given)."""

import os
import secrets
import shutil
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from sendstatus_tui.cli.main import main
from sendstatus_tui.core.model import audit, verp
from sendstatus_tui.core.model.models import Secret, utc_now
from sendstatus_tui.core.store.store import Store
from sendstatus_tui.engine.engine import Engine
from sendstatus_tui.engine.thread import EngineThread
from sendstatus_tui.engine.transports import transport_for

from .helpers import FAST, Mailings, add_mailing
from .smtp_relay import RelayScript, SmtpRelay

POSTGRES_ENV = "SENDSTATUS_TEST_POSTGRES_URL"


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
    """A new, empty database: an SQLite file, or a fresh schema on the PostgreSQL server.

    Each test has its own (its tmp_path; a schema named at random, dropped afterwards), so
    tests running at once in pytest-xdist's workers (``-n 2``) never share a database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'sendstatus.db'}"
        return
    server = os.environ.get(POSTGRES_ENV)
    if not server:
        pytest.skip(f"{POSTGRES_ENV} is not set (.ci/run sets it when a server answers)")
    yield from _postgres_schema(server)


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'sendstatus.db'}"


def _postgres_schema(server: str) -> Iterator[str]:
    schema = f"sendstatus_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(server)
    with admin.begin() as connection:
        connection.exec_driver_sql(f"CREATE SCHEMA {schema}")
    url = sa.engine.make_url(server).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as connection:
            connection.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        admin.dispose()


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


def migrated_store(url: str, sqlite_template: Path) -> Store:
    """The store of a new database. A new SQLite file is a copy of the template, private to
    its owner as Store makes it, with a signing key of its own, as every database the
    migrations make has (0012); a PostgreSQL schema is migrated by Store."""
    if not url.startswith("sqlite:///"):
        return Store(url)
    path = Path(url.removeprefix("sqlite:///"))
    shutil.copyfile(sqlite_template, path)
    path.chmod(0o600)
    store = Store(url)
    with store.write() as session:
        key = session.get(Secret, verp.KEY_NAME)
        key.value, key.created_at = secrets.token_hex(32), utc_now()
    return store


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
        thread.stop()
