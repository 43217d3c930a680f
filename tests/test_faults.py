"""Faults, with real engine processes and a real relay on loopback: an engine stalled past
its lease, a long write lock, replies lost after the final dot or slower than the timeout,
a relay that hangs after DATA (then SIGTERM, then stop), a full filesystem.

Each is judged from what the relay received, the counters and the recipients in the
database: nobody skipped, counters never past the total and equal to the recipients by
status, every duplicate counted in doubt, every mailing completes or shows why not.
"""

import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from sqlmodel import select

from sendstatus_tui.core.model import lifecycle, settings
from sendstatus_tui.core.model.models import EngineLease, Recipient, utc_now

from .engine_processes import (
    LEASE_SECONDS,
    Delivery,
    EngineProcesses,
    assert_books_balance,
    failure_classes,
    hold_write_lock,
    stall_between_transactions,
    status_counts,
)
from .helpers import FAST, add_mailing, assert_stays, mailing, wait_until
from .smtp_relay import RelayScript

# engine processes under faults: the busy ones run serially (slow); those that mostly wait,
# under 0.4 of a core, four at a time (idle, docs/maintenance.md)

# an engine stalled (SIGSTOP) this long is past its lease, and stays stalled as long again
# after it (the lease is the processes' short one, engine_processes.LEASE_SECONDS)
STALL_SECONDS = 2 * LEASE_SECONDS


@pytest.fixture
def engines(db_url, relay, tmp_path):
    processes = EngineProcesses(db_url, relay.url, tmp_path)
    yield processes
    processes.stop_all()


def send_now(store, mailing_id) -> None:
    with store.write() as session:
        lifecycle.send_now(session, mailing_id)


def everyone(count: int) -> set[str]:
    return {f"person{i}@example.com" for i in range(count)}


@pytest.fixture
def watch_books():
    """Starts a thread that checks, until the test ends, that a mailing's counters never
    pass its total; returns (its stop event, the overruns it saw)."""
    watchers = []

    def watch(store, mailing_id) -> tuple[threading.Event, list]:
        stop, overruns = threading.Event(), []

        def check():
            while not stop.is_set():
                m = mailing(store, mailing_id)
                if m.sent + m.failed > m.total or m.remaining < 0:
                    overruns.append((m.sent, m.failed, m.total))
                time.sleep(0.05)

        thread = threading.Thread(target=check, daemon=True)
        thread.start()
        watchers.append((stop, thread))
        return stop, overruns

    yield watch
    for stop, thread in watchers:  # also when the test failed: the database goes next
        stop.set()
        thread.join(timeout=5)


def completed_with_true_books(store, relay, mailing_id, watching=None):
    """Waits for the mailing to complete, then checks the books: never past the total while
    it sent (when ``watching``, from watch_books), nobody skipped, every duplicate counted
    in doubt."""
    wait_until(lambda: mailing(store, mailing_id).state == "completed", 90, "completion", 0.1)
    done = assert_books_balance(store, mailing_id)
    delivery = Delivery(relay.copies(), done.resent_in_doubt)
    if watching is not None:
        stop_watching, overruns = watching
        stop_watching.set()
        assert overruns == []
    assert set(delivery.copies) == everyone(done.total)  # nobody skipped
    assert delivery.duplicates <= done.resent_in_doubt  # every duplicate counted
    return done


# --- an engine that stalls past its lease -------------------------------------------------


