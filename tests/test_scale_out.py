"""Several engines on one database, as real processes against a real relay on loopback:
they share a mailing, survive the kill -9 of any of them, keep to one contracted rate
together, keep the sequential rule, and a write lock held past the lease slows only their
bookkeeping.

Judged from what the relay received, the counters, the recipients and the engine rows."""

import signal
import threading
import time
from pathlib import Path

import pytest
from sqlmodel import select

from sendstatus_tui.core.coordination import lease, shared_rate
from sendstatus_tui.core.model import lifecycle, settings
from sendstatus_tui.core.model.models import Mailing, SendMinute, utc_now
from sendstatus_tui.core.model.states import Mode, State
from sendstatus_tui.engine.settings import EngineSettings

from .engine_processes import (
    LEASE_SECONDS,
    LOCK_PAST_THE_LEASE_SECONDS,
    TAKEOVER_SECONDS,
    Delivery,
    EngineProcesses,
    assert_books_balance,
    hold_write_lock,
    registered_engines,
    start_engines,
    status_counts,
)
from .helpers import add_mailing, assert_stays, mailing, wait_until

BATCH_SIZE = 200  # EngineSettings.batch_size: the most one engine has in flight per mailing


@pytest.fixture
def engines(db_url, relay, tmp_path):
    processes = EngineProcesses(db_url, relay.url, tmp_path)
    yield processes
    processes.stop_all()


def store_rate(store, rate: str | None) -> None:
    with store.write() as session:
        settings.write(session, "rate", rate)


def sent_by_engine(store, watching: threading.Event, seen: dict[str, int]) -> threading.Thread:
    """Notes each engine's `sent` from its row until ``watching`` is cleared (rows go when
    engines stop)."""

    def watch():
        while watching.is_set():
            for row in registered_engines(store):
                seen[row.id] = max(seen.get(row.id, 0), row.sent)
            time.sleep(0.1)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def everyone(count: int) -> set[str]:
    return {f"person{i}@example.com" for i in range(count)}


def completed(store, mailing_id, timeout=90) -> Mailing:
    wait_until(lambda: mailing(store, mailing_id).state == "completed", timeout, "completion", 0.1)
    return assert_books_balance(store, mailing_id)


@pytest.mark.slow  # several engine processes at scale: run serially
def test_two_engines_share_one_mailing(store, make_mailing, engines, relay):
    """Each sends a part; together exactly everyone, once."""
    store_rate(store, "1000/s")  # slow enough that both are under way for seconds
    mailing_id = make_mailing(recipients=3000)
    start_engines(engines, store, 2)
    watching, seen = threading.Event(), {}
    watching.set()
    watcher = sent_by_engine(store, watching, seen)
    with store.write() as session:
        lifecycle.send_now(session, mailing_id)

    done = completed(store, mailing_id)
    wait_until(lambda: sum(seen.values()) >= 3000, 10, "the last heartbeats' counts", 0.1)
    watching.clear()
    watcher.join()
    copies = relay.copies()
    print(f"sent by engine: {sorted(seen.values())}")
    assert (done.sent, done.resent_in_doubt) == (3000, 0)
    assert set(copies) == everyone(3000) and max(copies.values()) == 1
    assert len(seen) == 2 and min(seen.values()) > 300  # each sent a real part
    assert sum(seen.values()) == 3000
    with store.read() as session:  # both added to the same minutes: none lost
        minutes = session.exec(select(SendMinute).where(SendMinute.mailing_id == mailing_id))
        assert sum(minute.sent for minute in minutes) == 3000


