"""Dates and times typed by operators, in their zone."""

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from sendstatus_tui.core.model.when import WhenError, format_local, parse_when


@pytest.mark.parametrize(
    ("text", "zone", "expected"),
    [
        ("2026-12-01 09:30", "Europe/Rome", datetime(2026, 12, 1, 8, 30, tzinfo=UTC)),
        ("2026-07-01 09:30", "Europe/Rome", datetime(2026, 7, 1, 7, 30, tzinfo=UTC)),
        ("2026-12-01T09:30", "America/New_York", datetime(2026, 12, 1, 14, 30, tzinfo=UTC)),
        # an explicit offset wins over the zone
        ("2026-12-01T09:30+01:00", "Asia/Tokyo", datetime(2026, 12, 1, 8, 30, tzinfo=UTC)),
        ("2026-12-01T09:30:00Z", "Asia/Tokyo", datetime(2026, 12, 1, 9, 30, tzinfo=UTC)),
    ],
)
def test_times_are_read_in_the_operators_zone(text, zone, expected):
    assert parse_when(text, zone) == expected


def test_a_wall_time_skipped_by_the_clock_change_is_refused():
    with pytest.raises(WhenError, match="does not exist in Europe/Rome"):
        parse_when("2027-03-28 02:30", "Europe/Rome")


def test_shown_in_the_operators_zone():
    moment = datetime(2026, 12, 1, 8, 30, tzinfo=UTC)
    assert format_local(moment, ZoneInfo("Europe/Rome")) == "2026-12-01 09:30"
    assert format_local(None, ZoneInfo("Europe/Rome")) == ""


# --- the far future and the autumn clock change (issue 7, items 6 and 11) -------------------

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "zone"),
    [
        ("9999-12-31T23:59+00:00", "UTC"),
        ("9999-12-31 23:59", "America/New_York"),  # past year 9999 once in UTC
        ("2036-11-27 12:01", "UTC"),
        ("2206-05-01 09:00", "Europe/Rome"),  # 2026 mistyped
    ],
)
def test_more_than_ten_years_ahead_is_refused(text, zone):
    with pytest.raises(WhenError, match="more than 10 years ahead"):
        parse_when(text, zone, now=NOW)


def test_up_to_ten_years_ahead_is_taken():
    assert parse_when("2036-11-27 12:00", "UTC", now=NOW) == datetime(2036, 11, 27, 12, tzinfo=UTC)


def test_schedule_at_refuses_the_far_future_whoever_asks(store, make_mailing):
    from sendstatus_tui.core.model import lifecycle

    mailing_id = make_mailing()
    with pytest.raises(WhenError, match="more than 10 years ahead"), store.write() as session:
        lifecycle.schedule_at(session, mailing_id, datetime(9999, 12, 31, 23, 59, tzinfo=UTC))


def test_a_wall_time_passed_twice_asks_for_its_offset():
    with pytest.raises(WhenError) as refused:
        parse_when("2027-10-31 02:30", "Europe/Rome", now=NOW)
    message = str(refused.value)
    assert "happens twice in Europe/Rome" in message
    assert "2027-10-31 02:30+02:00 for the first" in message
    assert "2027-10-31 02:30+01:00 for the second" in message
    # either form the message offers is taken as it says
    first = parse_when("2027-10-31 02:30+02:00", "Europe/Rome", now=NOW)
    second = parse_when("2027-10-31 02:30+01:00", "Europe/Rome", now=NOW)
    assert (first, second) == (
        datetime(2027, 10, 31, 0, 30, tzinfo=UTC),
        datetime(2027, 10, 31, 1, 30, tzinfo=UTC),
    )


@pytest.mark.parametrize("zone", ["Asia/Tokyo", "Pacific/Kiritimati", "Europe/Rome"])
def test_a_time_at_the_end_of_the_calendar_is_shown_not_a_crash(zone):
    last = datetime(9999, 12, 31, 23, 59, tzinfo=UTC)
    assert format_local(last, ZoneInfo(zone)) == "9999-12-31 23:59 UTC"
    assert format_local(last, ZoneInfo("America/New_York")) == "9999-12-31 18:59"