@pytest.mark.slow
def test_an_engine_stalled_past_its_lease_never_records_again(
    store, db_url, make_mailing, engines, relay, watch_books
):
    """SIGSTOP for twice the lease (which the heartbeat lasts too): the second engine takes
    over and hands the stalled one's claims back; when the stalled one wakes it records nothing
    of them and sends none of them, and goes on sending under a new claimant."""
    mailing_id = make_mailing(recipients=6000)
    send_now(store, mailing_id)
    first = engines.start("--rate", "500/s", lease=True)
    wait_until(lambda: mailing(store, mailing_id).sent >= 300, what="the first engine sending")
    second = engines.start("--rate", "500/s", lease=True)
    wait_until(lambda: "stands by to lead" in engines.log(second), what="a second engine")
    watching = watch_books(store, mailing_id)

    stall_between_transactions(first, db_url, holding_claims=True)
    stalled_at = time.monotonic()
    wait_until(lambda: engines.took_over(second), timeout=STALL_SECONDS, what="the takeover")
    time.sleep(max(0.0, stalled_at + STALL_SECONDS - time.monotonic()))  # the fault: stalled
    first.send_signal(signal.SIGCONT)

    done = completed_with_true_books(store, relay, mailing_id, watching)
    print(f"stalled engine: {Delivery(relay.copies(), done.resent_in_doubt)}")
    assert (done.sent, done.failed) == (6000, 0)
    assert "lost the lease" in engines.log(first)  # it knows
    assert "the leader handed its claims back" in engines.log(first)


@pytest.mark.idle
def test_an_engine_that_lost_its_lease_sends_again_once_it_takes_it_back(
    store, make_mailing, relay, engine_for
):
    """Another holder takes the lease for 2 s: the engine stops, then takes it back (a new
    generation), hands its own claims back in doubt, and finishes the mailing."""
    mailing_id = make_mailing(recipients=600)
    send_now(store, mailing_id)
    engine_for(relay, replace(FAST, rate_per_second=200))
    wait_until(lambda: mailing(store, mailing_id).sent >= 100, what="sending")
    with store.write() as session:
        held = session.get(EngineLease, "engine", with_for_update=True)
        held.holder, held.generation = "intruder", held.generation + 1
        held.expires_at = utc_now() + timedelta(seconds=2)

    wait_until(lambda: mailing(store, mailing_id).state == "completed", 30, "completion", 0.1)
    done = assert_books_balance(store, mailing_id)
    delivery = Delivery(relay.copies(), done.resent_in_doubt)
    assert set(delivery.copies) == everyone(600)
    assert delivery.duplicates <= done.resent_in_doubt


@pytest.mark.idle  # waits out a lock and counts: about half a core
def test_an_engine_blocked_behind_a_long_write_lock(
    store, db_url, make_mailing, engines, relay, watch_books
):
    """Another writer holds the lock past the lease (a big import): the engine's writes
    wait, its lease expires, the other engine may take over; the books stay true either
    way."""
    mailing_id = make_mailing(recipients=5000)
    send_now(store, mailing_id)
    first = engines.start("--rate", "500/s", lease=True)
    wait_until(lambda: mailing(store, mailing_id).sent >= 300, what="the first engine sending")
    engines.start("--rate", "500/s", lease=True)
    watching = watch_books(store, mailing_id)

    hold_write_lock(db_url, seconds=LEASE_SECONDS + 2)  # past the lease (5 + 2 s before)

    done = completed_with_true_books(store, relay, mailing_id, watching)
    print(f"long write lock: {Delivery(relay.copies(), done.resent_in_doubt)}")
    assert first.poll() is None  # it waited, it did not die


# --- replies lost ----------------------------------------------------------------------


