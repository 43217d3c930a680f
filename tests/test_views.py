"""The presentation layer (views/): one formatting for the panes, ls, show and details."""

import dataclasses
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from zoneinfo import ZoneInfo

from sendstatus_tui.core.model.states import Area, Mode, State
from sendstatus_tui.core.model.waiting import WaitingKind
from sendstatus_tui.core.reads.details import EngineOnIt, LastError, MailingDetails
from sendstatus_tui.core.reads.throughput import Minute, Throughput
from sendstatus_tui.views import cells
from sendstatus_tui.views.details import (
    counters_text,
    errors_text,
    rate_chart,
    rate_heading,
    show_text,
)
from sendstatus_tui.views.panes import heading
from sendstatus_tui.views.snapshot import StallWatch

ROME = ZoneInfo("Europe/Rome")
NINE_UTC = datetime(2030, 3, 4, 9, 0, tzinfo=UTC)


def planned(state: State, **fields) -> SimpleNamespace:
    values = dict(
        position=None,
        scheduled_at=None,
        started_at=None,
        total=10,
        sent=4,
        waiting_reason=None,
        waiting_kind=None,
    )
    return SimpleNamespace(state=state, **{**values, **fields})


def test_cells_read_the_same_for_any_mailing_like_object():
    assert cells.start_date(planned(State.STARTING), ROME) == "starting up"
    assert cells.start_date(planned(State.SENDING, started_at=NINE_UTC), ROME) == (
        "2030-03-04 10:00"
    )
    assert cells.planned_for(planned(State.QUEUED, position=2), ROME) == "queue #2"
    assert cells.planned_for(planned(State.SCHEDULED, scheduled_at=NINE_UTC), ROME) == (
        "2030-03-04 10:00"
    )
    assert cells.sent_of_total(planned(State.SENDING, total=12_000, sent=4_500)) == "4,500/12,000"
    assert cells.moment(None, ROME) == "—"
    waiting = planned(
        State.STARTING,
        waiting_kind=WaitingKind.RELAY_DOWN,
        waiting_reason="relay unavailable: connection refused",
    )
    assert cells.start_date(waiting, ROME) == "waiting: relay unavailable: connection refused"
    assert heading(Area.STANDBY, 3) == "Sends to schedule (3)"


def test_the_row_says_what_the_mailing_waits_for_by_its_kind_not_its_words():
    """The stored kind decides: a relay whose reply happened to read like a window's words
    is still a relay down, and a domain limit says so (when its next message goes, in the
    reader's zone)."""
    now = NINE_UTC - timedelta(minutes=5)

    def row(kind: WaitingKind, reason: str) -> str:
        waiting = planned(
            State.SENDING,
            started_at=NINE_UTC - timedelta(hours=1),
            waiting_kind=kind,
            waiting_reason=reason,
            waiting_until=NINE_UTC,
        )
        return cells.now_status(waiting, ROME, now, engine_running=True)

    assert row(WaitingKind.WINDOW, "outside its sending window") == "window opens Mon 10:00"
    assert row(WaitingKind.RELAY_DOWN, "outside its sending window") == (
        "relay error, retry 10:00:00"
    )
    assert row(WaitingKind.RELAY_DOWN, "cannot reach smtp://relay:25") == (
        "relay down, retry 10:00:00"
    )
    # held for a domain's limit: no retry, the next of them goes then
    assert row(WaitingKind.DOMAIN_LIMIT, "gmail.com: 20/s") == "domain limit, next 10:00:00"


def test_countdown_and_eta():
    assert cells.countdown(timedelta(0)) == "now"
    assert cells.countdown(timedelta(minutes=4, seconds=30)) == "in 4m 30s"
    assert cells.countdown(timedelta(days=3, hours=1)) == "in 3d 1h"
    assert cells.eta(600, 10.0) == "1m 00s"
    assert cells.eta(600, None) == ""
    assert cells.per_minute(2.5) == "150/min"


