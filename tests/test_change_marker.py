"""Others' actions reach every engine within a second (issue 20): each change an engine
follows bumps one counter in its own transaction (core/model/changes.py), and engines read
that counter each reconcile interval instead of every active mailing. Real SQLite file and
PostgreSQL, real SMTP relays on loopback, commands run as an operator runs them."""

import subprocess
import sys
import time
from dataclasses import replace
from datetime import timedelta

import pytest

from sendstatus_tui.core.model import changes, lifecycle
from sendstatus_tui.core.model.models import utc_now
from sendstatus_tui.engine.engine import Engine
from sendstatus_tui.engine.thread import EngineThread

from .helpers import FAST, act, assert_stays, mailing, stop_engine_thread, wait_until

# the reconcile interval of a real engine, and no backstop within a test's time: whatever
# reaches the engine within a second came through the marker
MARKED = replace(FAST, reconcile_seconds=0.25, full_reconcile_seconds=300.0)


def marker(store) -> int:
    with store.read() as session:
        return changes.read(session)


@pytest.fixture
def engine(store):
    """Starts an engine sending through the stored relays, and waits until it leads."""
    threads: list[EngineThread] = []

    def start() -> Engine:
        engine = Engine(store, None, MARKED)
        threads.append(EngineThread(engine).start())
        wait_until(lambda: engine.generation, what="the engine leading")
        return engine

    yield start
    for thread in threads:
        stop_engine_thread(thread)


def sending_slowly(run, make_mailing, relay, recipients: int = 200) -> int:
    """A mailing going out at 10 messages a second through ``relay``, once the first have
    arrived."""
    assert run("relay", "add", "default", relay.url)[0] == 0
    assert run("config", "rate", "36000/h")[0] == 0
    mailing_id = make_mailing(recipients=recipients)
    assert run("send-now", str(mailing_id))[0] == 0
    wait_until(lambda: len(relay.received) >= 3, what="the first messages")
    return mailing_id


def assert_stops_within_a_second(relay) -> None:
    """No message reaches the relay once a second has passed (what was in the relay's
    hands may finish)."""
    time.sleep(1.0)  # what the engine may still hand over: the bound under test
    arrived = len(relay.received)
    assert_stays(lambda: len(relay.received) == arrived, 1.5, what="no message after the stop")


def test_a_stop_by_a_command_reaches_the_engine_within_a_second(
    store, make_mailing, relay, engine, run
):
    engine()
    mailing_id = sending_slowly(run, make_mailing, relay)
    assert run("stop", str(mailing_id))[0] == 0
    assert_stops_within_a_second(relay)
    stopped = mailing(store, mailing_id)
    assert stopped.state == "standby" and 0 < stopped.sent < 200
    assert stopped.sent == len(relay.received)  # each once, and counted


def test_a_stop_from_another_process_reaches_the_engine_within_a_second(
    store, make_mailing, relay, engine, run, db_url
):
    engine()
    mailing_id = sending_slowly(run, make_mailing, relay)
    stop = [sys.executable, "-c", "from sendstatus_tui.cli.main import main; main()"]
    subprocess.run([*stop, "--db", db_url, "stop", str(mailing_id)], check=True, timeout=60)
    assert_stops_within_a_second(relay)
    assert mailing(store, mailing_id).state == "standby"


def test_a_send_now_by_a_command_starts_within_a_second(store, make_mailing, relay, engine, run):
    assert run("relay", "add", "default", relay.url)[0] == 0
    engine()
    mailing_id = make_mailing(recipients=3)
    time.sleep(0.5)  # the engine idle, its first rounds done
    assert run("send-now", str(mailing_id))[0] == 0
    asked = time.monotonic()
    wait_until(lambda: len(relay.received) == 3, what="the messages")
    assert time.monotonic() - asked < 1.0