@pytest.mark.idle  # a relay that drops replies, counted: a third of a core
def test_a_reply_lost_after_the_final_dot_is_in_doubt_counted_and_bounded(
    store, make_mailing, engines, relays
):
    """The relay stores the message and drops the connection without a reply: the
    recipient is resent and counted; one whose reply is lost 3 times fails as doubt."""
    dropped_once = [f"person{i}@example.com" for i in range(10)]
    always = "person10@example.com"
    faults = {address: ["drop"] for address in dropped_once} | {always: ["drop"] * 5}
    relay = relays(RelayScript(data_faults=faults))
    mailing_id = make_mailing(recipients=30)
    send_now(store, mailing_id)
    engines.start(relay_url=relay.url)

    done = completed_with_true_books(store, relay, mailing_id)
    copies = relay.copies()
    print(f"lost replies: {Delivery(copies, done.resent_in_doubt)}")
    assert all(copies[address] == 2 for address in dropped_once)
    assert copies[always] == 3  # three tries, then no more
    assert done.resent_in_doubt == 10 + 2
    assert (done.sent, done.failed) == (29, 1)
    assert failure_classes(store, mailing_id) == {"doubt": 1}
    with store.read() as session:
        failed = session.exec(
            select(Recipient).where(
                Recipient.mailing_id == mailing_id, Recipient.status == "failed"
            )
        ).one()
    assert failed.email == always and failed.doubts == 3 and "no reply" in failed.last_reply


@pytest.mark.idle
def test_a_retry_of_doubts_counts_every_copy_it_may_duplicate(store, make_mailing, engines, relays):
    """A recipient failed as doubt has up to 3 copies already: `retry --class doubt` sends
    it again, and every copy beyond the first, whatever sent it, is counted in doubt."""
    always = "person3@example.com"
    relay = relays(RelayScript(data_faults={always: ["drop"] * 4}))
    mailing_id = make_mailing(recipients=10)
    send_now(store, mailing_id)
    engines.start(relay_url=relay.url)
    first = completed_with_true_books(store, relay, mailing_id)
    assert relay.copies()[always] == 3 and first.failed == 1

    with store.write() as session:
        assert lifecycle.retry(session, mailing_id, ("doubt",)) == 1
    retried = assert_books_balance(store, mailing_id)
    assert (retried.failed, retried.remaining) == (0, 1)
    send_now(store, mailing_id)

    done = completed_with_true_books(store, relay, mailing_id)  # duplicates <= counted
    delivery = Delivery(relay.copies(), done.resent_in_doubt)
    print(f"doubts retried: {delivery}")
    assert relay.copies()[always] == 5  # 3, then one more lost reply, then accepted
    assert (done.sent, done.failed) == (10, 0)
    assert done.resent_in_doubt == delivery.duplicates == 4


@pytest.mark.idle
def test_a_reply_slower_than_the_timeout_is_in_doubt(store, make_mailing, engines, relays):
    late = [f"person{i}@example.com" for i in range(5)]
    relay = relays(RelayScript(data_faults={a: ["late"] for a in late}, late_seconds=2.5))
    mailing_id = make_mailing(recipients=20)
    send_now(store, mailing_id)
    engines.start(relay_url=f"{relay.url}&timeout=1")

    done = completed_with_true_books(store, relay, mailing_id)
    copies = relay.copies()
    print(f"slow replies: {Delivery(copies, done.resent_in_doubt)}")
    assert all(copies[address] == 2 for address in late)
    assert done.resent_in_doubt == 5 and (done.sent, done.failed) == (20, 0)


# --- a relay that hangs after DATA -----------------------------------------------------


def sending_into_a_hanging_relay(store, make_mailing, engines, relays):
    """An engine sending 200 messages to a relay that stores each and never answers (its
    timeout 3 s), once 4 connections hang. Returns the relay, the mailing and the engine."""
    relay = relays(RelayScript(data_fault_default="hang"))
    mailing_id = make_mailing(recipients=200)
    send_now(store, mailing_id)
    engine = engines.start(relay_url=f"{relay.url}&timeout=3")
    wait_until(lambda: len(relay.recipients()) >= 4, what="the relay to hang on 4 connections")
    return relay, mailing_id, engine