@pytest.mark.slow  # kill -9 at 1,000 messages a second
@pytest.mark.parametrize("victim", ["leader", "sender"])
def test_kill_9_of_an_engine_mid_send_loses_nobody(store, make_mailing, engines, relay, victim):
    """The survivor finishes the mailing: nobody skipped, duplicates only from the killed
    engine's in-flight window and all counted; a killed leader is replaced once its lease
    runs out (TAKEOVER_SECONDS)."""
    store_rate(store, "1200/s")
    mailing_id = make_mailing(recipients=5000)
    first = engines.start(lease=True)
    wait_until(lambda: engines.took_over(first), what="the first engine leading")
    second = engines.start(lease=True)
    wait_until(lambda: len(registered_engines(store)) == 2, 20, "two engines registered")
    with store.write() as session:
        lifecycle.send_now(session, mailing_id)
    wait_until(lambda: all(r.sent > 50 for r in registered_engines(store)), 20, "both sending")

    killed = first if victim == "leader" else second
    with store.read() as session:
        leader_before = lease.current(session).holder
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    killed_at = time.monotonic()
    if victim == "leader":
        wait_until(lambda: lease_holder(store) != leader_before, 10, "a new leader")
        took_over = time.monotonic() - killed_at
        assert took_over < TAKEOVER_SECONDS, took_over

    done = completed(store, mailing_id)
    delivery = Delivery(relay.copies(), done.resent_in_doubt)
    print(f"kill -9 of the {victim}: {delivery}")
    assert (done.sent, done.failed) == (5000, 0)
    assert set(delivery.copies) == everyone(5000)  # nobody skipped
    assert delivery.duplicates <= done.resent_in_doubt <= BATCH_SIZE  # the in-flight window
    if victim == "sender":
        assert lease_holder(store) == leader_before  # the leader went on leading


def lease_holder(store) -> str:
    with store.read() as session:
        return lease.current(session).holder


@pytest.mark.slow  # a measurement of the rate
@pytest.mark.parametrize("count", [2, 4])
def test_engines_together_keep_to_the_stored_rate(store, make_mailing, engines, relay, count):
    """100/s stored, two mailings at once, ``count`` engines: the relay never gets more than
    the rate since the first message, and each mailing gets about half of it."""
    store_rate(store, "100/s")
    first, second = make_mailing(recipients=400), make_mailing(recipients=400)
    start_engines(engines, store, count)
    with store.write() as session:
        lifecycle.send_now(session, first)
        lifecycle.send_now(session, second)
    wait_until(lambda: len(relay.received) >= 500, 30, "500 messages", 0.1)

    with relay.lock:
        times = sorted(r.at for r in relay.received)
    start = times[0]
    # The promise (core/coordination/shared_rate.py): slots one every 1/rate seconds from
    # the first slot, none given twice, no message before its slot. The first slot is
    # reserved by a claim, after the first mailing started sending (its started_at): so by
    # any moment at most the rate since that start, plus the one at the start, have
    # arrived. The relay's clock is the monotonic one: the start is taken onto it, the two
    # clocks read one after the other here (a millisecond of leeway for that reading).
    first_slot_earliest = min(mailing(store, m).started_at for m in (first, second))
    on_relay_clock = time.monotonic() - (utc_now() - first_slot_earliest).total_seconds()
    overruns = [
        (round(t - on_relay_clock, 3), n + 1)
        for n, t in enumerate(times)
        if n + 1 > (t - on_relay_clock + 0.001) * 100 + 1
    ]
    assert overruns == [], overruns[:5]
    span = times[499] - start
    print(f"{count} engines: 500 messages in {span:.2f} s, {499 / span:.1f}/s (rate 100/s)")
    assert 499 / span > 85  # and the rate is used
    by_mailing = {m: mailing(store, m).sent for m in (first, second)}
    assert min(by_mailing.values()) > 0.35 * sum(by_mailing.values()), by_mailing


def make_sequential(store, tmp_path: Path, number: int, recipients: int) -> int:
    """Mailing ``number`` of a queue: its own sender, so that the relay tells them apart."""
    return add_mailing(
        store,
        tmp_path,
        [f"q{number}.{i}@example.com" for i in range(recipients)],
        name=f"Queue {number}",
        sender=f"queue{number}@shop.example.com",
        subject="Hello",
        text_body="Hi",
    )


