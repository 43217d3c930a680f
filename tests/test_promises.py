"""Promises that hold (found by an adversarial probe): bad input never acts, no
tracebacks, SQLite URLs name the file written, wide CSVs, private files, exports that cannot
run as formulas, no side effects from failed commands, and messages that read."""

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

from sendstatus_tui.cli.context import Context
from sendstatus_tui.cli.main import _global_options, _parser, main

from .helpers import write_file


@pytest.fixture
def run(capsys):
    """Runs ``sendstatus ARGS`` in this process; returns (exit status, stdout, stderr)."""

    def run_command(*args: str) -> tuple[int, str, str]:
        try:
            status = main(list(args))
        except SystemExit as exit:  # a usage error
            status = exit.code
        captured = capsys.readouterr()
        return status, captured.out, captured.err

    return run_command


def sendstatus(*args: str, cwd: Path | None = None, env: dict | None = None):
    """The real command, in a process of its own."""
    return subprocess.run(
        [sys.executable, "-m", "sendstatus_tui.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        env=env,
    )


@pytest.fixture
def files(tmp_path):
    body = write_file(tmp_path, "body.txt", "Hello\n")
    csv = write_file(tmp_path, "people.csv", "email\nann@example.com\nbob@example.com\n")
    return body, csv


def add_args(db: str | None, body: Path, csv: Path | str) -> list[str]:
    sender = "a@shop.example.com"
    return ["--db", db, "mailing", "add", "--name", "N", "--subject", "S", "--from", sender,
            "--text", str(body), "--recipients", str(csv)]  # fmt: skip


def one_error(status: int, err: str) -> str:
    assert "Traceback" not in err
    assert status == 1, err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def states(run, db: str) -> list[tuple[int, str]]:
    status, out, err = run("--db", db, "ls", "--json")
    assert status == 0, err
    return [(m["id"], m["state"]) for m in json.loads(out)]


# --- 1. bad input never acts -------------------------------------------------------------


def test_schedule_at_blank_is_refused_and_sends_nothing(run, tmp_path, files):
    db = f"sqlite:///{tmp_path / 'sendstatus.db'}"
    assert run(*add_args(db, *files))[0] == 0
    for blank in ("", " ", "\t"):
        status, out, err = run("--db", db, "schedule", "1", "--at", blank, "--yes")
        assert status == 2, err
        assert "Traceback" not in err
        assert "error: argument --at: blank value" in err
        assert out == ""
    assert states(run, db) == [(1, "standby")]  # still parked: nothing enqueued, nothing sent


def test_mailing_add_at_blank_is_refused_and_creates_nothing(tmp_path, files):
    db = f"sqlite:///{tmp_path / 'sendstatus.db'}"
    added = sendstatus(*add_args(db, *files), "--at", "")
    assert added.returncode == 2
    assert "error: argument --at: blank value" in added.stderr
    assert not (tmp_path / "sendstatus.db").exists()


def _value_options(parser: argparse.ArgumentParser, words: tuple[str, ...] = ()):
    """(the words of a command, an option of it that takes a value), for every command."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, subparser in action.choices.items():
                yield from _value_options(subparser, (*words, name))
        elif action.option_strings and action.nargs != 0:
            yield words, action.option_strings[-1]


VALUE_OPTIONS = sorted(set(_value_options(_parser(Context(_global_options())))))


def test_every_option_of_every_command_is_checked():
    # the list the next test walks holds every command's own options, not only the global
    assert len(VALUE_OPTIONS) > 40
    assert (("schedule",), "--at") in VALUE_OPTIONS
    assert (("mailing", "add"), "--recipients") in VALUE_OPTIONS
    assert (("failed",), "--csv") in VALUE_OPTIONS


@pytest.mark.parametrize(("words", "option"), VALUE_OPTIONS, ids=lambda v: " ".join(v))
def test_a_blank_value_of_any_option_is_a_usage_error_naming_it(
    run, tmp_path, words, option, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    for blank in ("", "  "):
        status, out, err = run(*words, option, blank)
        assert status == 2, err
        assert f"error: argument {option}" in err and "blank value" in err, err
        assert out == "" and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []  # nothing was created


def test_config_set_blank_does_not_unset(run, tmp_path):
    db = f"sqlite:///{tmp_path / 'sendstatus.db'}"
    assert run("--db", db, "init")[0] == 0
    assert run("--db", db, "config", "set", "relay", "smtp://127.0.0.1:2525")[0] == 0
    status, _, err = run("--db", db, "config", "set", "relay", "")
    assert status == 2 and "blank value" in err
    _, out, _ = run("--db", db, "config", "get", "relay")
    assert out.strip().endswith("smtp://127.0.0.1:2525"), out


# --- 8. wording ----------------------------------------------------------------------------


def test_retry_refused_reads(run, tmp_path, files):
    db = f"sqlite:///{tmp_path / 'sendstatus.db'}"
    assert run(*add_args(db, *files), "--now", "--yes")[0] == 0  # no engine runs here
    line = one_error(*run("--db", db, "retry", "1", "--yes")[::2])
    assert line == (
        "error: cannot retry the failed recipients of mailing 1: it is starting up"
        " (retrying the failed recipients applies to a mailing that is completed, parked)"
    )


def test_no_valid_row_offers_no_skip_invalid(run, tmp_path, files):
    body, _ = files
    db = f"sqlite:///{tmp_path / 'sendstatus.db'}"
    csv = write_file(tmp_path, "bad.csv", "email\nnot-an-address\nalso bad\n")
    status, _, err = run(*add_args(db, body, csv))
    assert status == 1
    first = err.splitlines()[0]
    assert first == (
        f"error: {csv}: 2 invalid rows, nothing imported"
        " (no row is valid: there is nothing to import)"
    )
    assert "--skip-invalid" not in err
    one = write_file(tmp_path, "one.csv", "email\nann@example.com\nbad\n")
    status, _, err = run(*add_args(db, body, one))
    assert "(--skip-invalid imports the 1 valid one)" in err.splitlines()[0]


# --- 2. no tracebacks ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [("log",), ("show",), ("stop",), ("send-now", "--yes"), ("failed",), ("retry", "--yes")],
    ids=lambda c: c[0],
)
def test_huge_ids_are_not_found(run, tmp_path, files, command):
    db = f"sqlite:///{tmp_path / 'sendstatus.db'}"
    assert run(*add_args(db, *files))[0] == 0
    for too_big in ("99999999999999999999999", str(2**63)):
        status, _, err = run("--db", db, command[0], too_big, *command[1:])
        assert (status, err) == (1, f"error: no mailing with id {too_big}\n")
    assert states(run, db) == [(1, "standby")]


def test_workers_are_bounded(tmp_path):
    db = f"sqlite:///{tmp_path / 'sendstatus.db'}"
    for count in ("65", "99999999999999999999"):
        engine = sendstatus("--db", db, "engine", "--workers", count)
        assert engine.returncode == 2
        assert "Traceback" not in engine.stderr
        assert engine.stderr.splitlines()[-1] == (
            f"sendstatus engine: error: argument --workers: too many workers: {count}"
            " (at most 64; auto: one per core)"
        )
    assert not (tmp_path / "sendstatus.db").exists()


@pytest.mark.parametrize(
    ("query", "says"),
    [
        ("timeout=" + "9" * 400, "relay option timeout=999999999999... (400 digits): too large"),
        ("timeout=99999999999999999", "timeout=99999999999999999: too large"),
        ("timeout=3601", "timeout=3601: too large (give a number from 1 to 3600)"),
        ("pool=99999999999999999999", "pool=99999999999999999999: too large"),
        ("pool=1001", "pool=1001: too large (give a number from 1 to 1000)"),
        ("pool=²", "relay option pool='²': expected a positive number"),
    ],
)
def test_huge_relay_url_numbers_are_one_line(tmp_path, run, query, says):
    db = f"sqlite:///{tmp_path / 'sendstatus.db'}"
    url = f"smtp://127.0.0.1:2525?{query}"
    # the engine in a process of its own: were the URL taken, it would start sending
    engine = sendstatus("--db", db, "--smtp", url, "engine")
    assert says in one_error(engine.returncode, engine.stderr)
    assert run("--db", db, "init")[0] == 0
    status, _, err = run("--db", db, "config", "set", "relay", url)
    assert says in one_error(status, err)


def _in_a_terminal(
    args: list[str], keys: bytes = b"q", seconds: float = 60, drawn: bytes = b"Sends to schedule"
) -> tuple[int, str]:
    """Runs the real command in a pseudo-terminal, types ``keys`` once it wrote ``drawn``
    (by default, once it drew a screen); (its exit status, all it wrote)."""
    import os
    import pty
    import select
    import time

    pid, fd = pty.fork()
    if pid == 0:  # the child
        os.environ["TERM"] = "xterm-256color"
        os.execv(sys.executable, [sys.executable, "-m", "sendstatus_tui.cli.main", *args])
    output, typed, deadline = b"", False, time.monotonic() + seconds
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                data = os.read(fd, 65536)
            except OSError:  # the child is gone
                break
            if not data:
                break
            output += data
        if not typed and drawn in output:
            os.write(fd, keys)
            typed = True
    else:
        os.kill(pid, 9)
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    return os.waitstatus_to_exitcode(status), output.decode(errors="replace")


@pytest.mark.parametrize("engine", [False, True], ids=["no-engine", "engine"])
def test_the_dashboard_on_a_damaged_file_is_one_error_line(tmp_path, files, engine, monkeypatch):
    import sqlite3

    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    path = tmp_path / "sendstatus.db"
    db = f"sqlite:///{path}"
    args = add_args(db, *files)
    args[args.index("--name") + 1] = "Probe-of-a-damaged-file"
    assert sendstatus(*args).returncode == 0
    with sqlite3.connect(path) as connection:  # a table the dashboard reads, ls does not
        (root,) = connection.execute(
            "SELECT rootpage FROM sqlite_master WHERE name = 'engine'"
        ).fetchone()
    connection.close()
    data = bytearray(path.read_bytes())
    data[(root - 1) * 4096 : root * 4096] = b"\xaa" * 4096
    path.write_bytes(bytes(data))
    assert sendstatus("--db", db, "ls").returncode == 0  # ls still works
    # it ends by itself; `q` only once it showed the mailing it should not have read (a key
    # typed as the screen first draws, before the first read, would end it with 0)
    status, output = _in_a_terminal(
        ["--db", db, *([] if engine else ["--no-engine"])], drawn=b"Probe-of-a-damaged-file"
    )
    assert "Traceback" not in output and "Error" not in output.replace("error:", "")
    assert status == 1
    assert f"error: cannot read database {db}: the database file is corrupt" in output


# --- 3. SQLite URLs name the file written --------------------------------------------------


@pytest.mark.parametrize(
    ("name", "file"),
    [("a%20b.db", "a b.db"), ("what%3F.db", "what?.db"), ("p%25.db", "p%.db")],
)
def test_the_file_written_is_the_one_the_url_names(run, tmp_path, files, name, file):
    folder = tmp_path / "db"
    folder.mkdir()
    db = f"sqlite:///{folder}/{name}"
    assert run(*add_args(db, *files))[0] == 0
    assert {p.name for p in folder.iterdir()} <= {file, f"{file}-wal", f"{file}-shm"}
    assert (folder / file).exists()
    assert states(run, db) == [(1, "standby")]


def test_a_question_mark_in_an_sqlite_url_writes_nothing(tmp_path, files):
    folder = tmp_path / "db"
    folder.mkdir()
    db = f"sqlite:///{folder}/what?.db"
    line = one_error(*_status_err(sendstatus(*add_args(db, *files))))
    assert "an SQLite URL takes no options after '?'; in a file name, write '?' as %3F" in line
    assert list(folder.iterdir()) == []


def test_the_default_database_in_a_folder_with_odd_characters(tmp_path, files):
    import os

    data = tmp_path / "my data %20 ?"
    env = {**os.environ, "XDG_DATA_HOME": str(data)}
    env.pop("SENDSTATUS_DB", None)
    assert sendstatus(*add_args(None, *files)[2:], env=env).returncode == 0
    assert (data / "sendstatus" / "sendstatus.db").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["body.txt", data.name, "people.csv"]


def test_a_tilde_is_the_home_directory_for_every_command(tmp_path, files):
    import os

    env = {**os.environ, "HOME": str(tmp_path / "home")}
    db = "sqlite:///~/mail.db"
    assert sendstatus(*add_args(db, *files), env=env, cwd=tmp_path).returncode == 0
    assert (tmp_path / "home" / "mail.db").exists()
    assert not (tmp_path / "~").exists()
    listed = sendstatus("--db", db, "ls", "--json", env=env, cwd=tmp_path)
    assert [m["id"] for m in json.loads(listed.stdout)] == [1]


def _status_err(done) -> tuple[int, str]:
    return done.returncode, done.stderr


# --- 4. wide CSVs --------------------------------------------------------------------------


def test_a_wide_csv_imports_in_linear_time(run, tmp_path, files):
    import time

    body, _ = files

    def import_seconds(columns: int) -> float:
        names = [f"c{i}" for i in range(columns)]
        csv = tmp_path / f"wide{columns}.csv"
        rows = "".join(f"p{r}@example.com,{','.join('v' * len(names))}\n" for r in range(3))
        csv.write_text(f"email,{','.join(names)}\n{rows}")
        db = f"sqlite:///{tmp_path / f'wide{columns}.db'}"
        started = time.perf_counter()
        status, out, err = run(*add_args(db, body, csv))
        assert status == 0, err
        assert "created with 3 recipients" in out
        return time.perf_counter() - started

    narrow, wide = import_seconds(20_000), import_seconds(100_000)
    # five times the columns: about five times the time when linear, 25 when quadratic (it
    # was 4 s and 137 s: a repeated-column check that counted every name in the header)
    assert wide < 12 * narrow + 1, (narrow, wide)
    assert wide < 60


# --- 6. exports cannot run as formulas ------------------------------------------------------

HOSTILE = ['=HYPERLINK("http://x")', "+1", "-2", "@SUM(A1)", "\tx", "\rx", "plain", "a=b"]


def test_exports_defuse_formulas_but_never_an_address(run, tmp_path, files):
    import csv as csv_module

    body, _ = files
    db = f"sqlite:///{tmp_path / 'sendstatus.db'}"
    people = tmp_path / "hostile.csv"
    with open(people, "w", newline="", encoding="utf-8") as stream:
        writer = csv_module.writer(stream)
        writer.writerow(["email", "note"])
        for index, value in enumerate(HOSTILE):
            writer.writerow([_address(index), value])
    assert run(*add_args(db, body, people))[0] == 0
    # as the engine leaves them: failed, with the relay's reply
    from sqlmodel import select

    from sendstatus_tui.core.model.models import Recipient, RecipientStatus
    from sendstatus_tui.core.store.store import Store

    store = Store(db)
    with store.write() as session:
        for recipient in session.exec(select(Recipient)).all():
            recipient.status = RecipientStatus.FAILED
            recipient.failure_class = "5xx"
            recipient.last_reply = "=550 no"
    store.dispose()
    exported = tmp_path / "failed.csv"
    status, _, err = run("--db", db, "failed", "1", "--csv", str(exported))
    assert status == 0, err
    with open(exported, newline="", encoding="utf-8") as stream:
        rows = list(csv_module.reader(stream))
    assert rows[0][:2] == ["email", "note"]
    by_address = {row[0]: row for row in rows[1:]}
    assert "-p0@example.com" in by_address  # the address as it is
    for index, value in enumerate(HOSTILE):
        address = _address(index)
        expected = value if value[0] not in "=+-@\t\r" else "'" + value
        assert by_address[address][1] == expected
        assert by_address[address][3] == "'=550 no"

    suppressed = ["-x@example.com", "=y@example.com"]
    reason = "=cmd|' /C calc'!A0"
    assert run("--db", db, "suppress", "add", "--reason", reason, "--", *suppressed)[0] == 0
    listed = tmp_path / "suppressed.csv"
    assert run("--db", db, "suppress", "export", str(listed))[0] == 0
    with open(listed, newline="", encoding="utf-8") as stream:
        rows = list(csv_module.reader(stream))
    assert sorted(row[0] for row in rows[1:]) == sorted(suppressed)
    assert {row[1] for row in rows[1:]} == {"'=cmd|' /C calc'!A0"}


def _address(index: int) -> str:
    """The first address begins with a '-': valid, and never altered."""
    return f"-p{index}@example.com" if index == 0 else f"p{index}@example.com"


# --- 5. private by default -----------------------------------------------------------------


def test_a_new_database_its_wal_and_folders_are_private(tmp_path, files, monkeypatch):
    import os
    import stat

    from sendstatus_tui.core.store.store import Store

    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    env = {**os.environ}
    env.pop("SENDSTATUS_DB", None)
    assert sendstatus(*add_args(None, *files)[2:], env=env).returncode == 0
    folder = tmp_path / "xdg" / "sendstatus"
    path = folder / "sendstatus.db"
    for made in (tmp_path / "xdg", folder):
        assert stat.S_IMODE(made.stat().st_mode) == 0o700, made
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    store = Store(f"sqlite:///{path}")  # open: its WAL and SHM files are there
    try:
        with store.write() as session:
            session.connection().exec_driver_sql("UPDATE mailing SET name = 'M'")
        for suffix in ("-wal", "-shm"):
            side = path.with_name(path.name + suffix)
            assert stat.S_IMODE(side.stat().st_mode) == 0o600, side
    finally:
        store.dispose()
    listed = sendstatus("ls", env=env)
    assert listed.returncode == 0 and "warning" not in listed.stderr


def test_an_existing_database_others_can_read_is_warned_of_once(tmp_path, files):
    path = tmp_path / "sendstatus.db"
    db = f"sqlite:///{path}"
    assert sendstatus(*add_args(db, *files)).returncode == 0
    path.chmod(0o644)
    listed = sendstatus("--db", db, "ls")
    assert listed.returncode == 0
    assert listed.stderr == (
        f"warning: other users of this machine can read the database {path};"
        f" `chmod 600 {path}` makes it yours alone\n"
    )
    path.chmod(0o600)
    assert sendstatus("--db", db, "ls").stderr == ""


def test_the_engine_log_is_private(tmp_path):
    import stat

    from sendstatus_tui.tui.launch.engine_host import log_engine_to

    log = tmp_path / "state" / "sendstatus" / "log" / "engine.log"
    log_engine_to(log)
    assert stat.S_IMODE(log.stat().st_mode) == 0o600
    for folder in (log.parent, log.parent.parent, log.parent.parent.parent):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder


# --- 7. no side effects from failed commands -----------------------------------------------


def test_suppress_add_never_creates_a_database(tmp_path):
    path = tmp_path / "new" / "sendstatus.db"
    listed = write_file(tmp_path, "list.txt", "a@example.com\n")
    for args in (["suppress", "add", "a@example.com"], ["suppress", "import", str(listed)]):
        done = sendstatus("--db", f"sqlite:///{path}", *args)
        line = one_error(done.returncode, done.stderr)
        assert line.startswith(f"error: no database at {path}; `sendstatus init` creates one")
    assert list(tmp_path.iterdir()) == [listed]


def test_a_failed_first_command_leaves_no_folder(tmp_path, files):
    body, _ = files
    bad = write_file(tmp_path, "bad.csv", "email\nnot an address\n")
    db = f"sqlite:///{tmp_path / 'data' / 'deeper' / 'sendstatus.db'}"
    done = sendstatus(*add_args(db, body, bad))
    assert done.returncode == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.csv", "body.txt", "people.csv"]
    # a folder that was there before stays
    (tmp_path / "data").mkdir()
    assert sendstatus(*add_args(db, body, bad)).returncode == 1
    assert list((tmp_path / "data").iterdir()) == []