def test_a_changed_relay_is_followed_within_a_second(store, make_mailing, relays, engine, run):
    first, second = relays(), relays()
    engine()
    mailing_id = sending_slowly(run, make_mailing, first)
    assert run("relay", "set", "default", second.url)[0] == 0
    changed = time.monotonic()
    wait_until(lambda: second.received, what="messages through the new URL")
    assert time.monotonic() - changed < 1.0
    time.sleep(0.5)  # the batches claimed before the change may finish through the first
    through_first = len(first.received)
    assert_stays(lambda: len(first.received) == through_first, 1.0, what="the first unused")
    act(store, lifecycle.stop, mailing_id)


def test_a_raised_rate_is_picked_up(store, make_mailing, relay, engine, run):
    engine()
    assert run("relay", "add", "default", relay.url)[0] == 0
    assert run("config", "rate", "60/h")[0] == 0  # one a minute
    mailing_id = make_mailing(recipients=20)
    assert run("send-now", str(mailing_id))[0] == 0
    wait_until(lambda: relay.received, what="the first message")
    assert run("config", "rate", "3600000/h")[0] == 0
    raised = time.monotonic()
    wait_until(lambda: mailing(store, mailing_id).state == "completed", what="completion")
    assert time.monotonic() - raised < 2.0  # 19 messages at 1000/s, once picked up
    assert len(relay.received) == 20


def test_a_scheduled_mailing_starts_within_a_second_of_its_time(
    store, make_mailing, relay, engine, run
):
    assert run("relay", "add", "default", relay.url)[0] == 0
    engine()
    mailing_id = make_mailing(recipients=3)
    at = utc_now() + timedelta(seconds=2)
    act(store, lifecycle.schedule_at, mailing_id, at)
    wait_until(lambda: mailing(store, mailing_id).state == "completed", what="completion")
    started = mailing(store, mailing_id).started_at
    assert at <= started < at + timedelta(seconds=1)
    assert len(relay.received) == 3


def test_the_marker_moves_with_each_change_an_engine_follows(store, make_mailing, relay, run):
    def moved(action) -> bool:
        before = marker(store)
        action()
        return marker(store) > before

    def command(*args: str):
        def done() -> None:
            status, _, err = run(*args)
            assert status == 0, err

        return done

    mailing_id = None
    tomorrow = (utc_now() + timedelta(days=1)).strftime("%Y-%m-%d %H:%M")

    def add():
        nonlocal mailing_id
        mailing_id = make_mailing(recipients=2)

    assert moved(add)
    assert moved(command("schedule", str(mailing_id), "--at", tomorrow, "--tz", "UTC", "--yes"))
    assert moved(command("schedule", str(mailing_id), "--sequential", "--yes"))
    second, third = make_mailing(recipients=2), make_mailing(recipients=2)
    assert moved(command("schedule", str(second), "--sequential", "--yes"))
    assert moved(command("schedule", str(third), "--sequential", "--yes"))
    assert mailing(store, third).position == 2
    assert moved(command("move", str(third), "top"))
    assert moved(command("stop", str(mailing_id)))  # it was the sequential one starting
    assert moved(command("send-now", str(mailing_id)))
    assert moved(command("stop", str(mailing_id)))
    assert moved(command("rm", str(mailing_id), "--yes"))
    assert moved(command("config", "rate", "36000/h"))
    assert moved(command("config", "window", "Mon-Fri 09:00-18:00"))
    assert moved(command("relay", "add", "main", relay.url))
    assert moved(command("relay", "add", "spare", relay.url))
    assert moved(command("relay", "set", "main", "--weight", "2"))
    assert moved(command("relay", "rm", "main"))


def test_sending_alone_leaves_the_marker_still(store, make_mailing, relay, engine, run):
    """Recording batches changes counters, not what an engine follows: the marker moves
    for the start and the completion, not for each batch."""
    assert run("relay", "add", "default", relay.url)[0] == 0
    mailing_id = make_mailing(recipients=300)
    before = marker(store)
    engine()
    assert run("send-now", str(mailing_id))[0] == 0
    wait_until(lambda: mailing(store, mailing_id).state == "completed", what="completion")
    # send now, prepared (sending), completed; a few batches of 100 each would add more
    assert marker(store) - before == 3
