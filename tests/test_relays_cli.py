"""Relays as stored data (`sendstatus relay`), their credentials, `config set relay` as a
shorthand, and `mailing add --relay`: what an operator types and reads back."""

import json
import os

import pytest
from sqlmodel import select

from sendstatus_tui.core.model.models import Mailing, Relay
from sendstatus_tui.engine.smtp.credentials import CredentialsError, load_relay_credentials

from .helpers import mailing, write_file


@pytest.fixture
def relay_cmd(run):
    assert run("init")[0] == 0
    return lambda *args: run("relay", *args)


def stored(store) -> dict[str, tuple]:
    with store.read() as session:
        return {
            r.name: (r.url, r.weight, r.rate, r.connections) for r in session.exec(select(Relay))
        }


def test_relays_are_added_changed_listed_and_removed(relay_cmd, store):
    assert relay_cmd("add", "main", "smtp://relay.example.com:587", "--weight", "3") == (
        0,
        "relay main = smtp://relay.example.com:587, weight 3 added\n",
        "",
    )
    status, out, _ = relay_cmd(
        "add", "backup", "smtp://backup.example.com", "--rate", "100/s", "--connections", "8"
    )
    assert status == 0
    assert "rate 100/s, at most 8 connections per engine" in out
    assert relay_cmd("set", "main", "--weight", "1")[0] == 0
    assert relay_cmd("set", "backup", "--rate", "unlimited")[0] == 0
    assert stored(store) == {
        "main": ("smtp://relay.example.com:587", 1, None, None),
        "backup": ("smtp://backup.example.com", 1, None, 8),
    }
    status, out, _ = relay_cmd("ls")
    assert status == 0
    assert out.splitlines() == [
        "backup = smtp://backup.example.com, weight 1, at most 8 connections per engine; up",
        "main = smtp://relay.example.com:587, weight 1; up",
    ]
    status, out, _ = relay_cmd("ls", "--json")
    assert [r["name"] for r in json.loads(out)] == ["backup", "main"]
    assert json.loads(out)[0] == {
        "name": "backup",
        "url": "smtp://backup.example.com",
        "weight": 1,
        "rate": None,
        "connections": 8,
        "down": [],
    }
    assert relay_cmd("rm", "backup") == (0, "relay backup removed\n", "")
    assert list(stored(store)) == ["main"]


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (
            ("add", "eu-west", "smtp://user:secret@relay.example.com"),
            "must not carry credentials (every user can read a command line): set"
            " SENDSTATUS_RELAY_EU_WEST_USER and SENDSTATUS_RELAY_EU_WEST_PASSWORD, or"
            " [relay.eu-west] in the credentials file",
        ),
        (("add", "main", "ftp://relay.example.com"), "unknown relay"),
        (("add", "bad name", "smtp://relay.example.com"), "letters, digits, - and _"),
        (("add", "main", "smtp://relay.example.com", "--weight", "0"), "--weight 0: give 1 to"),
        (("add", "main", "smtp://relay.example.com", "--rate", "0/s"), "would send nothing"),
        (("add", "main", "smtp://relay.example.com", "--connections", "0"), "--connections 0"),
        (("set", "nosuch", "--weight", "2"), "unknown relay 'nosuch' (relays: none yet"),
        (("set", "nosuch"), "what?"),
        (("rm", "nosuch"), "unknown relay 'nosuch'"),
    ],
)
def test_bad_input_is_one_error_line_and_changes_nothing(relay_cmd, store, args, says):
    status, out, err = relay_cmd(*args)
    assert (status, out) == (1, "")
    assert err.startswith("error: ") and err.count("\n") == 1 and says in err
    assert "secret" not in err
    assert stored(store) == {}


def test_a_relay_added_twice_is_refused_and_the_first_kept(relay_cmd, store):
    assert relay_cmd("add", "main", "smtp://one.example.com")[0] == 0
    status, _, err = relay_cmd("add", "main", "smtp://two.example.com")
    assert status == 1 and "relay 'main' exists already" in err
    assert stored(store)["main"][0] == "smtp://one.example.com"


def test_a_relay_an_unfinished_mailing_needs_cannot_be_removed(run, relay_cmd, store, tmp_path):
    relay_cmd("add", "main", "smtp://main.example.com")
    relay_cmd("add", "backup", "smtp://backup.example.com")
    relay_cmd("add", "third", "smtp://third.example.com")
    alone = _add_mailing(run, tmp_path, "--relay", "backup")
    both = _add_mailing(run, tmp_path, "--relay", "main,third")
    status, _, err = relay_cmd("rm", "backup")
    assert status == 1
    assert f"mailing {alone} 'Spring' is unfinished and uses relay 'backup' alone" in err
    assert set(stored(store)) == {"main", "backup", "third"}
    # named beside another: removed, the mailing goes on with the other
    assert relay_cmd("rm", "main")[0] == 0
    assert mailing(store, both).relays == "third"
    assert mailing(store, alone).relays == "backup"


def test_the_last_relay_stays_while_mailings_are_unfinished(run, relay_cmd, store, tmp_path):
    relay_cmd("add", "main", "smtp://main.example.com")
    _add_mailing(run, tmp_path)
    status, _, err = relay_cmd("rm", "main")
    assert status == 1 and "the last relay" in err
    assert list(stored(store)) == ["main"]


