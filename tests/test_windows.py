"""Sending windows end to end (issue 20): given on the command line, kept by the mailing,
obeyed by the engine against a real relay on loopback, and told in the rows.

The engine's test uses a window computed from now, a few seconds ahead, written with
seconds (the syntax takes ``09:00:30``): the engine reads the real clock, as it does in
production, rather than a clock a test could set."""

import json
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from sendstatus_tui.core.model import lifecycle
from sendstatus_tui.core.model.states import Area, State
from sendstatus_tui.core.model.waiting import WaitingKind
from sendstatus_tui.core.model.window import DAY_NAMES, OUTSIDE_WINDOW, parse_window
from sendstatus_tui.core.reads.details import read_details
from sendstatus_tui.core.reads.listing import list_pane_rows
from sendstatus_tui.views.cells import eta, now_status
from sendstatus_tui.views.details import show_text
from sendstatus_tui.views.panes import pane_cells

from .helpers import FAST, act, assert_stays, mailing, wait_until, write_file


def window_text(spans: list[tuple[datetime, datetime]]) -> str:
    """A window in UTC open during ``spans`` (to the second; a span past midnight is
    written as two days' hours)."""
    groups = []
    for start, end in spans:
        while start < end:
            midnight = datetime.combine(start.date() + timedelta(days=1), datetime.min.time(), UTC)
            stop = min(end, midnight)
            close = "24:00" if stop == midnight else f"{stop:%H:%M:%S}"
            groups.append(f"{DAY_NAMES[start.weekday()]} {start:%H:%M:%S}-{close}")
            start = stop
    return "; ".join(groups) + " UTC"


def whole_second(moment: datetime) -> datetime:
    return moment.replace(microsecond=0) + timedelta(seconds=1)


def wall_times(relay) -> list[float]:
    """When the relay accepted each message, in epoch seconds (it stamps monotonic time)."""
    offset = time.time() - time.monotonic()
    with relay.lock:
        return sorted(received.at + offset for received in relay.received)


# --- the engine, against a real relay -----------------------------------------------------------


@pytest.mark.idle  # mostly waits, under 0.4 of a core (docs/maintenance.md)
def test_nothing_goes_out_outside_the_window_and_the_rest_waits_for_the_next_opening(
    store, make_mailing, relay, engine_for
):
    # open for 2 s from 2 s ahead, closed for 2 s, then open again: at 20 messages a second
    # the first opening sends about 40 of 100, the close stops the rest, the next sends it
    first_open = whole_second(datetime.now(UTC)) + timedelta(seconds=2)
    first_close = first_open + timedelta(seconds=2)
    second_open = first_close + timedelta(seconds=2)
    text = window_text([(first_open, first_close), (second_open, second_open + timedelta(hours=1))])
    mailing_id = make_mailing(recipients=100)
    act(store, lifecycle.set_window, mailing_id, parse_window(text).text)
    act(store, lifecycle.send_now, mailing_id)
    engine_for(relay, replace(FAST, rate_per_second=20))

    # sent now before its window: in Sending now, waiting, and the row says when it opens
    waiting = wait_until(
        lambda: (
            mailing(store, mailing_id).waiting_kind == WaitingKind.WINDOW
            and mailing(store, mailing_id)
        ),
        what="the mailing waiting for its window",
    )
    assert waiting.state == State.SENDING
    assert waiting.waiting_until == first_open
    assert waiting.waiting_reason == OUTSIDE_WINDOW  # the words the details show
    row = now_status(waiting, UTC, datetime.now(UTC), engine_running=True)
    assert row == f"window opens {first_open:%a %H:%M}"
    assert relay.received == []

    # the close: the row says the window opens again, and nothing arrives meanwhile
    wait_until(
        lambda: mailing(store, mailing_id).waiting_until == second_open,
        timeout=10,
        what="the mailing waiting for the second opening",
    )
    sent_at_close = mailing(store, mailing_id).sent
    assert 0 < sent_at_close < 100
    wait_until(lambda: mailing(store, mailing_id).state == State.COMPLETED, what="completion")

    arrivals = wall_times(relay)
    # what was in the relay's hands at the close finishes within moments of it
    in_flight_grace = 0.3
    outside = [
        at
        for at in arrivals
        if at < first_open.timestamp()
        or first_close.timestamp() + in_flight_grace < at < second_open.timestamp()
    ]
    assert outside == [], "messages arrived while the window was closed"
    assert sum(at < second_open.timestamp() for at in arrivals) == sent_at_close
    assert set(relay.copies().values()) == {1} and len(arrivals) == 100
    done = mailing(store, mailing_id)
    assert (done.sent, done.waiting_kind, done.waiting_reason) == (100, None, None)