@pytest.mark.slow  # several engine processes at scale: run serially
def test_three_engines_keep_the_sequential_rule(store, engines, relay, tmp_path):
    """Three sequential mailings, three engines: never two sending at once, and the relay
    gets the first message of each only after the last of the one before."""
    store_rate(store, "400/s")
    queue = [make_sequential(store, tmp_path, n, 300) for n in range(3)]
    start_engines(engines, store, 3)
    broken, watching = [], threading.Event()
    watching.set()

    def watch():
        while watching.is_set():
            with store.read() as session:
                active = session.exec(
                    select(Mailing.id).where(
                        Mailing.mode == Mode.SEQUENTIAL,
                        Mailing.state.in_([State.STARTING, State.SENDING]),
                    )
                ).all()
            if len(active) > 1:
                broken.append(active)
            time.sleep(0.02)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    with store.write() as session:
        for mailing_id in queue:
            lifecycle.enqueue(session, mailing_id)
    for mailing_id in queue:
        completed(store, mailing_id)
    watching.clear()
    watcher.join()

    assert broken == []
    with relay.lock:
        received = list(relay.received)
    spans = []
    for n in range(3):
        times = [r.at for r in received if r.mail_from == f"queue{n}@shop.example.com"]
        assert len(times) == 300
        spans.append((min(times), max(times)))
    assert spans[0][1] <= spans[1][0] and spans[1][1] <= spans[2][0], spans


@pytest.mark.idle  # waits out a lock on under half a core and counts (docs/maintenance.md)
def test_a_write_lock_held_past_the_lease_slows_only_bookkeeping(
    store, make_mailing, engines, relay
):
    """Another process holds the write lock for twice the lease: messages already claimed
    keep going to the relay, no engine loses its lease or its claims for it, and the
    mailing completes with nobody sent twice.

    3000 recipients at 600/s: 600 sent before the lock, at most two batches (the claims in
    flight) during it, and some 2000 after it, seconds of beats and claims under the same
    lease."""
    store_rate(store, "600/s")
    mailing_id = make_mailing(recipients=3000)
    processes = start_engines(engines, store, 2, lease=True)
    with store.write() as session:
        lifecycle.send_now(session, mailing_id)
    wait_until(lambda: mailing(store, mailing_id).sent >= 600, 30, "sending under way")
    with store.read() as session:
        before = lease.current(session)
        holder, generation = before.holder, before.generation

    arrived, taken = [], threading.Event()
    locker = threading.Thread(
        target=hold_write_lock, args=(store.url, LOCK_PAST_THE_LEASE_SECONDS, taken)
    )
    locker.start()
    assert taken.wait(10)
    arrived.append(len(relay.received))
    # claimed messages go out while the lease the engines last renewed lasts: well within
    # the lock
    wait_until(lambda: len(relay.received) > arrived[0], LEASE_SECONDS, "messages in the lock")
    arrived.append(len(relay.received))
    locker.join()

    done = completed(store, mailing_id)
    print(f"during the lock: {arrived[1] - arrived[0]} messages arrived")
    assert arrived[1] > arrived[0]  # the in-flight window went on
    with store.read() as session:
        after = lease.current(session)
    assert (after.holder, after.generation) == (holder, generation)
    assert (done.sent, done.resent_in_doubt) == (3000, 0)
    assert max(relay.copies().values()) == 1
    for process in processes:
        assert "lost the lease" not in engines.log(process)
        assert "handed its claims back" not in engines.log(process)


@pytest.mark.slow  # several engine processes at scale: run serially
def test_a_stop_reaches_every_engine(store, make_mailing, engines, relay):
    """Stopped while two engines send it: within the stop bound nothing more reaches the
    relay, nothing is left in flight, and every message the relay got is counted sent."""
    store_rate(store, "400/s")
    mailing_id = make_mailing(recipients=5000)
    start_engines(engines, store, 2)
    with store.write() as session:
        lifecycle.send_now(session, mailing_id)
    wait_until(lambda: all(r.sent > 50 for r in registered_engines(store)), 20, "both sending")

    with store.write() as session:
        lifecycle.stop(session, mailing_id)
    # within the stop bound (each engine's stop_grace_seconds, 5 s, plus a relay timeout)
    # every claim is recorded or handed back: nothing is left in flight
    wait_until(lambda: "in_flight" not in status_counts(store, mailing_id), 5 + 30, "claims")
    arrived = len(relay.received)
    # nothing more goes out: watched for four reconciles (0.25 s each) of every engine
    assert_stays(lambda: len(relay.received) == arrived, 1.0, "no more messages")
    stopped = assert_books_balance(store, mailing_id)
    assert stopped.state == "standby"
    assert status_counts(store, mailing_id).get("in_flight", 0) == 0
    assert stopped.sent == arrived and stopped.resent_in_doubt == 0
    assert max(relay.copies().values()) == 1