def test_mailing_add_names_its_relays_and_refuses_an_unknown_one(run, relay_cmd, store, tmp_path):
    relay_cmd("add", "main", "smtp://main.example.com")
    relay_cmd("add", "backup", "smtp://backup.example.com")
    named = _add_mailing(run, tmp_path, "--relay", "backup, main,backup")
    assert mailing(store, named).relays == "backup,main"
    every = _add_mailing(run, tmp_path)
    assert mailing(store, every).relays is None
    status, out, err = run(*_add_args(tmp_path), "--relay", "main,nosuch")
    assert (status, out) == (1, "")
    assert "unknown relay 'nosuch' (relays: backup, main)" in err and err.count("\n") == 1
    with store.read() as session:
        assert len(session.exec(select(Mailing)).all()) == 2  # nothing half-made


def test_send_now_and_schedule_change_the_relays_and_all_means_every_relay(
    run, relay_cmd, store, tmp_path
):
    relay_cmd("add", "main", "smtp://main.example.com")
    relay_cmd("add", "backup", "smtp://backup.example.com")
    parked = _add_mailing(run, tmp_path, "--relay", "main")
    status, out, _ = run("schedule", str(parked), "--at", "2030-01-01 10:00", "--relay", "backup")
    assert status == 0 and out.rstrip().endswith("; through backup")
    assert mailing(store, parked).relays == "backup"
    status, out, _ = run("send-now", str(parked), "--relay", "main,backup", "--yes")
    assert status == 0 and out.rstrip().endswith("; through main, backup")
    assert mailing(store, parked).relays == "main,backup"
    queued = _add_mailing(run, tmp_path, "--relay", "main")
    status, out, _ = run("schedule", str(queued), "--sequential", "--relay", "all", "--yes")
    assert status == 0 and out.rstrip().endswith("; through every relay")
    assert mailing(store, queued).relays is None
    # audited, as a window is
    status, out, _ = run("log", str(queued))
    assert status == 0 and "relays" in out and "every relay" in out


def test_an_unknown_relay_on_send_now_is_one_error_and_changes_nothing(
    run, relay_cmd, store, tmp_path
):
    relay_cmd("add", "main", "smtp://main.example.com")
    parked = _add_mailing(run, tmp_path, "--relay", "main")
    status, out, err = run("send-now", str(parked), "--relay", "nosuch", "--yes")
    assert (status, out) == (1, "")
    assert "unknown relay 'nosuch' (relays: main)" in err and err.count("\n") == 1
    assert mailing(store, parked).relays == "main"
    assert mailing(store, parked).state == "standby"
    # once sending, its relays stay (stop it to change them)
    assert run("send-now", str(parked), "--yes")[0] == 0
    status, _, err = run("schedule", str(parked), "--at", "2030-01-01 10:00", "--relay", "main")
    assert status == 1 and f"mailing {parked}" in err and "starting up" in err


def test_all_is_no_relay_name(relay_cmd, store):
    status, out, err = relay_cmd("add", "All", "smtp://main.example.com")
    assert (status, out) == (1, "")
    assert "--relay all means every relay" in err and stored(store) == {}


def test_config_set_relay_is_the_relay_named_default(run, relay_cmd, store):
    assert run("config", "set", "relay", "smtp://relay.example.com") == (
        0,
        "relay = smtp://relay.example.com\n",
        "",
    )
    assert stored(store) == {"default": ("smtp://relay.example.com", 1, None, None)}
    relay_cmd("set", "default", "--weight", "4")
    assert run("config", "set", "relay", "smtp://other.example.com")[0] == 0
    assert stored(store)["default"][:2] == ("smtp://other.example.com", 4)
    assert run("config", "get", "relay") == (0, "smtp://other.example.com\n", "")
    assert run("config", "unset", "relay")[0] == 0
    assert stored(store) == {}


def test_each_relay_has_its_own_credentials(tmp_path):
    path = write_file(
        tmp_path,
        "credentials.toml",
        '[relay]\nusername = "old"\npassword = "p0"\n'
        '[relay.backup]\nusername = "bk"\npassword = "p1"\n',
    )
    os.chmod(path, 0o600)
    environ = {
        "SENDSTATUS_CREDENTIALS": str(path),
        "SENDSTATUS_RELAY_EU_WEST_USER": "eu",
        "SENDSTATUS_RELAY_EU_WEST_PASSWORD": "p2",
    }
    assert load_relay_credentials("eu-west", environ).username == "eu"
    assert load_relay_credentials("backup", environ).username == "bk"
    assert load_relay_credentials("default", environ).username == "old"  # as --smtp's
    assert load_relay_credentials("other", environ) is None
    with pytest.raises(CredentialsError, match="SENDSTATUS_RELAY_MAIN_PASSWORD"):
        load_relay_credentials("main", {**environ, "SENDSTATUS_RELAY_MAIN_USER": "m"})


def _add_args(tmp_path) -> tuple[str, ...]:
    body = write_file(tmp_path, "body.txt", "Hello")
    csv = write_file(tmp_path, "list.csv", "email\na@example.com\nb@example.com\n")
    return ("mailing", "add", "--name", "Spring", "--subject", "Hi", "--from",
            "shop@example.com", "--text", str(body), "--recipients", str(csv))  # fmt: skip


def _add_mailing(run, tmp_path, *more: str) -> int:
    status, out, err = run(*_add_args(tmp_path), *more)
    assert status == 0, err
    return int(out.split()[1])
