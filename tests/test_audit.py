"""The audit trail: every change, with who made it (user, sudo user, SSH address), from
where (cli, dashboard, engine) and when; `sendstatus log` prints it, also a deleted
mailing's history; ids are never reused."""

import json
import re
from datetime import timedelta

import pytest

from sendstatus_tui.cli.main import main
from sendstatus_tui.core.coordination import lease
from sendstatus_tui.core.model import audit, lifecycle
from sendstatus_tui.core.model.audit import Actor, Source

from .helpers import FAST, act, in_minutes, mailing, wait_until, write_file


@pytest.fixture
def cli(db_url, capsys, monkeypatch):
    """``sendstatus --db <db> ARGS`` as ann, who ran sudo, connected over SSH."""
    monkeypatch.setenv("SUDO_USER", "ann")
    monkeypatch.setenv("SSH_CONNECTION", "203.0.113.7 51234 10.0.0.2 22")
    monkeypatch.delenv("SSH_CLIENT", raising=False)

    def run(*args: str) -> tuple[int, str, str]:
        status = main(["--db", db_url, *args])
        captured = capsys.readouterr()
        return status, captured.out, captured.err

    return run


@pytest.fixture
def add(cli, tmp_path):
    body = write_file(tmp_path, "body.txt", "Hello\n")
    csv = write_file(tmp_path, "people.csv", "email\nann@example.com\nbob@example.com\n")

    def add_mailing(name: str, *plan: str) -> int:
        status, out, err = cli(
            "mailing", "add", "--name", name, "--subject", "News", "--from",
            "news@shop.example.com", "--text", str(body), "--recipients", str(csv), *plan,
        )  # fmt: skip
        assert status == 0, err
        return int(out.split()[1])

    return add_mailing


def log_json(cli, *args: str) -> list[dict]:
    status, out, err = cli("log", "--json", *args)
    assert status == 0, err
    return json.loads(out)


def test_every_operator_change_is_recorded_with_who_and_from_where(cli, add):
    first = add("First")
    second = add("Second", "--sequential", "--yes")  # first in the queue: promoted at once
    third = add("Third", "--sequential", "--yes")
    fourth = add("Fourth", "--sequential", "--yes")
    assert cli("move", str(fourth), "up")[0] == 0
    assert cli("schedule", str(first), "--at", "2030-06-01 09:30", "--tz", "Europe/Rome")[0] == 0
    assert cli("send-now", str(first))[0] == 0
    assert cli("stop", str(first))[0] == 0
    assert cli("rm", str(first), "--yes")[0] == 0
    assert cli("config", "rate", "600/min")[0] == 0

    entries = log_json(cli)
    assert [(e["mailing_id"], e["action"], e["detail"]) for e in entries] == [
        (first, "created", "2 recipients"),
        (second, "created", "2 recipients"),
        (second, "enqueued", "position 1"),
        (second, "promoted", "first in the sequential queue, into Sending now"),
        (third, "created", "2 recipients"),
        (third, "enqueued", "position 1"),
        (fourth, "created", "2 recipients"),
        (fourth, "enqueued", "position 2"),
        (fourth, "moved", "up: position 2 to 1"),
        (first, "scheduled", None),
        (first, "send-now", None),
        (first, "stopped", "was starting up, 0 of 2 sent"),
        (first, "deleted", "2 recipients, 0 sent"),
        (None, "setting", "rate = 600/min"),
    ]
    for entry in entries:
        assert (entry["source"], entry["sudo_user"], entry["ssh_from"]) == (
            "cli",
            "ann",
            "203.0.113.7",
        )
        assert entry["user"] and entry["at"].endswith("Z")
    # the time a schedule set is a time (each reader sees it in their zone)
    assert [e["scheduled_at"] for e in entries if e["action"] == "scheduled"] == [
        "2030-06-01T07:30:00Z"
    ]
    _, out, _ = cli("log", str(first), "--tz", "America/New_York")
    assert "  scheduled  at 2030-06-01 03:30 America/New_York  by " in out


def test_log_of_a_deleted_mailing_still_tells_its_history(cli, add):
    mailing_id = add("Gone soon")
    assert cli("rm", str(mailing_id), "--yes")[0] == 0
    status, out, _ = cli("log", str(mailing_id), "--tz", "Europe/Rome")
    assert status == 0
    lines = out.splitlines()
    assert lines[0] == f"Mailing {mailing_id} 'Gone soon' (deleted)"
    assert [line.split("  ")[1] for line in lines[1:]] == ["created", "deleted"]
    # each time names its zone; who, with the sudo user and the SSH address
    assert all(
        re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d Europe/Rome  ", line) for line in lines[1:]
    )
    assert lines[2].endswith(" (sudo by ann) from 203.0.113.7 via cli")


