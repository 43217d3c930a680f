"""Dates and times as operators type them, in their own zone, turned into UTC; and back."""

from datetime import UTC, datetime, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import tzlocal

from sendstatus_tui.errors import SendStatusError

ACCEPTED_FORMS = "YYYY-MM-DD HH:MM or ISO 8601 (2026-12-01T09:30+01:00)"
# a date further ahead is a typo (2206 for 2026); near year 9999 it would also overflow
# datetime once a zone's offset is applied
MAX_YEARS_AHEAD = 10


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


def parse_when(text: str, zone_name: str | None = None, now: datetime | None = None) -> datetime:
    """``text`` as an aware UTC datetime; a time without an offset is in ``zone_name``.

    A wall time the clocks skip is refused; one they pass twice (autumn) is refused too,
    with the two offsets to choose from: guessing could send an hour early or late."""
    text = text.strip()
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise WhenError(f"not a date and time: {text!r} (expected {ACCEPTED_FORMS})") from None
    if len(text) <= len("YYYY-MM-DD"):
        raise WhenError(f"{text!r} has no time of day (expected {ACCEPTED_FORMS})")
    try:
        when = _in_utc(text, parsed, zone_name)
    except OverflowError:  # beyond year 9999 or before year 1 once in UTC
        when = (datetime.min if parsed.year == 1 else datetime.max).replace(tzinfo=UTC)
    check_horizon(when, now)
    return when


def typed_zone(text: str, zone_name: str | None) -> str | None:
    """The zone a time typed as ``text`` was read in (its name, e.g. Europe/Rome), or None
    when it carried its own offset (2026-12-01T09:30+01:00 names no zone)."""
    try:
        parsed = datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    return None if parsed.tzinfo is not None else zone_label(zone(zone_name))


def _in_utc(text: str, parsed: datetime, zone_name: str | None) -> datetime:
    if parsed.tzinfo is not None:
        return parsed.astimezone(UTC)
    local_zone = zone(zone_name)
    local = parsed.replace(tzinfo=local_zone)
    # a wall time skipped by a clock change (spring forward) does not round-trip
    if local.astimezone(UTC).astimezone(local_zone).replace(tzinfo=None) != parsed:
        raise WhenError(f"{text!r} does not exist in {local_zone} (the clocks change then)")
    second = parsed.replace(tzinfo=local_zone, fold=1)
    if second.utcoffset() != local.utcoffset():
        wall = parsed.strftime("%Y-%m-%d %H:%M")
        raise WhenError(
            f"{text!r} happens twice in {local_zone} (the clocks go back then): give its"
            f" offset, {wall}{_offset(local)} for the first or {wall}{_offset(second)}"
            " for the second"
        )
    return local.astimezone(UTC)


def _offset(moment: datetime) -> str:
    return moment.isoformat(timespec="minutes")[-6:]  # +02:00


def check_horizon(when: datetime, now: datetime | None = None) -> None:
    """Refuses a time more than MAX_YEARS_AHEAD years after ``now``."""
    now = now or datetime.now(UTC)
    # the same day and time ten years on (a 29 February counts as the 28th)
    day = 28 if (now.month, now.day) == (2, 29) else now.day
    latest = now.replace(year=now.year + MAX_YEARS_AHEAD, day=day)
    if when > latest:
        raise WhenError(
            f"{format_local(when, UTC)} UTC is more than {MAX_YEARS_AHEAD} years ahead"
            f" (the latest is {format_local(latest, UTC)} UTC)"
        )


def to_zone(moment: datetime, local_zone: tzinfo) -> datetime:
    """``moment`` in ``local_zone``; at the ends of datetime's range (years 1 and 9999),
    where the zone's offset would carry it out of range, it stays as it is (UTC)."""
    try:
        return moment.astimezone(local_zone)
    except OverflowError:
        return moment


def zone_label(local_zone: tzinfo) -> str:
    """The zone's name as operators set it (Europe/Rome), for output that names its zone."""
    return str(getattr(local_zone, "key", None) or local_zone)


def format_named(moment: datetime, local_zone: tzinfo) -> str:
    """``format_local`` naming the zone: 2026-12-01 09:30 Europe/Rome."""
    text = format_local(moment, local_zone)
    return text if text.endswith(" UTC") else f"{text} {zone_label(local_zone)}"


def format_local(moment: datetime | None, local_zone: tzinfo) -> str:
    """A UTC time as the operator reads it: in their zone, to the minute (never fails: a
    time their zone cannot show is shown in UTC, and says so)."""
    if moment is None:
        return ""
    local = to_zone(moment, local_zone)
    text = local.strftime("%Y-%m-%d %H:%M")
    return text if local.tzinfo is local_zone else f"{text} UTC"
