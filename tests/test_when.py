"""Dates and times typed by operators, in their zone."""

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from sendstatus_tui.core.when import WhenError, format_local, parse_when


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