def test_log_of_an_unknown_mailing_is_an_error(cli, add):
    add("Only")
    assert cli("log", "99") == (1, "", "error: no mailing with id 99\n")


def test_ids_are_never_reused_after_a_delete(cli, add):
    add("One")
    last = add("Two")
    assert cli("rm", str(last), "--yes")[0] == 0
    assert add("Three") == last + 1
    assert [e["mailing_name"] for e in log_json(cli, str(last))] == ["Two", "Two"]


def test_the_engines_changes_are_recorded_as_the_engines(store, make_mailing, now):
    scheduled, queued, broken = make_mailing(), make_mailing(), make_mailing()
    act(store, lifecycle.schedule_at, scheduled, now + timedelta(minutes=5))
    act(store, lifecycle.send_now, broken)
    with store.write() as session:
        lifecycle.start_due(session, now + timedelta(minutes=6))
        lifecycle.interrupt(session, broken, "535 authentication failed")
        lifecycle.enqueue(session, queued)  # promoted at once: the engine would do it too
    with store.read() as session:
        entries = audit.history(session)
    by_engine = [(e.mailing_id, e.action, e.detail) for e in entries if e.source == "engine"]
    assert by_engine == [
        (scheduled, "started", "its time came"),
        (broken, "interrupted", "535 authentication failed"),
    ]
    # a promotion is recorded as made by whoever made room for it: here, the operator
    assert [(e.action, e.source) for e in entries if e.mailing_id == queued][-1] == (
        "promoted",
        "cli",
    )


def test_a_dashboards_changes_say_so(store, make_mailing, monkeypatch):
    mailing_id = make_mailing()
    audit.operating_from(Source.DASHBOARD)
    act(store, lifecycle.send_now, mailing_id)
    with store.read() as session:
        assert audit.history(session, mailing_id)[-1].source == "dashboard"


def test_a_takeover_is_recorded(store):
    with store.write() as session:
        lease.acquire(session, "engine-a", timedelta(seconds=-1))  # already expired
    with store.write() as session:
        assert lease.acquire(session, "engine-b", timedelta(seconds=30)).held
    with store.read() as session:
        (entry,) = audit.history(session)
    assert (entry.action, entry.source, entry.mailing_id) == ("takeover", "engine", None)
    assert entry.detail == "engine engine-b took the lead from engine-a (stopped or silent)"


def test_a_sent_mailing_is_recorded_completed_by_the_engine(
    store, make_mailing, engine_for, relay, caplog
):
    mailing_id = make_mailing(recipients=5)
    act(store, lifecycle.send_now, mailing_id)
    with caplog.at_level("INFO", logger="sendstatus.audit"):
        engine_for(relay, FAST)
        wait_until(lambda: mailing(store, mailing_id).state == "completed", what="completed")
    with store.read() as session:
        last = audit.history(session, mailing_id)[-1]
    assert (last.action, last.detail, last.source) == ("completed", "5 sent, 0 failed", "engine")
    # the engine log names it, and who did it
    assert any(
        f"mailing {mailing_id} 'Mailing 1': completed 5 sent, 0 failed (by " in message
        and message.endswith("via engine)")
        for message in caplog.messages
    )


def test_who_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("SUDO_USER", "bob")
    monkeypatch.delenv("SSH_CONNECTION", raising=False)
    monkeypatch.setenv("SSH_CLIENT", "2001:db8::5 40000 22")
    actor = Actor.here(Source.DASHBOARD)
    assert (actor.sudo_user, actor.ssh_from, actor.source) == ("bob", "2001:db8::5", "dashboard")
    monkeypatch.delenv("SUDO_USER")
    monkeypatch.delenv("SSH_CLIENT")
    local = Actor.here(Source.CLI)
    assert (local.sudo_user, local.ssh_from) == (None, None)
    assert str(local) == f"{local.user} via cli"


def test_history_limit_keeps_the_newest(store, make_mailing):
    mailing_id = make_mailing()
    act(store, lifecycle.schedule_at, mailing_id, in_minutes(10))
    act(store, lifecycle.stop, mailing_id)
    with store.read() as session:
        assert [e.action for e in audit.history(session, mailing_id, limit=2)] == [
            "scheduled",
            "stopped",
        ]