def details(**changes) -> MailingDetails:
    values = dict(
        id=7,
        name="Flash sale",
        state=State.STANDBY,
        mode=Mode.IMMEDIATE,
        state_reason="stopped by an operator",
        position=None,
        scheduled_at=None,
        started_at=NINE_UTC,
        finished_at=None,
        created_at=NINE_UTC,
        updated_at=NINE_UTC,
        subject="Hello {first_name}",
        sender="Shop <news@shop.example.com>",
        has_text_body=True,
        has_html_body=False,
        fields=["first_name"],
        total=10,
        sent=6,
        failed=1,
        deferred=0,
        suppressed=0,
        remaining=3,
        resent_in_doubt=0,
        recipients={"sent": 6, "failed": 1, "pending": 3},
        failed_by_class={"5xx": 1},
        waiting_reason=None,
        waiting_until=None,
        last_errors=[LastError("person6@example.com", "550 5.1.1 no such user", NINE_UTC)],
        unsubscribe_url=None,
        unsubscribe_mailto=None,
        first_failed=[],
        engines=[],
        planned_as=None,
        planned_for=None,
    )
    return MailingDetails(**{**values, **changes})


def test_show_and_the_details_screen_tell_the_same_mailing():
    shown = show_text(details(), ROME)
    assert shown.splitlines()[0] == "Mailing 7: Flash sale"
    assert "  Why:            stopped by an operator" in shown
    assert "  Started:        2030-03-04 10:00" in shown
    assert "  Recipients:     10 total, 6 sent, 1 failed, 3 remaining" in shown
    assert "    person6@example.com: 550 5.1.1 no such user" in shown
    counters = counters_text(details(), ROME)
    assert "State        parked (stopped by an operator)" in counters  # not "standby"
    assert "Started      2030-03-04 10:00" in counters and "(times in Europe/Rome)" in counters
    assert all(len(line) <= 76 for line in counters.splitlines())
    assert errors_text(details()) == "person6@example.com: 550 5.1.1 no such user"
    assert errors_text(details(last_errors=[])) == "none"


def test_failures_by_class_and_what_the_engine_waits_for_are_told():
    sending = details(
        state=State.SENDING,
        failed_by_class={"5xx": 298, "doubt": 2},
        waiting_kind=WaitingKind.RELAY_DOWN,
        waiting_reason="relay unavailable: connection refused",
        waiting_until=NINE_UTC,
    )
    shown = show_text(sending, ROME)
    assert "  Failed, why:    298 refused (5xx), 2 no reply (doubt)" in shown
    assert "  Waiting:        relay unavailable: connection refused; retry at 2030-03-04 10:00" in (
        shown
    )
    counters = counters_text(sending, ROME)
    assert "Failed       1 — 298 refused (5xx), 2 no reply (doubt)" in counters
    assert "Waiting      relay unavailable" in counters
    # connection failures are errors too
    assert errors_text(sending).splitlines()[0] == "relay: relay unavailable: connection refused"
    assert sending.as_json()["failed_by_class"] == {"5xx": 298, "doubt": 2}
    # held for a domain's limit: no retry, the next of its messages goes then
    held = details(
        state=State.SENDING,
        waiting_kind=WaitingKind.DOMAIN_LIMIT,
        waiting_reason="gmail.com limit 20/s",
        waiting_until=NINE_UTC,
        deferred=300,
        held_for_domains=290,
    )
    shown = show_text(held, ROME)
    assert "  Waiting:        gmail.com limit 20/s; next at 2030-03-04 10:00 Europe/Rome" in shown
    assert "                  300 deferred (290 held for a domain limit, 10 retrying)" in shown
    assert "300 deferred (290 held for a domain limit, 10 retrying)" in counters_text(held, ROME)
    all_held = dataclasses.replace(held, held_for_domains=300)
    assert "300 deferred (held for a domain limit)" in counters_text(all_held, ROME)