def test_a_sequential_head_outside_its_window_holds_the_queue(
    store, make_mailing, relay, engine_for, run
):
    tomorrow = datetime.now(UTC) + timedelta(days=1)
    closed_now = window_text([(tomorrow, tomorrow + timedelta(hours=1))])
    head, behind = make_mailing(recipients=3), make_mailing(recipients=3)
    act(store, lifecycle.set_window, head, parse_window(closed_now).text)
    act(store, lifecycle.enqueue, head)
    act(store, lifecycle.enqueue, behind)
    engine_for(relay)

    before = datetime.now(UTC)
    wait_until(
        lambda: mailing(store, head).waiting_kind == WaitingKind.WINDOW,
        what="the head waiting for its window",
    )
    assert mailing(store, head).state == State.SENDING
    # the JSON says what it waits for, since when and until when (the window's opening)
    shown = json.loads(run("show", str(head), "--json")[1])["waiting"]
    listed = {m["id"]: m["waiting"] for m in json.loads(run("ls", "--json")[1])}
    assert shown == listed[head] and listed[behind] is None
    assert (shown["kind"], shown["reason"]) == ("window", OUTSIDE_WINDOW)
    assert before <= datetime.fromisoformat(shown["since"]) <= datetime.now(UTC)
    opens = parse_window(closed_now).next_opening(datetime.now(UTC))
    assert datetime.fromisoformat(shown["until"]) == opens
    assert_stays(
        lambda: mailing(store, behind).state == State.QUEUED and not relay.received,
        0.5,
        "the queue held behind its head, nothing sent",
    )
    # stopped, the head makes room: the next one goes out (one at a time still holds)
    act(store, lifecycle.stop, head)
    wait_until(lambda: mailing(store, behind).state == State.COMPLETED, what="the next one sent")
    assert len(relay.received) == 3


def test_a_window_in_a_zone_this_machine_does_not_know_stops_the_mailing_with_why(
    store, make_mailing, relay, engine_for, run
):
    # stored when the zone was known (the tz database loses zones, or the database moves
    # to another machine): the engine parks it with the reason, once, and sends nothing
    window = "Mon-Sun 00:00-24:00 Mars/Olympus"
    mailing_id = make_mailing(recipients=3)
    act(store, lifecycle.set_window, mailing_id, window)
    act(store, lifecycle.send_now, mailing_id)
    assert eta(3, 1.0, window, datetime.now(UTC)) == ""  # its row is drawn meanwhile
    engine_for(relay)
    wait_until(lambda: mailing(store, mailing_id).state == State.STANDBY, what="the mailing parked")
    parked = mailing(store, mailing_id)
    assert parked.state_reason is not None and "Mars/Olympus" in parked.state_reason
    assert "window" in parked.state_reason
    assert relay.received == []
    assert "Mars/Olympus" in json.loads(run("show", str(mailing_id), "--json")[1])["reason"]


# --- the command line ---------------------------------------------------------------------------


@pytest.fixture
def message(tmp_path, run):
    assert run("init")[0] == 0
    text = write_file(tmp_path, "body.txt", "Hello")
    csv = write_file(tmp_path, "list.csv", "email\na@example.com\nb@example.com\n")
    return ["--subject", "Hi", "--from", "news@shop.example.com", "--text", str(text),
            "--recipients", str(csv)]  # fmt: skip


def shown(run, mailing_id: int) -> dict:
    status, out, _ = run("show", str(mailing_id), "--json")
    assert status == 0
    return json.loads(out)


def test_the_default_window_is_copied_into_a_new_mailing(run, message):
    assert run("config", "set", "window", "Mon-Fri 09:00-18:00 Europe/Rome")[0] == 0
    status, out, _ = run("mailing", "add", "--name", "N", *message)
    assert status == 0 and "sends only Mon-Fri 09:00-18:00 Europe/Rome" in out
    run("config", "set", "window", "Sat 10:00-13:00 Europe/Rome")
    # copied when it was created: a later default leaves it as it was
    assert shown(run, 1)["window"] == "Mon-Fri 09:00-18:00 Europe/Rome"
    status, out, _ = run("ls", "--json")
    assert json.loads(out)[0]["window"] == "Mon-Fri 09:00-18:00 Europe/Rome"
    # "always": none, whatever the default
    run("mailing", "add", "--name", "Any hour", "--window", "always", *message)
    assert shown(run, 2)["window"] is None


