"""Dates and times as operators type them, in their own zone, turned into UTC."""

from datetime import UTC, datetime, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import tzlocal

from ..errors import SendStatusError

ACCEPTED_FORMS = "YYYY-MM-DD HH:MM or ISO 8601 (2026-12-01T09:30+01:00)"


class WhenError(SendStatusError, ValueError):
    pass


def zone(name: str | None) -> tzinfo:
    """The zone called ``name`` (IANA, e.g. Europe/Rome), or the system's zone."""
    if not name:
        return tzlocal.get_localzone()
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise WhenError(
            f"unknown time zone {name!r} (expected an IANA name like Europe/Rome)"
        ) from None


def parse_when(text: str, zone_name: str | None = None) -> datetime:
    """``text`` as an aware UTC datetime; a time without an offset is in ``zone_name``."""
    text = text.strip()
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise WhenError(f"not a date and time: {text!r} (expected {ACCEPTED_FORMS})") from None
    if len(text) <= len("YYYY-MM-DD"):
        raise WhenError(f"{text!r} has no time of day (expected {ACCEPTED_FORMS})")
    if parsed.tzinfo is not None:
        return parsed.astimezone(UTC)
    local_zone = zone(zone_name)
    local = parsed.replace(tzinfo=local_zone)
    # a wall time skipped by a clock change (spring forward) does not round-trip
    if local.astimezone(UTC).astimezone(local_zone).replace(tzinfo=None) != parsed:
        raise WhenError(f"{text!r} does not exist in {local_zone} (the clocks change then)")
    return local.astimezone(UTC)


def format_local(moment: datetime | None, local_zone: tzinfo) -> str:
    """A UTC time as the operator reads it: in their zone, to the minute."""
    if moment is None:
        return ""
    return moment.astimezone(local_zone).strftime("%Y-%m-%d %H:%M")