def test_as_json_has_the_ls_fields_and_iso_times():
    data = details().as_json()
    assert data["area"] == "standby" and data["reason"] == "stopped by an operator"
    assert data["started_at"] == "2030-03-04T09:00:00Z" and data["scheduled_at"] is None
    assert data["last_errors"] == [
        {
            "email": "person6@example.com",
            "reply": "550 5.1.1 no such user",
            "at": data["created_at"],
        }
    ]


def test_the_engines_sending_a_mailing_and_their_relay_connections_are_told():
    on_it = EngineOnIt(
        "mailer-1:42:ab12cd34", "mailer-1", 42, 12, "connections busy 95% at 300 msg/s"
    )
    sending = details(state=State.SENDING, engines=[on_it])
    relay_line = "12 connections from mailer-1 pid 42 (connections busy 95% at 300 msg/s)"
    assert f"Relay        {relay_line}" in counters_text(sending, ROME)
    assert f"  Relay:          {relay_line}" in show_text(sending, ROME)
    assert sending.as_json()["engines"] == [
        {
            "id": "mailer-1:42:ab12cd34",
            "host": "mailer-1",
            "pid": 42,
            "connections": 12,
            "connections_reason": "connections busy 95% at 300 msg/s",
        }
    ]
    assert "Relay" not in counters_text(details(), ROME)


def test_a_parked_mailing_says_how_it_had_been_planned():
    stopped = details(mode=None, planned_as=Mode.AT, planned_for=NINE_UTC)
    assert "Plan         none while parked (was: at 2030-03-04 10:00)" in counters_text(
        stopped, ROME
    )
    assert "  Was planned:    at 2030-03-04 10:00" in show_text(stopped, ROME)
    never = details(mode=None)
    assert "Plan         none while parked\n" in counters_text(never, ROME)
    assert "Was planned" not in show_text(never, ROME)


def test_progress_says_100_percent_only_when_all_are_done():
    assert cells.progress_bar(1_989 + 8, 2_000) == "███████░  99%"  # 3 still deferred
    assert cells.progress_bar(2_000, 2_000) == "████████ 100%"
    assert cells.progress_bar(1, 2_000) == "░░░░░░░░   0%"
    assert cells.progress_bar(0, 0) == "████████ 100%"


class TestFreshFigures:
    """Figures that are true now: a speed falls to nothing once nothing is sent, a time
    passed with no engine is overdue, a retry says what else remains."""

    def test_a_speed_falls_to_nothing_within_two_refreshes_once_nothing_is_sent(self):
        clock = iter([0.0, 1.0, 2.0, 3.0, 4.0]).__next__
        watch = StallWatch(clock=clock)
        assert not watch.stalled(1, 0)
        assert not watch.stalled(1, 100)
        assert not watch.stalled(1, 100)  # one refresh without news: still sending
        assert watch.stalled(1, 100)  # two: nothing goes out now
        assert cells.per_minute(0.0) == "" and cells.eta(10, 0.0) == ""
        assert not watch.stalled(1, 160)  # sending again

    def test_an_overdue_scheduled_mailing_with_no_engine_says_so(self):
        due = planned(State.SCHEDULED, scheduled_at=NINE_UTC - timedelta(minutes=5))
        assert cells.starts_in(due, NINE_UTC, engine_running=False) == "overdue: no engine"
        assert cells.starts_in(due, NINE_UTC, engine_running=True) == "now"  # about to start
        later = planned(State.SCHEDULED, scheduled_at=NINE_UTC + timedelta(minutes=5))
        assert cells.starts_in(later, NINE_UTC, engine_running=False) == "in 5m 00s"
        assert cells.starts_in(planned(State.QUEUED), NINE_UTC, True) == "in turn"

    def test_to_retry_says_what_else_remains(self):
        parked = SimpleNamespace(state_reason="419 to retry", remaining=19_160)
        assert cells.parked_reason(parked) == "19,160 left, 419 of them to retry"
        only = SimpleNamespace(state_reason="1,419 to retry", remaining=1_419)
        assert cells.parked_reason(only) == "1,419 to retry"
        stopped = SimpleNamespace(state_reason="stopped by an operator", remaining=7)
        assert cells.parked_reason(stopped) == "stopped by an operator"

    def test_a_mailing_that_is_not_sending_has_no_current_rate(self):
        assert rate_heading([10.0, 0.5], sending=True) == (
            "Send rate: now 30/min, top of the graph 600/min"
        )
        assert rate_heading([10.0, 0.5], sending=False) == (
            "Send rate while it was sending: top of the graph 600/min"
        )


