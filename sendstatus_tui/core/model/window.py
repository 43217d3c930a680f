"""Sending windows: the days and hours of the week a mailing may send in, in one zone, e.g.
``Mon-Fri 09:00-12:00,14:00-18:00; Sat 10:00-13:00 Europe/Rome``.

A window is read once into a value that answers, for any instant: is it open, when does it
next open, when does the open time it is in end, and how much open time lies between two
instants (what an ETA needs). Times are wall-clock times of the window's zone, so that
09:00 stays 09:00 across a change of the clocks. Seconds may be given (``09:00:30``), for
the rare window that needs them. An hour range cannot cross midnight: ``22:00-24:00`` and
the next day's ``00:00-02:00`` are one stretch of open time.
"""

import functools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo

from sendstatus_tui.core.model.when import to_zone, zone_label
from sendstatus_tui.core.model.when import zone as named_zone
from sendstatus_tui.errors import SendStatusError

DAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
FULL_DAY_NAMES = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
DAY_SECONDS = 86_400
# what ``--window`` takes for "no window": it sends at any hour
ALWAYS = "always"
EXAMPLE = "Mon-Fri 09:00-12:00,14:00-18:00; Sat 10:00-13:00 Europe/Rome"
# the engine's words while a mailing waits for its window (WaitingKind.WINDOW, stored by
# core/coordination/deliveries.show_waiting); the views tell it as "window opens Mon 09:00"
OUTSIDE_WINDOW = "outside its sending window"
_TIME = re.compile(r"^(?P<hour>\d{1,2}):(?P<minute>\d{2})(?::(?P<second>\d{2}))?$")


class WindowError(SendStatusError, ValueError):
    pass


@dataclass(frozen=True)
class Group:
    """One ``DAYS HOURS`` part: its days (0 is Monday), as typed, and its hour ranges in
    seconds from midnight (an end may be 86400: 24:00)."""

    days_text: str
    days: tuple[int, ...]
    hours: tuple[tuple[int, int], ...]

    @property
    def text(self) -> str:
        ranges = ",".join(f"{_clock(start)}-{_clock(end)}" for start, end in self.hours)
        return f"{self.days_text} {ranges}"


