"""Sending windows as values: what the text means, when a window is open, and the open
time an ETA counts (issue 20, sending windows)."""

from datetime import UTC, datetime, timedelta

import pytest

from sendstatus_tui.core.model.when import WhenError
from sendstatus_tui.core.model.window import WindowError, parse_window

ROME = "Mon-Fri 09:00-12:00,14:00-18:00; Sat 10:00-13:00 Europe/Rome"
# Monday 7 December 2026 (Rome is UTC+1 in winter)
MONDAY = datetime(2026, 12, 7, tzinfo=UTC)


def utc(day_offset: int, hour: int, minute: int = 0) -> datetime:
    return MONDAY + timedelta(days=day_offset, hours=hour, minutes=minute)


def window(text: str = ROME, zone: str | None = None):
    parsed = parse_window(text, zone)
    assert parsed is not None
    return parsed


def test_the_text_is_kept_in_one_form_that_names_its_zone():
    assert window(" mon-fri  09:00-12:00, 14:00-18:00 ;sat 10:00-13:00", "Europe/Rome").text == (
        "Mon-Fri 09:00-12:00,14:00-18:00; Sat 10:00-13:00 Europe/Rome"
    )
    # a zone named in the text wins over the one it is read in
    assert window(ROME, "Asia/Tokyo").zone_name == "Europe/Rome"
    assert window("Sun 9:00-24:00", "UTC").text == "Sun 09:00-24:00 UTC"
    assert parse_window("always") is None


@pytest.mark.parametrize(
    ("at", "is_open"),
    [
        (utc(0, 7, 59), False),  # Monday 08:59 in Rome
        (utc(0, 8), True),  # 09:00
        (utc(0, 10, 59), True),  # 11:59
        (utc(0, 11), False),  # 12:00: the end is not in it
        (utc(0, 13), True),  # 14:00
        (utc(5, 9), True),  # Saturday 10:00
        (utc(5, 12), False),  # Saturday 13:00
        (utc(6, 10), False),  # Sunday
    ],
)
def test_open_on_its_days_and_hours_in_its_zone(at, is_open):
    assert window().is_open(at) is is_open


def test_next_opening_and_close():
    rome = window()
    assert rome.next_opening(utc(0, 11, 30)) == utc(0, 13)  # lunch: 14:00 in Rome
    assert rome.next_opening(utc(0, 9)) == utc(0, 9)  # open: now
    assert rome.next_opening(utc(5, 12)) == utc(7, 8)  # Saturday afternoon: Monday 09:00
    assert rome.next_close(utc(0, 9)) == utc(0, 11)
    assert rome.next_close(utc(0, 11, 30)) == utc(0, 17)  # closed: the next open time's end


def test_hours_that_touch_across_midnight_are_one_stretch():
    night = window("Mon 20:00-24:00; Tue 00:00-06:00 UTC")
    assert night.next_close(utc(0, 23)) == utc(1, 6)
    assert night.open_seconds(utc(0, 0), utc(2, 0)) == 10 * 3600


def test_a_window_open_all_week_never_closes():
    always = window("Mon-Sun 00:00-24:00 UTC")
    assert always.is_open(utc(3, 3))
    assert always.next_close(utc(3, 3)) is None


def test_wall_times_hold_across_the_change_of_the_clocks():
    # Sunday 28 March 2027: Rome goes from UTC+1 to UTC+2
    morning = window("Mon-Sun 09:00-10:00 Europe/Rome")
    saturday = datetime(2027, 3, 27, 12, tzinfo=UTC)
    assert morning.next_opening(saturday) == datetime(2027, 3, 28, 7, tzinfo=UTC)
    assert morning.open_seconds(saturday, saturday + timedelta(days=2)) == 2 * 3600


def test_open_time_for_an_eta():
    rome = window()
    # Monday 11:00 in Rome with 3 hours of work: 1 h before lunch, then 14:00-16:00
    assert rome.after_open_time(utc(0, 10), 3 * 3600) == utc(0, 15)
    # a week of open time is 7 h 5 days + 3 h: 38 h; 80 h of work take two weeks and a bit
    assert rome.open_per_week == 38 * 3600
    done = rome.after_open_time(utc(0, 8), 80 * 3600)
    assert rome.open_seconds(utc(0, 8), done) == pytest.approx(80 * 3600)
    assert utc(14, 0) < done < utc(21, 0)


def test_seconds_may_be_given():
    short = window("Mon 09:00:30-09:00:45 UTC")
    assert short.is_open(utc(0, 9) + timedelta(seconds=40))
    assert not short.is_open(utc(0, 9) + timedelta(seconds=45))
    assert short.text == "Mon 09:00:30-09:00:45 UTC"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("Mon-Fri", "has no hours"),
        ("Mon-Fri Europe/Rome", "has no hours"),
        ("", "a window is needed"),
        ("Mon 18:00-09:00", "ends before it starts"),
        ("Mon 09:00-09:00", "ends before it starts"),
        ("Mon 24:00-24:00", "starts at 24:00"),
        ("Mon 09:00-25:00", "not a time of day"),
        ("Mon 9-17", "not a time of day"),
        ("Mon 09:00", "not an hour range"),
        ("Funday 09:00-17:00", "not a day"),
    ],
)
def test_bad_windows_are_refused_with_the_reason(text, message):
    with pytest.raises(WindowError, match=message):
        parse_window(text, "UTC")


def test_a_zone_that_does_not_exist_is_refused():
    with pytest.raises(WhenError, match="unknown time zone 'Mars/Olympus'"):
        parse_window("Mon-Fri 09:00-18:00 Mars/Olympus")
