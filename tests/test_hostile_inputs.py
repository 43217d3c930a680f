"""An operator's worst day at the command line (issue 7, items 8 and 9): full disks, damaged
database files, unreadable inputs, absurd ids and URLs. Each ends in one ``error:`` line with
exit status 1 (argparse's usage errors keep status 2), no traceback, nothing half-written,
and no password in the output."""

import contextlib
import json
import os
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from sendstatus_tui.cli.main import main

from .helpers import write_file

# a time to schedule at: ahead, and within the ten years a plan may reach
LATER = f"{datetime.now(UTC).year + 1}-06-01 10:00"

ID_COMMANDS = [
    ("show", "{ID}"),
    ("send-now", "{ID}"),
    ("schedule", "{ID}", "--at", LATER),
    ("stop", "{ID}"),
    ("rm", "{ID}", "--yes"),
    ("move", "{ID}", "top"),
]


@pytest.fixture
def run(capsys):
    """Runs ``sendstatus ARGS``; returns (exit status, stdout, stderr)."""

    def run_command(*args: str) -> tuple[int, str, str]:
        status = main(list(args))
        captured = capsys.readouterr()
        return status, captured.out, captured.err

    return run_command


@pytest.fixture
def files(tmp_path):
    body = write_file(tmp_path, "body.txt", "Hello\n")
    csv = write_file(tmp_path, "people.csv", "email\nann@example.com\nbob@example.com\n")
    return body, csv


def add_args(db: str, body: Path, csv: Path | str) -> list[str]:
    sender = "a@shop.example.com"
    return ["--db", db, "mailing", "add", "--name", "N", "--subject", "S", "--from", sender,
            "--text", str(body), "--recipients", str(csv)]  # fmt: skip


def one_error(status: int, err: str) -> str:
    """The error line, after checking that it is the only output of a failed command."""
    assert "Traceback" not in err
    assert status == 1, err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def no_mailings(run, db: str) -> bool:
    """No mailing exists: a failed first command left no database behind (ls says so: no
    SQLite file, or no tables), or the database lists none."""
    status, out, err = run("--db", db, "ls", "--json")
    if status == 1:
        return "error: no database at " in err or "holds no sendstatus data yet" in err
    return json.loads(out) == []


def mailings(run, db: str) -> list[dict]:
    status, out, err = run("--db", db, "ls", "--json")
    assert status == 0, err
    return json.loads(out)


# --- the database file ----------------------------------------------------------------------


@contextlib.contextmanager
def small_tmpfs(directory: Path, size: str = "1m"):
    if os.geteuid() != 0:
        pytest.skip("a full disk is made with a small tmpfs, which only root can mount")
    directory.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(directory)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield directory
    finally:
        subprocess.run(["umount", "-l", str(directory)], check=True)


def test_a_full_disk_during_import_is_one_line_and_leaves_nothing(run, files, tmp_path):
    body, _ = files
    big = tmp_path / "big.csv"
    big.write_text(
        "email,note\n" + "".join(f"person{i}@example.com,{'x' * 40}\n" for i in range(40_000))
    )
    with small_tmpfs(tmp_path / "full") as full:
        db = f"sqlite:///{full / 'sendstatus.db'}"
        assert run("--db", db, "init")[0] == 0  # the schema fits
        status, out, err = run(*add_args(db, body, big))
        line = one_error(status, err)
        assert "database or disk is full" in line and out == ""
        assert mailings(run, db) == []


def test_a_corrupt_database_file_is_called_corrupt(run, tmp_path):
    path = tmp_path / "sendstatus.db"
    path.write_bytes(b"this is not an SQLite database, whatever its name says\n" * 100)
    line = one_error(*run("--db", f"sqlite:///{path}", "ls")[::2])
    assert "corrupt" in line and str(path) in line


def test_a_damaged_database_file_is_called_corrupt(run, tmp_path, files):
    body, csv = files
    path = tmp_path / "sendstatus.db"
    db = f"sqlite:///{path}"
    assert run(*add_args(db, body, csv))[0] == 0
    data = bytearray(path.read_bytes())
    data[100:4096] = b"\xff" * (4096 - 100)  # the schema page, after the file header
    path.write_bytes(bytes(data))
    line = one_error(*run("--db", db, "ls")[::2])
    assert "corrupt" in line


def test_an_immutable_database_file_is_one_line(run, tmp_path, files):
    if os.geteuid() != 0 or shutil.which("chattr") is None:
        pytest.skip("chattr +i needs root and the chattr tool")
    body, csv = files
    path = tmp_path / "sendstatus.db"
    db = f"sqlite:///{path}"
    assert run(*add_args(db, body, csv))[0] == 0
    if subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode != 0:
        pytest.skip("this filesystem has no immutable attribute")
    try:
        before = mailings(run, db)
        line = one_error(*run(*add_args(db, body, csv))[::2])
        assert "readonly database" in line
        line = one_error(*run("--db", db, "send-now", "1")[::2])
        assert mailings(run, db) == before
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)


# --- inputs ---------------------------------------------------------------------------------


