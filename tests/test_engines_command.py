"""`sendstatus engines`: the engines on a database, from their heartbeats."""

import dataclasses
import json
import re
import signal
import time
from datetime import timedelta

import pytest

from sendstatus_tui.core.coordination import heartbeats
from sendstatus_tui.core.model import lifecycle
from sendstatus_tui.core.model.models import EngineHeartbeat, utc_now

from .engine_processes import EngineProcesses
from .helpers import mailing, wait_until


@pytest.fixture
def engines(db_url, relay, tmp_path):
    processes = EngineProcesses(db_url, relay.url, tmp_path)
    yield processes
    processes.stop_all()


@pytest.fixture
def command(run):
    return run


def listed(command) -> list[dict]:
    status, out, _ = command("engines", "--json")
    assert status == 0
    return json.loads(out)


@pytest.mark.long
def test_the_engines_say_who_leads_what_they_send_and_their_connections(
    store, make_mailing, engines, command
):
    assert listed(command) == []
    status, out, _ = command("engines")
    assert (status, out) == (
        0,
        "no engine running on this database (start one with: sendstatus engine)\n",
    )

    mailing_id = make_mailing(recipients=3000)
    leader = engines.start("--rate", "300/s")
    wait_until(lambda: engines.took_over(leader), what="the first engine leading")
    sender = engines.start("--rate", "300/s")
    wait_until(lambda: len(listed(command)) == 2, what="both engines' heartbeats")
    with store.write() as session:
        lifecycle.send_now(session, mailing_id)
    wait_until(lambda: mailing(store, mailing_id).sent >= 300, what="sending")
    wait_until(
        lambda: min(e["sent"] for e in listed(command)) >= 100, what="heartbeats after sending"
    )

    first, second = listed(command)
    assert (first["role"], first["pid"]) == ("leader", leader.pid)
    assert (second["role"], second["pid"]) == ("sender", sender.pid)  # every engine sends
    assert first["sending"] == [mailing_id] and second["sending"] == [mailing_id]
    assert 0 < first["rate"] <= 300 * 1.05
    assert first["connections"] >= 1 and first["connections_reason"]
    assert not first["lost"] and not second["lost"]
    assert set(first) >= {"id", "host", "pid", "role", "started_at", "heartbeat_at",
                          "sending", "sent", "rate"}  # fmt: skip

    status, out, _ = command("engines")
    assert status == 0
    lines = out.splitlines()
    assert f"pid {leader.pid}: leader" in lines[0] and f"sending {mailing_id};" in lines[0]
    assert f"pid {sender.pid}: sender" in lines[1] and f"sending {mailing_id};" in lines[1]
    status, out, _ = command("engines", "--tz", "Europe/Rome")  # its times name their zone
    assert status == 0 and all(" Europe/Rome; sending " in line for line in out.splitlines())

    # the details of the mailing name the engine sending it and its connections
    status, out, _ = command("show", str(mailing_id), "--json")
    shown = json.loads(out)
    assert sorted(e["pid"] for e in shown["engines"]) == sorted([leader.pid, sender.pid])
    assert shown["engines"][0]["connections"] >= 1
    status, out, _ = command("show", str(mailing_id))
    assert "  Relay:          " in out and " from " in out

    sender.send_signal(signal.SIGTERM)
    assert sender.wait(timeout=30) == 0
    assert [e["pid"] for e in listed(command)] == [leader.pid]  # a clean stop takes its row


def test_a_leader_killed_mid_send_is_lost_once_another_leads(store, make_mailing, command):
    """kill -9 leaves the old leader's row saying leader; within seconds another engine
    takes the lead: the old one is shown lost then, not as a second leader for 15 s."""
    mailing_id = make_mailing()
    killed = heartbeats.Beat(
        "vm:1:a", "vm", 1, "leader", utc_now(), (mailing_id,), 50, 10.0, 4, "starting size"
    )
    with store.write() as session:
        heartbeats.beat(session, killed, fresh=True)
    with store.write() as session:  # its last beat, 6 s ago: past the lease, not yet silent
        row = session.get(EngineHeartbeat, "vm:1:a")
        assert row is not None
        row.heartbeat_at = utc_now() - timedelta(seconds=6)
    beat_set = time.monotonic()
    assert [e["lost"] for e in listed(command)] == [False]  # no other leader: not yet lost
    with store.write() as session:
        heartbeats.beat(
            session, dataclasses.replace(killed, id="vm:2:b", pid=2, sent=0), fresh=True
        )
    by_pid = {e["pid"]: e for e in listed(command)}
    assert (by_pid[1]["lost"], by_pid[2]["lost"]) == (True, False)
    status, out, _ = command("engines")
    silent = re.search(r"vm pid 1: lost \(silent (\d+) s\)", out)
    assert silent is not None and "vm pid 2: leader" in out
    # 6 s, and as many more as the commands took on a busy machine
    assert 6 <= int(silent[1]) <= 6 + time.monotonic() - beat_set
    shown = json.loads(command("show", str(mailing_id), "--json")[1])
    assert [e["pid"] for e in shown["engines"]] == [2]  # the lost one's connections are gone
