"""Every command with every kind of bad setting it uses: one ``error:`` line naming the
setting, exit status 1, no traceback, nothing changed (DESIGN.md §3, issues 7 and 9).

The dashboard, the demo and the engine run as the real command in a subprocess: they must
fail before a screen opens or an engine starts. The short commands run through ``cli.main``.
"""

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest

from sendstatus_tui.cli.main import main

from .helpers import write_file

# a time to schedule at: ahead, and within the ten years a plan may reach
LATER = f"{datetime.now(UTC).year + 1}-06-01 10:00"


@dataclass(frozen=True)
class BadSetting:
    kind: str  # relay, credentials, database, zone, rate or lease: what a command may use
    args: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    says: str = ""  # what the error line says
    file: tuple[str, bytes, int] | None = None  # a credentials file: name, content, mode


BAD_SETTINGS = {
    "relay scheme": BadSetting("relay", ("--smtp", "foo://x"), says="unknown relay 'foo://x'"),
    "relay port": BadSetting(
        "relay", ("--smtp", "smtp://relay.example:99999"), says="port must be a number"
    ),
    "relay pool=0": BadSetting("relay", ("--smtp", "smtp://relay.example?pool=0"), says="pool='0'"),
    "relay plaintext_auth off loopback": BadSetting(
        "relay",
        ("--smtp", "smtp://relay.example?plaintext_auth=yes"),
        says="only for a relay on this machine",
    ),
    "user without password": BadSetting(
        "credentials", env={"SENDSTATUS_SMTP_USER": "a"}, says="SENDSTATUS_SMTP_PASSWORD"
    ),
    "credentials file others can read": BadSetting(
        "credentials",
        file=("credentials.toml", b'[relay]\nusername = "u"\npassword = "p"\n', 0o644),
        says="chmod 600",
    ),
    "credentials file not UTF-8": BadSetting(
        "credentials",
        file=("credentials.toml", b"[relay]\nusername = \xff\n", 0o600),
        says="not UTF-8",
    ),  # fmt: skip
    "database scheme": BadSetting(
        "database", ("--db", "mysql://root:hunter2@db.example/x"), says="unsupported database"
    ),
    "database port": BadSetting(
        "database",
        ("--db", "postgresql+psycopg://u:hunter2@db.example:port/x"),
        says="unusable database URL",
    ),  # fmt: skip
    "zone": BadSetting("zone", ("--tz", "Mars/Olympus"), says="unknown time zone 'Mars/Olympus'"),
    "rate": BadSetting("rate", ("--rate", "fast"), says="not a rate: 'fast'"),
    # a pause is a stop, not a rate of 0; a negative rate reaches the check, not the parser
    "rate 0": BadSetting("rate", ("--rate", "0"), says="would send nothing: to pause"),
    "rate negative": BadSetting("rate", ("--rate", "-5/s"), says="cannot be negative"),
    "rate too large for a number": BadSetting(
        "rate", env={"SENDSTATUS_RATE": "1e400/s"}, says="too large: rates from 1/h to 1000000/s"
    ),
    "rate of a huge integer": BadSetting(
        "rate", env={"SENDSTATUS_RATE": "9" * 400 + "/min"}, says="to 1000000/s are accepted"
    ),
    "lease below the floor": BadSetting(
        "lease", env={"SENDSTATUS_LEASE_SECONDS": "0.5"}, says="1 or more"
    ),
    "lease not a number": BadSetting(
        "lease", env={"SENDSTATUS_LEASE_SECONDS": "soon"}, says="SENDSTATUS_LEASE_SECONDS='soon'"
    ),
}

ALL = {"relay", "credentials", "database", "zone", "rate"}  # and the lease: the engine's own
# the commands, with the settings each uses; {ID} is a parked mailing, {CSV}/{BODY} files
COMMANDS = {
    "dashboard": ((), ALL),
    "demo": (("demo",), {"zone"}),
    "engine": (("engine",), ALL - {"zone"} | {"lease"}),
    "ls": (("ls",), {"database", "zone"}),
    "show": (("show", "{ID}"), {"database", "zone"}),
    "mailing add --at": (
        (
            "mailing",
            "add",
            "--name",
            "N",
            "--subject",
            "S",
            "--from",
            "a@shop.example.com",
            "--text",
            "{BODY}",
            "--recipients",
            "{CSV}",
            "--at",
            LATER,
        ),
        {"database", "zone"},
    ),  # fmt: skip
    "schedule --at": (("schedule", "{ID}", "--at", LATER), {"database", "zone"}),
    "send-now": (("send-now", "{ID}"), {"database"}),
    "stop": (("stop", "{ID}"), {"database"}),
    "rm": (("rm", "{ID}", "--yes"), {"database"}),
    "move": (("move", "{ID}", "top"), {"database"}),
}
# run as the real command: with a good setting they would open a screen or serve for ever
IN_SUBPROCESS = {"dashboard", "demo", "engine"}

PAIRS = [
    pytest.param(command, setting, id=f"{command}-{setting}")
    for command, (_, uses) in COMMANDS.items()
    for setting, bad in BAD_SETTINGS.items()
    if bad.kind in uses
]


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    """A database with one parked mailing (id 1), and no settings from the operator."""
    for name in list(os.environ):
        if name.startswith("SENDSTATUS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    monkeypatch.chdir(tmp_path)
    body = write_file(tmp_path, "body.txt", "Hello\n")
    csv = write_file(tmp_path, "people.csv", "email\nann@example.com\n")
    db = f"sqlite:///{tmp_path / 'sendstatus.db'}"
    monkeypatch.setenv("SENDSTATUS_DB", db)
    add = ["mailing", "add", "--name", "Parked", "--subject", "S", "--from", "a@shop.example.com"]
    assert main([*add, "--text", str(body), "--recipients", str(csv)]) == 0
    return {"{ID}": "1", "{CSV}": str(csv), "{BODY}": str(body)}


def listing(capsys) -> list[dict]:
    """The mailings as ``ls --json`` gives them (on the workspace's database)."""
    assert main(["ls", "--json"]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize(("command", "setting"), PAIRS)
def test_a_bad_setting_is_one_error_line(command, setting, workspace, tmp_path, capsys):
    bad = BAD_SETTINGS[setting]
    args, _ = COMMANDS[command]
    argv = [*bad.args, *(workspace.get(arg, arg) for arg in args)]
    env = dict(bad.env)
    if bad.file:
        name, content, mode = bad.file
        path = Path(tmp_path / name)
        path.write_bytes(content)
        path.chmod(mode)
        env["SENDSTATUS_CREDENTIALS"] = str(path)
    before = listing(capsys)
    if command in IN_SUBPROCESS:
        result = subprocess.run(
            [sys.executable, "-m", "sendstatus_tui.cli.main", *argv],
            capture_output=True,
            text=True,
            env={**os.environ, **env, "TERM": "dumb"},
            stdin=subprocess.DEVNULL,
            timeout=60,
        )
        status, err = result.returncode, result.stderr
    else:
        os.environ.update(env)
        try:
            status = main(argv)
        finally:
            for name in env:
                del os.environ[name]
        err = capsys.readouterr().err
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert status == 1, err
    assert len(errors) == 1, err
    assert bad.says in errors[0]
    assert "hunter2" not in err
    assert listing(capsys) == before