@dataclass(frozen=True)
class Window:
    groups: tuple[Group, ...]
    zone_name: str

    @property
    def text(self) -> str:
        """The window as stored and shown: groups, then the zone."""
        return "; ".join(group.text for group in self.groups) + f" {self.zone_name}"

    @functools.cached_property
    def zone(self) -> tzinfo:
        return named_zone(self.zone_name)

    @functools.cached_property
    def _by_weekday(self) -> tuple[tuple[tuple[int, int], ...], ...]:
        """Each weekday's open hours, merged and in order."""
        days: list[list[tuple[int, int]]] = [[] for _ in DAY_NAMES]
        for group in self.groups:
            for day in group.days:
                days[day].extend(group.hours)
        return tuple(tuple(_merged(sorted(hours))) for hours in days)

    @property
    def always_open(self) -> bool:
        return all(hours == ((0, DAY_SECONDS),) for hours in self._by_weekday)

    @property
    def open_per_week(self) -> int:
        """Seconds of open time in a week of wall-clock time."""
        return sum(end - start for hours in self._by_weekday for start, end in hours)

    def is_open(self, at: datetime) -> bool:
        return self.always_open or next(self._open_times(at))[0] <= at

    def next_opening(self, after: datetime) -> datetime:
        """The first instant from ``after`` on at which it is open (``after`` itself while
        open)."""
        if self.always_open:
            return after
        return max(next(self._open_times(after))[0], after)

    def next_close(self, after: datetime) -> datetime | None:
        """When the open time it is in at ``after`` ends (closed then: the next open time's
        end); None for a window that never closes."""
        return None if self.always_open else next(self._open_times(after))[1]

    def open_seconds(self, start: datetime, end: datetime) -> float:
        """How long it is open between ``start`` and ``end``."""
        if self.always_open:
            return max(0.0, (end - start).total_seconds())
        total = 0.0
        for opens, closes in self._open_times(start):
            if opens >= end:
                break
            total += (min(closes, end) - max(opens, start)).total_seconds()
        return total

    def after_open_time(self, start: datetime, seconds: float) -> datetime:
        """The instant by which it has been open ``seconds`` since ``start``: when work
        that takes that long, and goes on only while it is open, is done."""
        if self.always_open:
            return start + timedelta(seconds=seconds)
        # whole weeks at once (a change of the clocks makes it an hour off, at most): an
        # ETA of months is not walked day by day
        weeks = int(seconds // self.open_per_week) - 1
        if weeks > 0:
            start += timedelta(weeks=weeks)
            seconds -= weeks * self.open_per_week
        for opens, closes in self._open_times(start):
            opens = max(opens, start)
            available = (closes - opens).total_seconds()
            if seconds <= available:
                return opens + timedelta(seconds=seconds)
            seconds -= available
        raise AssertionError("unreachable: open times go on for ever")

    def _open_times(self, since: datetime) -> Iterator[tuple[datetime, datetime]]:
        """The stretches of open time (UTC), in order, from the first that ends after
        ``since``; stretches that touch across midnight are one. Endless: a window that is
        not always open closes at least once a week, so each stretch ends."""
        day = to_zone(since, self.zone).date() - timedelta(days=1)
        current: tuple[datetime, datetime] | None = None
        while True:
            for opens, closes in self._day(day):
                if current is not None and opens <= current[1]:
                    current = (current[0], max(current[1], closes))
                    continue
                if current is not None and current[1] > since:
                    yield current
                current = (opens, closes)
            day += timedelta(days=1)

    def _day(self, day: date) -> Iterator[tuple[datetime, datetime]]:
        for start, end in self._by_weekday[day.weekday()]:
            yield self._instant(day, start), self._instant(day, end)

    def _instant(self, day: date, seconds: int) -> datetime:
        """The wall time ``seconds`` after ``day``'s midnight in the window's zone, in UTC
        (a time the clocks skip is read with the offset before the change)."""
        wall = datetime.combine(day, time()) + timedelta(seconds=seconds)
        return wall.replace(tzinfo=self.zone).astimezone(UTC)


def parse_window(text: str, zone_name: str | None = None) -> Window | None:
    """The window ``text`` describes (None for ``always``: no window); read in ``zone_name``
    (None: the system's zone) unless it ends with a zone of its own."""
    text = " ".join(text.split())
    if text.lower() == ALWAYS:
        return None
    if not text:
        raise WindowError(f"a window is needed, e.g. {EXAMPLE!r}, or {ALWAYS!r}")
    body, own_zone = _split_zone(text)
    groups = tuple(_group(part.strip()) for part in body.split(";") if part.strip())
    if not groups:
        raise WindowError(f"{text!r} has no days and hours (expected e.g. {EXAMPLE!r})")
    return Window(groups, zone_label(named_zone(own_zone or zone_name)))


@functools.lru_cache(maxsize=64)
def stored_window(text: str | None) -> Window | None:
    """A mailing's window as stored (it names its zone), read once per text."""
    return None if text is None else parse_window(text)


def _split_zone(text: str) -> tuple[str, str | None]:
    """(the days and hours, the zone named at the end or None)."""
    head, _, last = text.rpartition(" ")
    if not head or last[:1].isdigit() or _is_days(last):
        return text, None
    return head, last


def _group(part: str) -> Group:
    days_text, _, hours_text = part.partition(" ")
    days = _days(days_text)
    if not hours_text.strip():
        raise WindowError(f"{part!r} has no hours (expected e.g. {days_text} 09:00-18:00)")
    hours = tuple(_hour_range(item.strip()) for item in hours_text.replace(" ", "").split(","))
    return Group(days_text.title(), days, hours)


def _is_days(text: str) -> bool:
    try:
        _days(text)
    except WindowError:
        return False
    return True


def _days(text: str) -> tuple[int, ...]:
    """``Mon``, ``Mon-Fri``, ``Sat,Sun``, ``Fri-Mon`` (a range may wrap past Sunday)."""
    days: list[int] = []
    for item in text.split(","):
        first, dash, last = item.partition("-")
        start = _day(first)
        end = _day(last) if dash else start
        days.extend((start + offset) % 7 for offset in range((end - start) % 7 + 1))
    return tuple(sorted(set(days)))


def _day(text: str) -> int:
    name = text.strip().lower()
    for number, full in enumerate(FULL_DAY_NAMES):
        if len(name) >= 3 and full.startswith(name):
            return number
    raise WindowError(f"{text!r} is not a day (expected Mon, Tue, ..., Sun, or a range Mon-Fri)")


def _hour_range(text: str) -> tuple[int, int]:
    first, dash, last = text.partition("-")
    if not dash:
        raise WindowError(f"{text!r} is not an hour range (expected e.g. 09:00-18:00)")
    start, end = _seconds(first), _seconds(last)
    if start == DAY_SECONDS:
        raise WindowError(f"{text!r} starts at 24:00 (the day's end: write 00:00 of the next)")
    if end <= start:
        raise WindowError(
            f"{text!r} ends before it starts (a range cannot cross midnight: write 22:00-24:00"
            " and the next day's 00:00-02:00)"
        )
    return start, end


def _seconds(text: str) -> int:
    """``09:00``, ``9:00``, ``09:00:30`` or ``24:00``, in seconds from midnight."""
    match = _TIME.match(text)
    if match is None:
        raise WindowError(f"{text!r} is not a time of day (expected HH:MM, e.g. 09:00)")
    hour, minute = int(match["hour"]), int(match["minute"])
    second = int(match["second"] or 0)
    seconds = hour * 3600 + minute * 60 + second
    if minute > 59 or second > 59 or seconds > DAY_SECONDS:
        raise WindowError(f"{text!r} is not a time of day (00:00 to 24:00)")
    return seconds


def _clock(seconds: int) -> str:
    hours, rest = divmod(seconds, 3600)
    minutes, second = divmod(rest, 60)
    return f"{hours:02d}:{minutes:02d}" + (f":{second:02d}" if second else "")


def _merged(hours: list[tuple[int, int]]) -> Iterator[tuple[int, int]]:
    """Sorted ranges with those that overlap or touch made one."""
    current: tuple[int, int] | None = None
    for start, end in hours:
        if current is not None and start <= current[1]:
            current = (current[0], max(current[1], end))
            continue
        if current is not None:
            yield current
        current = (start, end)
    if current is not None:
        yield current
