"""Which commands may create, migrate or write the database: those that only read never do
(they work on a read-only file), `init` creates or upgrades it, and a missing or outdated
database is one `error:` line naming it."""

import hashlib
import json
import subprocess
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from sendstatus_tui.cli.main import main
from sendstatus_tui.core.store.migrate import HEAD_REVISION, MIGRATIONS_DIR
from sendstatus_tui.core.store.store import Store, StoreError, may_write
from sendstatus_tui.errors import mask_url

from .helpers import open_dashboard, scenario, select_mailing, settle, write_file

READING_COMMANDS = [("ls",), ("ls", "--json"), ("show", "1"), ("log",), ("log", "1")]


@pytest.fixture
def cli(capsys):
    def run(url: str, *args: str) -> tuple[int, str, str]:
        status = main(["--db", url, *args])
        captured = capsys.readouterr()
        return status, captured.out, captured.err

    return run


def add_mailing(cli, url: str, directory: Path) -> None:
    body = write_file(directory, "body.txt", "Hello\n")
    csv = write_file(directory, "people.csv", "email\nann@example.com\nbob@example.com\n")
    status, _, err = cli(
        url, "mailing", "add", "--name", "Weekly", "--subject", "News",
        "--from", "news@shop.example.com", "--text", str(body), "--recipients", str(csv),
    )  # fmt: skip
    assert status == 0, err


def fingerprint(path: Path) -> tuple[str, int]:
    return hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns


@pytest.fixture
def read_only_mount(tmp_path):
    """A directory whose files nobody can write, not even root: a read-only bind mount."""
    source, mount = tmp_path / "source", tmp_path / "read-only"
    source.mkdir()
    mount.mkdir()
    if subprocess.run(["mount", "--bind", str(source), str(mount)]).returncode != 0:
        pytest.skip("cannot bind-mount here (not root, or no mount namespace)")
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(mount)], check=True)
        yield source, mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


# --- reading changes nothing ------------------------------------------------------------------


@pytest.mark.parametrize("args", READING_COMMANDS + [("--no-engine",)])
def test_a_missing_database_is_an_error_naming_it_and_is_not_created(cli, tmp_path, args):
    path = tmp_path / "no" / "such" / "dir" / "x.db"
    status, out, err = cli(f"sqlite:///{path}", *args)
    assert (status, out) == (1, "")
    assert err.startswith(f"error: no database at {path}; `sendstatus init` creates one")
    assert len(err.splitlines()) == 1
    assert not (tmp_path / "no").exists()  # neither the file nor its directories


def test_reading_commands_work_on_a_read_only_file(cli, tmp_path, read_only_mount):
    source, mount = read_only_mount
    add_mailing(cli, f"sqlite:///{source / 'x.db'}", tmp_path)
    before = {p.name: fingerprint(p) for p in source.iterdir()}
    url = f"sqlite:///{mount / 'x.db'}"
    for args in READING_COMMANDS:
        status, out, err = cli(url, *args)
        assert (status, err) == (0, ""), args
        assert "Weekly" in out, args
    assert {p.name: fingerprint(p) for p in source.iterdir()} == before


def test_a_write_on_a_read_only_file_is_one_error_line(cli, tmp_path, read_only_mount):
    source, mount = read_only_mount
    add_mailing(cli, f"sqlite:///{source / 'x.db'}", tmp_path)
    status, _, err = cli(f"sqlite:///{mount / 'x.db'}", "send-now", "1")
    assert status == 1 and err.startswith(f"error: cannot open database sqlite:///{mount}")
    assert err.endswith("(its directory is read-only: commands that only read work)\n")
    assert len(err.splitlines()) == 1


def test_reading_leaves_the_file_as_it_was(cli, tmp_path):
    """Even where it could write: the reading commands open the file read-only."""
    url = f"sqlite:///{tmp_path / 'x.db'}"
    add_mailing(cli, url, tmp_path)
    before = fingerprint(tmp_path / "x.db")
    for args in READING_COMMANDS:
        assert cli(url, *args)[0] == 0
    assert fingerprint(tmp_path / "x.db") == before