# how late an engine may follow a change of the stored rate, from its settings: a claimer
# waiting for its slot looks at the rate every reconcile interval, slots are reserved
# HORIZON_SECONDS ahead (those keep the old spacing) plus one claim's, a mailing that had
# the last slots waits TURN_SECONDS more; and the noise of four processes on two cores
FOLLOW_BOUND = (
    EngineSettings().reconcile_seconds
    + shared_rate.HORIZON_SECONDS
    + shared_rate.TURN_SECONDS
    + 0.5
)


def arrivals(relay) -> list[float]:
    with relay.lock:
        return sorted(r.at for r in relay.received)


@pytest.mark.slow  # a measurement of time
def test_a_rate_change_is_followed_within_a_second_both_ways(store, make_mailing, engines, relay):
    """Issue "Promises that hold" 1: 6/min raised to 600/min while four engines send (it
    took 83 s: the slots reserved at 10 s apart were kept), then lowered to 60/min (the old
    rate ran on for 2 s). The relay's arrivals follow each change within FOLLOW_BOUND."""
    store_rate(store, "6/min")
    mailing_id = make_mailing(recipients=400)
    start_engines(engines, store, 4)
    with store.write() as session:
        lifecycle.send_now(session, mailing_id)
    wait_until(lambda: relay.received, 20, "the first message")
    # every engine's lanes are waiting for a slot of 6/min (four reconciles of each); with
    # the slots kept at the old spacing, the next would come 9 s after the raise
    time.sleep(4 * EngineSettings().reconcile_seconds)
    assert len(relay.received) == 1

    raised = time.monotonic()
    store_rate(store, "600/min")
    wait_until(lambda: len(relay.received) >= 12, 30, "ten messages at 600/min", 0.05)
    after = [t for t in arrivals(relay) if t > raised]
    followed_up = after[0] - raised
    ten = after[10] - after[0]
    print(f"raised 6/min -> 600/min: first message after {followed_up:.2f} s, ten in {ten:.2f} s")
    assert followed_up <= FOLLOW_BOUND
    assert 0.9 <= ten <= 1.0 + FOLLOW_BOUND  # and at the new rate, not above it

    time.sleep(1.5)
    lowered = time.monotonic()
    store_rate(store, "60/min")
    time.sleep(FOLLOW_BOUND + 3.5)
    times = [t for t in arrivals(relay) if t > lowered - 1]
    # the last message spaced at the old rate (less than half the new spacing after the one
    # before it) is when the old rate ended
    fast = [b for a, b in zip(times, times[1:], strict=False) if b - a < 0.5 and b > lowered]
    followed_down = (fast[-1] - lowered) if fast else 0.0
    later = [t for t in times if t > lowered + FOLLOW_BOUND]
    print(
        f"lowered 600/min -> 60/min: the old rate ended {followed_down:.2f} s after;"
        f" {len(later)} messages in the {times[-1] - lowered - FOLLOW_BOUND:.1f} s after"
    )
    assert followed_down <= FOLLOW_BOUND
    assert all(b - a >= 0.9 for a, b in zip(later, later[1:], strict=False)), later
    with store.write() as session:
        lifecycle.stop(session, mailing_id)
    wait_until(lambda: "in_flight" not in status_counts(store, mailing_id), 10, "claims back")
    done = assert_books_balance(store, mailing_id)
    assert done.sent == len(relay.received) == len(relay.copies())
    assert done.resent_in_doubt == 0
    for process, _ in engines.started:  # the one NextSlot row is the migration's
        assert "pk_send_pace" not in engines.log(process)
        assert "duplicate key" not in engines.log(process)