def test_a_count_that_moves_in_bursts_keeps_its_speed_between_them():
    """An engine that records a batch every 3 s: once that rhythm is seen, the speed stays
    between two batches; after half as long again as its pauses without one, it falls to
    nothing."""
    watch = StallWatch(clock=iter(float(second) for second in range(20)).__next__)
    counts = [0, 30, 30, 30, 60, 60, 60, 90, 90, 90, 90, 90, 90]
    stalled = [watch.stalled(1, count) for count in counts]
    assert not any(stalled[4:12])  # between batches: still sending
    assert stalled[12]  # 5 s without a batch, past 1.5 x its 3 s pauses


def test_show_and_the_details_list_what_came_back_with_its_share_of_what_was_sent():
    quiet = details()
    assert "Came back" not in show_text(quiet, ROME) and "Came back" not in counters_text(
        quiet, ROME
    )
    # 9,000 accepted by the relay: 8,810 still sent, 188 bounced, 2 blocked
    bounced = details(
        total=9_000, sent=8_810, failed=190, bounced=188, blocked=2, complained=2, unsubscribed=9
    )
    told = (
        "188 bounced (2.1%), 2 blocked (0.02%), 2 complaints (0.02%), 9 unsubscribed (0.1%)"
        " of 9,000 sent"
    )
    assert f"  Came back:      {told}" in show_text(bounced, ROME)
    assert f"Came back    {told}" in counters_text(bounced, ROME)
    assert bounced.as_json()["came_back_rates"] == {
        "bounced": 0.020889,
        "blocked": 0.000222,
        "complained": 0.000222,
        "unsubscribed": 0.001,
    }


def test_the_failed_cell_adds_what_came_back_once_any_did():
    assert cells.failed_cell(90, 0, 0, 0) == "0%"
    assert cells.failed_cell(88, 12, 12, 2) == "12% 12b 2c"
    assert cells.failed_cell(100, 0, 0, 1) == "0% 1c"
    assert cells.failed_cell(0, 0, 0, 0) == ""


def test_the_details_chart_starts_at_the_first_minute_sent_and_ends_with_the_speed_now():
    def minute(ago: int, sent: int) -> Minute:
        start = NINE_UTC - timedelta(minutes=ago)
        return Minute(start, sent, 0, 0, 0, start, start)

    hour = Throughput((minute(3, 600), minute(2, 1_200), minute(1, 300)))
    sending = details(state=State.SENDING, throughput=hour, speed=5.0)
    chart = rate_chart(sending, NINE_UTC)
    assert chart is not None and chart.samples == [10.0, 20.0, 5.0, 5.0]
    assert chart.start == NINE_UTC - timedelta(minutes=3)
    # stopped: the hour it sent, no current rate; sending with nothing in the hour: no chart
    stopped = rate_chart(details(throughput=hour), NINE_UTC)
    assert stopped is not None and stopped.samples == [10.0, 20.0, 5.0]
    assert stopped.end == NINE_UTC - timedelta(minutes=1)
    quiet = details(state=State.SENDING, throughput=Throughput((minute(90, 600),)), speed=None)
    assert rate_chart(quiet, NINE_UTC) is None
    # one minute alone still draws two samples (one alone would fill the chart)
    young = details(state=State.SENDING, throughput=Throughput((minute(0, 60),)), speed=None)
    assert rate_chart(young, NINE_UTC).samples == [0.0, 0.0]
