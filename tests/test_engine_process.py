"""`sendstatus engine` as a real process: clean stop, the lease, and kill -9 mid-send."""

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import timedelta

import pytest
from sqlmodel import select

from sendstatus_tui.core.coordination import lease
from sendstatus_tui.core.model import lifecycle
from sendstatus_tui.core.model.models import EngineLease
from sendstatus_tui.engine.headless import ALERT_TIMEOUT_ENV, LEASE_ENV, engine_settings
from sendstatus_tui.engine.settings import EngineSettings
from sendstatus_tui.errors import SendStatusError

from .engine_processes import TAKEOVER_SECONDS, short_lease, status_counts
from .helpers import mailing, wait_until

pytestmark = pytest.mark.slow  # engine processes, kill -9: run serially


@pytest.fixture
def engines(db_url, relay):
    """Starts `sendstatus engine` processes on the test database and relay."""
    started = []

    def start(*options: str, lease: bool = False) -> subprocess.Popen:
        """An engine with ``options``; with ``lease``, it takes the short lease."""
        process = subprocess.Popen(
            [sys.executable, "-m", "sendstatus_tui.cli.main", "engine", "--db", db_url,
             "--smtp", relay.url, *options],
            stderr=subprocess.PIPE,
            text=True,
            env=short_lease() if lease else None,
        )  # fmt: skip
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
        process.wait()


def test_sigterm_finishes_the_batch_and_releases_the_lease(store, make_mailing, engines):
    mailing_id = make_mailing(recipients=2000)
    with store.write() as session:
        lifecycle.send_now(session, mailing_id)
    engine = engines("--rate", "400/s")
    wait_until(lambda: mailing(store, mailing_id).sent >= 100, what="sending to start")
    engine.send_signal(signal.SIGTERM)
    assert engine.wait(timeout=30) == 0
    log = engine.stderr.read()
    assert "SIGTERM: finishing the batches in flight" in log and "lease released" in log
    counts = status_counts(store, mailing_id)
    assert "in_flight" not in counts  # every claimed recipient was recorded or handed back
    assert counts["sent"] == mailing(store, mailing_id).sent
    with store.read() as session:
        assert session.exec(select(EngineLease)).one().expires_at <= lifecycle.utc_now()


def lease_holder(store) -> str:
    with store.read() as session:
        return lease.current(session).holder


def test_a_second_engine_sends_too_and_takes_over_after_kill_9(store, make_mailing, engines, relay):
    """Nobody is skipped: every recipient ends sent; only those in flight at the kill may
    arrive twice, and they are counted."""
    mailing_id = make_mailing(recipients=3000)
    with store.write() as session:
        lifecycle.send_now(session, mailing_id)
    first = engines("--rate", "1000/s", lease=True)
    wait_until(lambda: mailing(store, mailing_id).sent >= 300, what="first engine sending")

    second = engines("--rate", "1000/s", lease=True)
    standing_by = second.stderr.readline()
    while "another engine" not in standing_by:
        standing_by = second.stderr.readline()
    assert "this one sends, and stands by to lead" in standing_by

    with store.read() as session:
        first_holder = lease.current(session).holder
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    killed_at = time.monotonic()
    wait_until(lambda: lease_holder(store) != first_holder, timeout=10, what="the takeover")
    takeover_seconds = time.monotonic() - killed_at
    wait_until(
        lambda: mailing(store, mailing_id).state == "completed", timeout=60, what="completion"
    )

    done = mailing(store, mailing_id)
    assert (done.sent, done.failed) == (3000, 0)
    assert status_counts(store, mailing_id) == {"sent": 3000}
    received = Counter(relay.recipients())
    assert set(received) == {f"person{i}@example.com" for i in range(3000)}  # nobody skipped
    twice = sum(count - 1 for count in received.values())
    assert twice <= done.resent_in_doubt  # every duplicate is one that was in doubt
    assert done.resent_in_doubt <= 200  # the in-flight window: one batch
    assert takeover_seconds < TAKEOVER_SECONDS
    print(f"takeover {takeover_seconds:.1f} s, in doubt {done.resent_in_doubt}, twice {twice}")


def test_the_lease_can_be_shortened_through_the_environment():
    """SENDSTATUS_LEASE_SECONDS sets the lease and the heartbeat's life; the engine beats
    five times in one. Unset, the defaults hold."""
    assert engine_settings(None, {}) == EngineSettings()
    short = engine_settings(300.0, {LEASE_ENV: "2"})
    assert (short.lease_ttl, short.lease_renew_seconds) == (timedelta(seconds=2), 0.4)
    assert short.rate_per_second == 300.0
    assert engine_settings(None, {LEASE_ENV: "1"}).lease_ttl == timedelta(seconds=1)  # the floor


def test_the_alerts_timeout_can_be_shortened_through_the_environment():
    """SENDSTATUS_ALERT_TIMEOUT_SECONDS: how long an alert command or webhook may take (10 s
    unset), 1 s at least, as the lease takes its own variable."""
    assert EngineSettings().alert_timeout_seconds == 10
    assert engine_settings(None, {ALERT_TIMEOUT_ENV: "2.5"}).alert_timeout_seconds == 2.5
    assert engine_settings(None, {ALERT_TIMEOUT_ENV: "1"}).alert_timeout_seconds == 1
    for bad in ("0.5", "soon", "nan"):
        with pytest.raises(SendStatusError, match="SENDSTATUS_ALERT_TIMEOUT_SECONDS"):
            engine_settings(None, {ALERT_TIMEOUT_ENV: bad})