@pytest.mark.idle
def test_sigterm_is_bounded_when_the_relay_hangs_after_data(store, make_mailing, engines, relays):
    """SIGTERM ends the engine within 5 s plus one relay timeout (3 s here); what was
    unanswered is in doubt, counted, and handed back."""
    relay, mailing_id, engine = sending_into_a_hanging_relay(store, make_mailing, engines, relays)

    asked = time.monotonic()
    engine.send_signal(signal.SIGTERM)
    assert engine.wait(timeout=30) == 0
    took = time.monotonic() - asked
    done = assert_books_balance(store, mailing_id)
    delivery = Delivery(relay.copies(), done.resent_in_doubt)
    print(f"SIGTERM with a hanging relay: stopped in {took:.1f} s; {delivery}")
    assert took <= 5 + 3 + 2  # the bound, plus start-up noise
    assert "in_flight" not in status_counts(store, mailing_id)
    assert done.sent == 0
    # every message the relay holds is counted: it will be resent, in doubt
    assert delivery.delivered <= done.resent_in_doubt


@pytest.mark.slow
def test_stop_is_bounded_when_the_relay_hangs_after_data(
    store, db_url, make_mailing, engines, relays
):
    relay, mailing_id, engine = sending_into_a_hanging_relay(store, make_mailing, engines, relays)

    asked = time.monotonic()
    stop = subprocess.run(
        [sys.executable, "-m", "sendstatus_tui.cli.main", "--db", db_url, "stop", str(mailing_id)],
        capture_output=True,
        text=True,
    )
    assert stop.returncode == 0, stop.stderr
    wait_until(
        lambda: "in_flight" not in status_counts(store, mailing_id),
        timeout=5 + 3 + 2,
        what="the stop to hand every claim back",
    )
    took = time.monotonic() - asked
    done = assert_books_balance(store, mailing_id)
    delivery = Delivery(relay.copies(), done.resent_in_doubt)
    print(f"stop with a hanging relay: claims back in {took:.1f} s; {delivery}")
    assert done.state == "standby" and engine.poll() is None
    assert delivery.delivered <= done.resent_in_doubt


# --- a full filesystem -----------------------------------------------------------------