def test_a_reading_store_cannot_write(db_url):
    Store(db_url).dispose()  # the schema exists
    reader = Store(db_url, create=False, migrate=False, read_only=True)
    # SQLite: "attempt to write a readonly database"; PostgreSQL: "... read-only transaction"
    with pytest.raises(StoreError, match="read-?only"), reader.write() as session:
        session.execute(
            sa.text("INSERT INTO setting (key, value, updated_at) VALUES ('a', 'b', :at)"),
            {"at": "2026-01-01"},
        )
    reader.dispose()


# --- creating and upgrading, and saying so ---------------------------------------------------


@pytest.mark.empty_database
def test_init_creates_then_finds_it_up_to_date(cli, db_url):
    status, out, err = cli(db_url, "init")
    assert (status, out, err) == (0, f"created database {mask_url(db_url)}\n", "")
    assert cli(db_url, "init") == (0, f"database {mask_url(db_url)} is up to date\n", "")
    status, out, _ = cli(db_url, "ls", "--json")
    assert (status, json.loads(out)) == (0, [])


def test_mailing_add_creates_the_database_and_says_so_once(cli, db_url, tmp_path):
    add_mailing(cli, db_url, tmp_path)  # asserts success
    body = tmp_path / "body.txt"
    status, _, err = cli(
        db_url, "mailing", "add", "--name", "Second", "--subject", "S", "--from",
        "news@shop.example.com", "--text", str(body), "--recipients", str(tmp_path / "people.csv"),
    )  # fmt: skip
    assert (status, err) == (0, "")  # the second finds it there


def old_database(url: str, revision: str) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)
    engine.dispose()


@pytest.mark.empty_database
def test_an_old_schema_is_refused_by_readers_and_upgraded_by_init(cli, db_url):
    old_database(db_url, "0004")
    status, out, err = cli(db_url, "ls")
    assert (status, out) == (1, "")
    assert err == (
        f"error: database {mask_url(db_url)} has an older schema (0004; this version needs"
        f" {HEAD_REVISION}); `sendstatus init` brings it up to date (so does any command that"
        " writes)\n"
    )
    assert cli(db_url, "ls")[0] == 1  # still old: reading did not migrate it
    status, out, _ = cli(db_url, "init")
    assert (status, out) == (0, f"upgraded database {mask_url(db_url)} from schema 0004\n")
    assert cli(db_url, "ls")[0] == 0


def test_a_schema_from_a_newer_version_is_refused_by_everyone(cli, db_url):
    Store(db_url).dispose()
    engine = sa.create_engine(db_url)
    with engine.begin() as connection:
        connection.execute(sa.text("UPDATE alembic_version SET version_num = '0999'"))
    engine.dispose()
    for args in (("ls",), ("init",), ("send-now", "1")):
        status, _, err = cli(db_url, *args)
        assert status == 1
        assert err == (
            f"error: database {mask_url(db_url)} has schema 0999, unknown to this version of"
            " sendstatus (a newer one wrote it): upgrade sendstatus\n"
        )


def test_commands_that_change_mailings_never_create_a_database(cli, tmp_path):
    path = tmp_path / "typo.db"
    for args in (("send-now", "1"), ("stop", "1"), ("config", "rate", "10/s")):
        status, _, err = cli(f"sqlite:///{path}", *args)
        assert status == 1 and err.startswith(f"error: no database at {path}")
    assert not path.exists()


@scenario
async def test_a_pure_client_dashboard_shows_a_read_only_file(cli, tmp_path, read_only_mount):
    """What `sendstatus --no-engine` opens on a file it may not write: a reading store (the
    command line's choice, `may_write`); the panes show, and an action says it cannot write."""
    source, mount = read_only_mount
    add_mailing(cli, f"sqlite:///{source / 'x.db'}", tmp_path)
    before = {p.name: fingerprint(p) for p in source.iterdir()}
    url = f"sqlite:///{mount / 'x.db'}"
    assert not may_write(url) and may_write(f"sqlite:///{source / 'x.db'}")
    store = Store(url, create=False, migrate=False, read_only=True)
    async with open_dashboard(store) as (app, pilot):
        await select_mailing(pilot, 1)
        await pilot.press("s")
        await settle(pilot)
        assert any("readonly database" in str(n.message) for n in app._notifications)
    store.dispose()
    assert {p.name: fingerprint(p) for p in source.iterdir()} == before