def test_a_window_is_read_in_the_zone_the_mailing_is_planned_in(run, message, monkeypatch):
    monkeypatch.setenv("SENDSTATUS_TZ", "Europe/Rome")
    run("mailing", "add", "--name", "N", *message)
    # scheduled in Tokyo's time, the window is Tokyo's hours
    assert run("schedule", "1", "--at", "2030-01-07 08:00", "--tz", "Asia/Tokyo", "--yes",
               "--window", "Mon-Fri 09:00-18:00")[0] == 0  # fmt: skip
    assert shown(run, 1)["window"] == "Mon-Fri 09:00-18:00 Asia/Tokyo"
    # sent now, it keeps the zone its time was planned in...
    run("mailing", "add", "--name", "M", *message)
    run("schedule", "2", "--at", "2030-01-07 08:00", "--tz", "Asia/Tokyo", "--yes")
    assert run("send-now", "2", "--window", "Sat 10:00-24:00", "--yes")[0] == 0
    assert shown(run, 2)["window"] == "Sat 10:00-24:00 Asia/Tokyo"
    # ...and one never scheduled takes the operator's; a window may name its own
    run("mailing", "add", "--name", "O", "--window", "Sun 08:00-09:00", *message)
    assert shown(run, 3)["window"] == "Sun 08:00-09:00 Europe/Rome"
    run("mailing", "add", "--name", "P", "--window", "Sun 08:00-09:00 UTC", *message)
    assert shown(run, 4)["window"] == "Sun 08:00-09:00 UTC"


@pytest.mark.parametrize(
    ("window", "message_part"),
    [
        ("Mon-Fri", "'Mon-Fri' has no hours"),
        ("Mon 18:00-09:00", "'18:00-09:00' ends before it starts"),
        ("Mon-Fri 09:00-18:00 Mars/Olympus", "unknown time zone 'Mars/Olympus'"),
    ],
)
def test_a_bad_window_is_one_error_line_and_changes_nothing(run, message, window, message_part):
    status, _, err = run("mailing", "add", "--name", "N", "--window", window, *message)
    assert status == 1 and err.startswith("error: ") and message_part in err
    assert len(err.strip().splitlines()) == 1
    status, out, _ = run("ls", "--json")
    assert json.loads(out) == []  # no mailing was created

    run("mailing", "add", "--name", "N", *message)
    before = shown(run, 1)
    for command in (
        ("send-now", "1", "--yes"),
        ("schedule", "1", "--at", "2030-01-07 08:00", "--yes"),
        ("schedule", "1", "--sequential", "--yes"),
    ):
        status, _, err = run(*command, "--window", window)
        assert status == 1 and err.startswith("error: ") and message_part in err
        assert len(err.strip().splitlines()) == 1
    after = shown(run, 1)
    assert (after["state"], after["window"], after["updated_at"]) == (
        before["state"],
        before["window"],
        before["updated_at"],
    )
    status, _, err = run("config", "set", "window", window)
    assert status == 1 and err.startswith("error: ") and message_part in err
    assert run("config", "get", "window")[1].strip() == "window: not set"


def test_a_sending_mailing_keeps_its_window(store, make_mailing):
    mailing_id = make_mailing()
    act(store, lifecycle.send_now, mailing_id)
    with pytest.raises(Exception, match="cannot change the sending window of mailing"):
        act(store, lifecycle.set_window, mailing_id, "Mon 09:00-10:00 UTC")


# --- the rows -------------------------------------------------------------------------------


def test_the_row_tells_when_the_window_opens_in_the_readers_zone(store, make_mailing):
    mailing_id = make_mailing()
    act(store, lifecycle.send_now, mailing_id)
    opens = datetime(2030, 3, 4, 8, 0, tzinfo=UTC)  # a Monday: 09:00 in Rome
    with store.write() as session:
        row = lifecycle.get(session, mailing_id)
        row.window, row.waiting_kind, row.waiting_reason, row.waiting_until = (
            "Mon-Fri 09:00-18:00 Europe/Rome",
            WaitingKind.WINDOW,
            OUTSIDE_WINDOW,
            opens,
        )
    with store.read() as session:
        (pane_row,) = list_pane_rows(session, (Area.NOW,))
    now = opens - timedelta(hours=3)
    cells = pane_cells(Area.NOW, pane_row, ZoneInfo("Europe/Rome"), now, None)
    assert cells[3] == "window opens Mon 09:00"
    assert now_status(pane_row, ZoneInfo("America/New_York"), now, True) == (
        "window opens Mon 03:00"
    )
    with store.read() as session:
        shown_text = show_text(read_details(session, lifecycle.get(session, mailing_id), now), UTC)
    assert "  Window:         Mon-Fri 09:00-18:00 Europe/Rome" in shown_text
    assert "  Waiting:        window opens Mon 08:00 (2030-03-04 08:00 UTC)" in shown_text


def test_the_eta_counts_only_open_hours():
    window = "Mon-Fri 09:00-12:00,14:00-18:00 Europe/Rome"
    monday_11 = datetime(2030, 3, 4, 10, 0, tzinfo=UTC)  # 11:00 in Rome
    # 3 hours of sending: 1 before lunch, 2 after it: done at 16:00, 5 hours from now
    assert eta(3 * 3600, 1.0, None, monday_11) == "3h 00m"
    assert eta(3 * 3600, 1.0, window, monday_11) == "5h 00m"
    # friday 17:00, 2 hours of sending: 1 hour, then Monday 09:00-10:00
    friday_17 = datetime(2030, 3, 8, 16, 0, tzinfo=UTC)
    assert eta(2 * 3600, 1.0, window, friday_17) == "2d 17h"
