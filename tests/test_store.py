"""The store: migrations on open, SQLite settings, and the layering contract."""

import shutil
import sqlite3
import subprocess
import sys
import tomllib
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlmodel import SQLModel, select

from sendstatus_tui.core.model import settings
from sendstatus_tui.core.model.models import Mailing
from sendstatus_tui.core.model.waiting import WaitingKind
from sendstatus_tui.core.store.migrate import HEAD_REVISION, MIGRATIONS_DIR
from sendstatus_tui.core.store.store import Store

ROOT = Path(__file__).resolve().parents[1]


def test_head_revision_constant_is_alembics_head():
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    assert ScriptDirectory.from_config(config).get_heads() == [HEAD_REVISION]


def test_migrations_build_exactly_the_models(store):
    with store.engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), SQLModel.metadata)
    assert differences == []


def test_opening_twice_keeps_the_data(db_url, make_mailing):
    mailing_id = make_mailing()
    again = Store(db_url)
    with again.engine.connect() as connection:
        names = connection.execute(
            sa.text("SELECT name FROM mailing WHERE id = :id"), {"id": mailing_id}
        )
        assert names.scalar() == "Mailing 1"
    again.dispose()


def test_sqlite_runs_in_wal_with_a_busy_timeout(sqlite_url):
    store = Store(sqlite_url)
    with store.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 10_000
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


def test_a_write_transaction_holds_the_write_lock_from_begin(sqlite_url):
    """A second writer waits at BEGIN instead of failing half-way through."""
    store = Store(sqlite_url)
    other = sqlite3.connect(sqlite_url.removeprefix("sqlite:///"), timeout=0, isolation_level=None)
    with store.write(), pytest.raises(sqlite3.OperationalError, match="database is locked"):
        other.execute("BEGIN IMMEDIATE")
    other.execute("BEGIN IMMEDIATE")  # free again once the transaction ends
    other.execute("ROLLBACK")
    other.close()


def test_the_default_database_lives_in_the_user_data_directory(tmp_path, monkeypatch):
    from sendstatus_tui import config

    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert config.db_url(None) == f"sqlite:///{tmp_path}/sendstatus/sendstatus.db"
    monkeypatch.setenv("SENDSTATUS_DB", "sqlite:////elsewhere.db")
    assert config.db_url(None) == "sqlite:////elsewhere.db"
    assert config.db_url("postgresql://db/x") == "postgresql://db/x"


def test_layers_keep_their_imports():
    lint_imports = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert lint_imports, "import-linter is part of the test dependencies"
    result = subprocess.run([lint_imports], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    names = [contract["name"] for contract in contracts["contracts"]]
    report = " ".join(result.stdout.split())  # lint-imports wraps long names
    assert all(f"{name} KEPT" in report for name in names), report
    assert f"Contracts: {len(names)} kept, 0 broken." in report


def database_at_revision(url: str, revision: str, statement: str) -> None:
    """A database migrated only as far as ``revision``, where ``statement`` then ran: what an
    older version of sendstatus left."""
    from alembic import command

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        # db_url's PostgreSQL database is a migrated copy unless the test is marked so
        assert not sa.inspect(connection).has_table("alembic_version"), "mark it empty_database"
        config.attributes["connection"] = connection
        command.upgrade(config, revision)
        connection.exec_driver_sql(statement)
    engine.dispose()


def test_an_older_database_is_upgraded_with_its_data(sqlite_url):
    database_at_revision(
        sqlite_url,
        "0001",
        "INSERT INTO mailing (name, subject, sender, field_names, state, created_at,"
        " updated_at, total, sent, failed, deferred) VALUES ('Old', 'S', 'a@b.example',"
        " '[]', 'standby', '2026-01-01 00:00:00', '2026-01-01 00:00:00', 0, 0, 0, 0)",
    )
    store = Store(sqlite_url)
    with store.engine.connect() as connection:
        row = connection.exec_driver_sql("SELECT name, resent_in_doubt FROM mailing").one()
        version = connection.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()
    assert tuple(row) == ("Old", 0) and version == HEAD_REVISION


@pytest.mark.parametrize("stored, kept", [("0", False), ("0/min", False), ("600/min", True)])
def test_a_stored_rate_of_zero_becomes_unlimited_on_upgrade(sqlite_url, stored, kept):
    """Zero meant unlimited before it was refused: the upgrade unsets it, so that engines do
    not stop claiming on an error; any other rate stays as it was."""
    database_at_revision(
        sqlite_url,
        "0010",
        "INSERT INTO setting (key, value, updated_at) VALUES"
        f" ('rate', '{stored}', '2026-01-01 00:00:00')",
    )
    store = Store(sqlite_url)
    with store.engine.connect() as connection:
        rows = connection.exec_driver_sql("SELECT value FROM setting WHERE key = 'rate'").all()
    assert [tuple(row) for row in rows] == ([(stored,)] if kept else [])


def test_the_relay_setting_becomes_the_relay_named_default_on_upgrade(sqlite_url):
    """Issue 20: the single relay setting of older versions is the relay named default,
    which `config get relay` still reads, and no setting is left behind."""
    database_at_revision(
        sqlite_url,
        "0017",
        "INSERT INTO setting (key, value, updated_at) VALUES"
        " ('relay', 'smtp://old.example.com:2525', '2026-01-01 00:00:00')",
    )
    store = Store(sqlite_url)
    with store.engine.connect() as connection:
        rows = connection.exec_driver_sql("SELECT name, url, weight FROM relay").all()
        left = connection.exec_driver_sql("SELECT value FROM setting WHERE key = 'relay'").all()
    assert [tuple(row) for row in rows] == [("default", "smtp://old.example.com:2525", 1)]
    assert left == []
    with store.read() as session:
        assert settings.read(session, "relay") == "smtp://old.example.com:2525"


@pytest.mark.empty_database  # an older version's database, made here
def test_what_a_mailing_waits_for_becomes_a_kind_on_upgrade(db_url):
    """Issue 20: a mailing waiting outside its window, or for its relay, as older versions
    told it by the text alone, waits for the same kind after the upgrade, since the row's
    last change; one that waits for nothing has no kind."""
    row = (
        "('{name}', 'S', 'a@b.example', '[]', 'sending', '2026-01-01 00:00:00',"
        " '2026-01-01 10:00:00', 0, 0, 0, 0, 0, {reason}, {until})"
    )
    database_at_revision(
        db_url,
        "0019",
        "INSERT INTO mailing (name, subject, sender, field_names, state, created_at, updated_at,"
        " total, sent, failed, deferred, resent_in_doubt, waiting_reason, waiting_until) VALUES "
        + ", ".join(
            row.format(name=name, reason=reason, until=until)
            for name, reason, until in [
                ("Window", "'outside its sending window'", "'2026-01-05 08:00:00'"),
                ("Relay", "'cannot reach smtp://relay:25: refused'", "'2026-01-01 10:01:10'"),
                ("Flowing", "NULL", "NULL"),
            ]
        ),
    )
    store = Store(db_url)
    with store.read() as session:
        found = {
            m.name: (m.waiting_kind, m.waiting_since, m.waiting_until)
            for m in session.exec(select(Mailing))
        }
    since = datetime(2026, 1, 1, 10, tzinfo=UTC)
    assert found == {
        "Window": (WaitingKind.WINDOW, since, datetime(2026, 1, 5, 8, tzinfo=UTC)),
        "Relay": (WaitingKind.RELAY_DOWN, since, datetime(2026, 1, 1, 10, 1, 10, tzinfo=UTC)),
        "Flowing": (None, None, None),
    }
    store.dispose()