def test_recipients_from_an_unreadable_file(run, files, sqlite_url):
    body, _ = files
    for unreadable in ("/proc/1/mem", "/proc/self/mem"):
        line = one_error(*run(*add_args(sqlite_url, body, unreadable))[::2])
        assert line.startswith(f"error: {unreadable}: cannot read it")
    line = one_error(*run(*add_args(sqlite_url, body, "/dev/zero"))[::2])
    assert line == "error: /dev/zero: a device, not a CSV file"
    line = one_error(*run(*add_args(sqlite_url, "/proc/1/mem", files[1]))[::2])
    assert line.startswith("error: text: /proc/1/mem: cannot read it")
    assert no_mailings(run, sqlite_url)


@pytest.mark.parametrize("command", ID_COMMANDS, ids=lambda c: c[0])
def test_ids_beyond_the_databases_integers_are_not_found(run, db_url, files, command):
    body, csv = files
    assert run(*add_args(db_url, body, csv))[0] == 0
    before = mailings(run, db_url)
    too_big = 2**63 if db_url.startswith("sqlite") else 2**31
    for mailing_id in (too_big, too_big * 2**70):
        args = [arg.replace("{ID}", str(mailing_id)) for arg in command]
        line = one_error(*run("--db", db_url, *args)[::2])
        assert line == f"error: no mailing with id {mailing_id}"
    assert mailings(run, db_url) == before


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("postgresqlx://postgres:hunter2@127.0.0.1/test", "unsupported database URL"),
        ("mysql://root:hunter2@127.0.0.1/test", "unsupported database URL"),
        ("oracle://root:hunter2@127.0.0.1/test", "unsupported database URL"),
        ("postgresql+psycopg://postgres:hunter2@127.0.0.1:99999/test", "cannot open database"),
        ("postgresql+psycopg://postgres:hunter2@127.0.0.1:port/test", "unusable database URL"),
        ("postgresql+psycopg://postgres:hunter2@127.0.0.1:1/test", "cannot open database"),
        ("sqlite:////proc/sendstatus/x.db", "no database at /proc/sendstatus/x.db"),
        ("postgres ql://root:hunter2@127.0.0.1/test", "unusable database URL"),
        ("root:hunter2@127.0.0.1", "unusable database URL"),
        ("/srv/mail/sendstatus.db", "a file is given as sqlite:////srv/mail/sendstatus.db"),
        ("sqlite://root:hunter2@/x.db", "Invalid SQLite URL"),  # a message of many lines
    ],
)
def test_unusable_database_urls_are_one_line_without_the_password(run, url, says):
    line = one_error(*run("--db", url, "ls")[::2])
    assert says in line
    assert "hunter2" not in line
    if "hunter2" in url:
        assert "postgres:***@" in line or "root:***@" in line


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("smtpx://user:pass@relay.example.com", "unknown relay 'smtpx://user:***@relay."),
        ("smtp://user:pass@relay.example.com:99999", "must not carry credentials"),
        ("smtp://relay.example.com:99999", "the port must be a number from 1 to 65535"),
        ("smtp://relay.example.com:0", "the port must be a number from 1 to 65535"),
        ("smtp://relay.example.com:abc", "the port must be a number from 1 to 65535"),
        ("smtp://relay.example.com?pool=0", "relay option pool='0'"),
        ("smtp://user:pass@[::1", "not a relay URL"),
    ],
)
def test_unusable_relay_urls_are_one_line_without_the_password(sqlite_url, url, says):
    # the real command: with a URL it wrongly took, the engine would serve for ever
    engine = subprocess.run(
        [
            sys.executable,
            "-m",
            "sendstatus_tui.cli.main",
            "--db",
            sqlite_url,
            "--smtp",
            url,
            "engine",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    line = one_error(engine.returncode, engine.stderr)
    assert says in line
    assert ":pass@" not in line


def test_now_and_at_together_is_a_usage_error(run, files, sqlite_url, capsys):
    body, csv = files
    with pytest.raises(SystemExit) as usage:
        main([*add_args(sqlite_url, body, csv), "--now", "--at", LATER])
    err = capsys.readouterr().err
    assert usage.value.code == 2
    assert err.startswith("usage: sendstatus mailing add")
    assert "argument --at: not allowed with argument --now" in err
    assert "Traceback" not in err
    assert no_mailings(run, sqlite_url)


def test_an_internationalised_sender(run, files, sqlite_url):
    body, csv = files
    args = add_args(sqlite_url, body, csv)
    at = args.index("a@shop.example.com")
    args[at] = "Bücher <news@bücher.example>"
    status, out, err = run(*args)
    assert (status, err) == (0, f"created database {sqlite_url}\n"), err  # the first write
    status, out, _ = run("--db", sqlite_url, "show", "1", "--json")
    assert json.loads(out)["sender"].endswith(" <news@xn--bcher-kva.example>")
    args[at] = "jörg@shop.example"
    line = one_error(*run(*args)[::2])
    assert "from: not a sender address: 'jörg@shop.example'" in line
    assert "local-part contains non-ASCII characters" in line
