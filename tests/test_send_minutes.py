"""Each mailing's outcomes counted per minute, shared by every engine: counts added at once
by several writers are all kept (SQLite and PostgreSQL), the old minutes are pruned, and
a speed and a chart are read from them."""

import json
import re
import threading
import time
from datetime import timedelta

import sqlalchemy as sa
from sqlmodel import select

from sendstatus_tui.core.coordination import deliveries, lease
from sendstatus_tui.core.model import lifecycle, send_minutes
from sendstatus_tui.core.model.models import Mailing, SendMinute, utc_now
from sendstatus_tui.core.model.send_minutes import minute_of
from sendstatus_tui.core.reads.throughput import read_throughput
from sendstatus_tui.core.store.store import Store

from .helpers import FIXED_NOW

BATCHES, BATCH = 15, 20
MINUTE = timedelta(minutes=1)


def record_batches(url: str, mailing_id: int, claimant: str, start: threading.Barrier) -> None:
    """An engine of its own (its own connections) recording BATCHES batches into the
    minute of FIXED_NOW."""
    store = Store(url)
    try:
        start.wait()
        for batch in range(BATCHES):
            with store.write() as session:
                claimed = deliveries.claim(session, mailing_id, BATCH, FIXED_NOW, claimant=claimant)
                sent = [deliveries.Outcome(r, deliveries.SENT) for r in claimed[:-1]]
                failed = [deliveries.Outcome(r, deliveries.FAILED, "550 no") for r in claimed[-1:]]
                at = FIXED_NOW + timedelta(seconds=batch)
                deliveries.record(session, mailing_id, sent + failed, claimant=claimant, now=at)
    finally:
        store.dispose()


def test_engines_adding_to_the_same_minute_at_once_lose_no_count(store, db_url, make_mailing):
    mailing_id = make_mailing(recipients=2 * BATCHES * BATCH)
    with store.write() as session:
        lifecycle.send_now(session, mailing_id)
        lifecycle.mark_prepared(session, mailing_id)
    start = threading.Barrier(2)
    engines = [
        threading.Thread(target=record_batches, args=(db_url, mailing_id, name, start))
        for name in ("engine-a", "engine-b")
    ]
    for engine in engines:
        engine.start()
    for engine in engines:
        engine.join(60)
    with store.read() as session:
        minutes = session.exec(select(SendMinute)).all()
        mailing = session.get_one(Mailing, mailing_id)
    assert [(m.minute, m.sent, m.failed) for m in minutes] == [
        (FIXED_NOW, 2 * BATCHES * (BATCH - 1), 2 * BATCHES)
    ]
    assert (mailing.sent, mailing.failed) == (minutes[0].sent, minutes[0].failed)
    assert minutes[0].first_at == FIXED_NOW
    assert minutes[0].last_at == FIXED_NOW + timedelta(seconds=BATCHES - 1)


def test_minutes_older_than_a_day_are_pruned_and_the_rest_read(store, make_mailing):
    mailing_id = make_mailing(recipients=3)
    day = send_minutes.MINUTES_KEPT
    with store.write() as session:
        for at in (FIXED_NOW - day - timedelta(minutes=1), FIXED_NOW - day, FIXED_NOW):
            send_minutes.add_outcomes(session, mailing_id, 60, 0, at)
        assert send_minutes.prune(session, FIXED_NOW) == 1
    with store.read() as session:
        kept = read_throughput(session, [mailing_id], FIXED_NOW - day)[mailing_id]
        assert [m.start for m in kept.minutes] == [FIXED_NOW - day, FIXED_NOW]
        assert session.execute(sa.select(sa.func.count()).select_from(SendMinute)).scalar() == 2


def test_a_speed_is_read_from_the_last_minutes_and_falls_to_nothing_when_quiet(store, make_mailing):
    mailing_id = make_mailing(recipients=3)
    with store.write() as session:  # 600 a minute for two minutes, the last record at 09:00
        send_minutes.add_outcomes(session, mailing_id, 600, 0, FIXED_NOW - timedelta(minutes=1))
        send_minutes.add_outcomes(session, mailing_id, 540, 60, FIXED_NOW)
    with store.read() as session:
        throughput = read_throughput(session, [mailing_id], FIXED_NOW)[mailing_id]
    assert [m.start for m in throughput.minutes] == [FIXED_NOW]  # from the minute asked for
    with store.read() as session:
        since = FIXED_NOW - timedelta(hours=1)
        throughput = read_throughput(session, [mailing_id], since)[mailing_id]
    assert throughput.speed(FIXED_NOW) == 1_200 / 60  # over the minute since 08:59
    assert throughput.speed(FIXED_NOW + timedelta(seconds=5)) == 1_200 / 65
    assert throughput.speed(FIXED_NOW + timedelta(seconds=11)) == 0.0  # nothing for 11 s
    assert throughput.speed(FIXED_NOW + timedelta(minutes=3)) is None  # nothing recent
    chart = throughput.handled_per_minute(FIXED_NOW)
    assert len(chart) == 60 and chart[-2:] == [600, 600] and not any(chart[:-2])


def within_one_minute(needed: timedelta) -> None:
    """Waits, if need be, for a minute with ``needed`` left in it: the speed is read over
    the wall clock's current and previous minutes, so a test that writes "the minute before
    this one" must read before the next minute starts."""
    left = minute_of(utc_now()) + MINUTE - utc_now()
    if left < needed:
        time.sleep(left.total_seconds())


def test_ls_and_show_tell_the_speed_per_minute_and_their_json_per_second(store, make_mailing, run):
    mailing_id = make_mailing(recipients=3_000)
    within_one_minute(timedelta(seconds=5))
    now = utc_now()
    with store.write() as session:
        lifecycle.send_now(session, mailing_id)
        lifecycle.mark_prepared(session, mailing_id)
        assert lease.acquire(session, "engine@elsewhere", timedelta(minutes=5), now).held
        # 600 in the minute before this one, and a batch just now
        send_minutes.add_outcomes(session, mailing_id, 600, 0, minute_of(now) - MINUTE)
        send_minutes.add_outcomes(session, mailing_id, 10, 0, now)
    low, high = 610 / 121 * 60, 610 / 60 * 60  # messages per minute, over 60 to 121 s

    status, listed, _ = run("ls", "--area", "now")
    speed = re.search(r"([\d,]+)/min", listed)
    assert status == 0 and speed and low <= int(speed[1].replace(",", "")) <= high
    status, shown, _ = run("show", str(mailing_id))
    speed = re.search(r"Speed: +([\d,]+)/min now, done in ", shown)
    assert status == 0 and speed and low <= int(speed[1].replace(",", "")) <= high
    assert "Last hour:      610 sent, 0 failed" in shown

    (one,) = json.loads(run("ls", "--json", "--area", "now")[1])
    assert low / 60 <= one["speed_per_second"] <= high / 60
    details = json.loads(run("show", "--json", str(mailing_id))[1])
    assert low / 60 <= details["speed_per_second"] <= high / 60
    assert details["last_hour"] == {"sent": 610, "failed": 0, "bounced": 0, "complained": 0}
    with store.write() as session:
        lifecycle.stop(session, mailing_id)
    stopped = json.loads(run("show", "--json", str(mailing_id))[1])
    assert stopped["speed_per_second"] is None  # a stopped mailing has no current rate