@pytest.fixture
def small_filesystem(tmp_path) -> Path:
    """A 48 MB tmpfs (3,000 messages take 12 MB in 4 kB pages), unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root; run as root to test a full disk")
    mount_point = tmp_path / "small"
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=48m", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    yield mount_point
    subprocess.run(["umount", "-l", str(mount_point)], check=True)


def fill(directory: Path) -> Path:
    """Writes a file until the filesystem is full; returns it."""
    filler = directory / "filler"
    with filler.open("wb", buffering=0) as out:  # unbuffered: closing has nothing to flush
        try:
            while True:
                out.write(b"\0" * 65536)
        except OSError:
            pass
    return filler


@pytest.mark.idle  # mostly waits, under half a core (docs/maintenance.md)
def test_a_full_disk_pauses_sending_and_it_resumes_by_itself(small_filesystem):
    from sendstatus_tui.core.store.store import Store

    db_url = f"sqlite:///{small_filesystem / 'sendstatus.db'}"
    maildir = small_filesystem / "maildir"
    store = Store(db_url)
    mailing_id = add_mailing(store, small_filesystem, 3000, name="Full disk")
    send_now(store, mailing_id)
    processes = EngineProcesses(db_url, f"maildir:{maildir}", small_filesystem.parent)
    try:
        processes.start("--rate", "400/s")
        wait_until(lambda: mailing(store, mailing_id).sent >= 300, what="sending")
        filler = fill(small_filesystem)
        first = processes.started[0][0]
        wait_until(lambda: "cannot write to database" in processes.log(first), 10, "a word")
        stalled_at = mailing(store, mailing_id).sent
        assert_stays(  # paused, not failing anyone, for 2 s of the engine retrying its writes
            lambda: mailing(store, mailing_id).sent == stalled_at, 2, "the pause"
        )
        late = processes.start("--rate", "400/s")  # an engine started on the full disk
        wait_until(lambda: "cannot write to database" in processes.log(late), 10, "a word")
        filler.unlink()

        wait_until(lambda: mailing(store, mailing_id).state == "completed", 60, "completion", 0.1)
        done = assert_books_balance(store, mailing_id)
        copies = maildir_recipients(maildir)
        print(f"full disk: {Delivery(copies, done.resent_in_doubt)}")
        assert (done.sent, done.failed) == (3000, 0)
        assert set(copies) == everyone(3000)
        assert sum(copies.values()) - len(copies) <= done.resent_in_doubt
        assert processes.log(late).count("cannot write to database") == 1
        for process, _ in processes.started:
            assert "Traceback" not in processes.log(process)
            assert "never retrieved" not in processes.log(process)
    finally:
        processes.stop_all()
        store.dispose()


def maildir_recipients(maildir: Path):
    import mailbox
    from collections import Counter

    return Counter(message["To"] for message in mailbox.Maildir(maildir, create=False))


# --- a stop under a slow rate ------------------------------------------------------------


def slow_rate_send(store, make_mailing, engines, relay):
    """One engine sending 20 recipients at 20/min, once the first went out and the next is
    claimed, waiting for its send slot (claimed HORIZON_SECONDS ahead of it): returns the
    mailing and the engine. Waiting for the slots would take 3 s each, past the promise's
    bound; a slower rate only makes the test wait longer for that claim."""
    with store.write() as session:
        settings.write(session, "rate", "20/min")
    mailing_id = make_mailing(recipients=20)
    engine = engines.start()
    send_now(store, mailing_id)
    wait_until(lambda: relay.received, 20, "the first message")
    wait_until(
        lambda: status_counts(store, mailing_id).get("in_flight"),
        15,
        "the next recipient claimed, waiting for its slot",
        0.01,
    )
    return mailing_id, engine


def assert_stopped_clean(store, mailing_id, relay, log: str) -> None:
    """Nothing in flight, the books balance, nobody counted in doubt: the recipients never
    handed to the relay went back to pending."""
    counts = status_counts(store, mailing_id)
    assert "in_flight" not in counts, counts
    done = assert_books_balance(store, mailing_id)
    assert done.sent == len(relay.received) == len(relay.copies()) == 1
    assert counts.get("pending", 0) == 20 - done.sent
    assert done.resent_in_doubt == 0
    assert "in doubt" not in log, log


@pytest.mark.idle
def test_sigterm_under_a_slow_rate_ends_within_a_second(store, make_mailing, engines, relay):
    """Issue "Promises that hold" 2: at 6/min SIGTERM waited for send slots (19 s), and the
    recipients never handed over were logged as unanswered, in doubt."""
    mailing_id, engine = slow_rate_send(store, make_mailing, engines, relay)
    asked = time.monotonic()
    engine.send_signal(signal.SIGTERM)
    assert engine.wait(timeout=30) == 0
    took = time.monotonic() - asked
    print(f"SIGTERM at 20/min: the engine ended in {took:.2f} s")
    assert took <= 1.0 + 0.5  # the promise, plus the interpreter's exit
    assert_stopped_clean(store, mailing_id, relay, engines.log(engine))


@pytest.mark.idle
def test_stop_under_a_slow_rate_hands_back_within_a_second(store, make_mailing, engines, relay):
    """The same for a stop (what `sendstatus stop ID` does, in this process so that it
    lands while the claim waits for its slot)."""
    mailing_id, engine = slow_rate_send(store, make_mailing, engines, relay)
    with store.write() as session:
        lifecycle.stop(session, mailing_id)
    stopped = time.monotonic()
    wait_until(
        lambda: "in_flight" not in status_counts(store, mailing_id),
        timeout=1.0,
        what="the stop to hand every claim back within a second",
    )
    print(f"stop at 20/min: claims back {time.monotonic() - stopped:.2f} s after it")
    assert mailing(store, mailing_id).state == "standby" and engine.poll() is None
    time.sleep(0.5)  # what the engine logs after handing back
    assert_stopped_clean(store, mailing_id, relay, engines.log(engine))
