"""The formatting of every value an operator reads, shared by the panes, ``ls``, ``show``
and the details screen, so that a mailing reads the same everywhere."""

import re
from collections.abc import Mapping
from datetime import datetime, timedelta, tzinfo
from enum import Enum
from typing import Protocol

from sendstatus_tui.core.model.relays import EVERY_RELAY_DOWN
from sendstatus_tui.core.model.states import STATE_WORDS, State
from sendstatus_tui.core.model.waiting import WaitingKind
from sendstatus_tui.core.model.when import (
    WhenError,
    format_local,
    format_named,
    to_zone,
    zone_label,
)
from sendstatus_tui.core.model.when import zone as named_zone
from sendstatus_tui.core.model.window import stored_window

STARTING_UP = "starting up"
NONE_YET = "—"
# the reference page allows a minute to start up: longer than that is flagged
SLOW_START = timedelta(minutes=1)
PAUSED_NO_ENGINE = "paused: no engine"
OVERDUE_NO_ENGINE = "overdue: no engine"  # a scheduled time passed, and nobody starts it
# the reason a retry parks a mailing with (core/model/lifecycle.py retry), e.g. "419 to retry"
_TO_RETRY = re.compile(r"^(?P<count>[\d,]+) to retry$")

Cell = int | str  # a value in a pane's column: an id, or text


class Planned(Protocol):
    """What these functions read of a mailing (a row, an ORM object or its details); read
    only, so that named tuples and frozen dataclasses fit."""

    @property
    def state(self) -> State: ...
    @property
    def position(self) -> int | None: ...
    @property
    def scheduled_at(self) -> datetime | None: ...
    @property
    def started_at(self) -> datetime | None: ...
    @property
    def total(self) -> int: ...
    @property
    def sent(self) -> int: ...
    @property
    def waiting_kind(self) -> WaitingKind | None: ...
    @property
    def waiting_reason(self) -> str | None: ...
    @property
    def waiting_until(self) -> datetime | None: ...


class Parked(Protocol):
    """What a parked mailing's reason is read with."""

    @property
    def state_reason(self) -> str | None: ...
    @property
    def remaining(self) -> int: ...


def state_shown(state: State) -> str:
    """What operators read for a state (JSON and the database keep the state's own name)."""
    return STATE_WORDS[state]


def quoted(name: str) -> str:
    """A mailing's name inside a sentence, so that where it ends is plain."""
    return f"\u201c{name}\u201d"


def number(count: int) -> str:
    return f"{count:,}"


# the failed share (of those handed to the relay) that the refusals guard stops a mailing at
# by default (``guard_refusals``, to come); from FAILED_SHARE_WARNING on it shows in yellow,
# from this one in red
GUARD_REFUSALS_DEFAULT_PERCENT = 5.0
FAILED_SHARE_WARNING_PERCENT = 2.0


class Alarm(Enum):
    NONE = "none"
    WARNING = "warning"
    GUARD = "guard"  # at or past the guard's threshold


def failed_percent(sent: int, failed: int) -> float | None:
    """The failed share of what was handed to the relay so far (None: nothing yet)."""
    handled = sent + failed
    return failed * 100 / handled if handled else None


def failed_share(sent: int, failed: int) -> str:
    """e.g. "0%", "2.4%", "13%"; blank while nothing was handed to the relay."""
    percent = failed_percent(sent, failed)
    if percent is None:
        return ""
    if failed == 0:
        return "0%"
    return f"{percent:.1f}%" if percent < 10 else f"{percent:.0f}%"


def came_back_short(bounced: int, complained: int) -> str:
    """What came back after the send, for a pane's narrow cell: "188b 2c" (bounced or
    blocked, complaints); blank until something comes."""
    parts = ([f"{bounced:,}b"] if bounced else []) + ([f"{complained:,}c"] if complained else [])
    return " ".join(parts)


def failed_cell(sent: int, failed: int, bounced: int, complained: int) -> str:
    """Sending now's Failed cell: the failed share, then what came back once any did,
    e.g. "2.4% 188b 2c" (the bounces are among the failed; complaints are not)."""
    back = came_back_short(bounced, complained)
    return " ".join(part for part in (failed_share(sent, failed), back) if part)


def share_of(count: int, whole: int) -> str:
    """``count`` as a percentage of ``whole``: "2.1%", "0.02%" (small shares keep a figure)."""
    if not whole:
        return "—"
    percent = count * 100 / whole
    if percent == 0 or percent >= 0.1:
        return f"{percent:.1f}%"
    return f"{percent:.2f}%"


def failed_alarm(
    sent: int, failed: int, complained: int = 0, complaint_limit: float | None = None
) -> Alarm:
    """The Failed cell's colour: by the failed share, or by complaints, whichever is worse.
    Any complaint is a warning; a complaint share (of those counted sent) at the guard's
    ``complaint_limit`` (0.001 for 0.1 %; None: the guard is off) is red."""
    percent = failed_percent(sent, failed) or 0.0
    if percent >= GUARD_REFUSALS_DEFAULT_PERCENT:
        return Alarm.GUARD
    if complained and complaint_limit is not None and complained >= complaint_limit * sent:
        return Alarm.GUARD
    if percent >= FAILED_SHARE_WARNING_PERCENT or complained:
        return Alarm.WARNING
    return Alarm.NONE


def sent_of_total(mailing: Planned) -> str:
    return f"{mailing.sent:,}/{mailing.total:,}"


def start_date(mailing: Planned, zone: tzinfo) -> str:
    """When it started, or "starting up" while it is being prepared, or what the engine
    waits for when something keeps it from starting or sending (a relay that is down)."""
    if mailing.waiting_kind == WaitingKind.WINDOW:
        return window_opens(mailing.waiting_until, zone)
    if mailing.waiting_kind is not None and mailing.state in (State.STARTING, State.SENDING):
        return f"waiting: {mailing.waiting_reason}"
    if mailing.state == State.STARTING:
        return STARTING_UP
    return format_local(mailing.started_at, zone)


def window_opens(until: datetime | None, zone: tzinfo) -> str:
    """A mailing outside its sending window, e.g. "window opens Mon 09:00" (within a week,
    in the reader's zone). The one place this text is made."""
    if until is None:
        return "outside its window"
    return f"window opens {to_zone(until, zone):%a %H:%M}"


def waits_for(kind: WaitingKind, reason: str | None) -> str:
    """A short name for what the engine waits for, other than its window (its own words
    are in the details)."""
    if kind == WaitingKind.DOMAIN_LIMIT:
        return "domain limit"
    return relay_trouble(reason or "")


def relay_trouble(reason: str) -> str:
    """A short name for a relay's trouble (its full reply is in the details)."""
    if reason.startswith(EVERY_RELAY_DOWN):
        return "relays down"
    return "relay down" if reason.startswith("cannot reach") else "relay error"


def relays_down(down: Mapping[str, datetime], zone: tzinfo) -> str:
    """``relay backup down since 15:40``: the relays an engine finds down, while others
    carry the messages."""
    names = ", ".join(sorted(down))
    first = to_zone(min(down.values()), zone)
    return f"relay{'s' if len(down) > 1 else ''} {names} down since {first:%H:%M}"


def clock_time(moment: datetime, zone: tzinfo) -> str:
    """A time of day to the second, in ``zone`` (today's retries, not dates)."""
    return to_zone(moment, zone).strftime("%H:%M:%S")


def now_status(
    mailing: Planned,
    zone: tzinfo,
    now: datetime,
    engine_running: bool,
    starting_since: datetime | None = None,
    down: Mapping[str, datetime] | None = None,
) -> str:
    """The Start date cell of Sending now, short enough for 80 columns: the start date, or
    why nothing goes out (no engine, a relay that is down), or "starting up" (flagged with
    how long when it takes more than a minute), or which of its relays an engine finds
    down (``down``) while the others carry it."""
    if not engine_running:
        return PAUSED_NO_ENGINE
    if mailing.waiting_kind == WaitingKind.WINDOW:
        return window_opens(mailing.waiting_until, zone)
    if mailing.waiting_kind is not None:
        waits = waits_for(mailing.waiting_kind, mailing.waiting_reason)
        until = mailing.waiting_until
        ahead = clock_time(until, zone) if until and until > now else None
        if mailing.waiting_kind == WaitingKind.DOMAIN_LIMIT:
            # held for its domains' limits is no failure: the next of them goes then
            return f"{waits}, next {ahead}" if ahead else waits
        return f"{waits}, {f'retry {ahead}' if ahead else 'retrying'}"
    if mailing.state == State.STARTING:
        if starting_since is not None and now - starting_since > SLOW_START:
            minutes = int((now - starting_since).total_seconds() // 60)
            return f"still starting: {minutes}m"
        return STARTING_UP
    if down:
        return relays_down(down, zone)
    return format_local(mailing.started_at, zone)


def starts_in(mailing: Planned, now: datetime, engine_running: bool) -> str:
    """How long until a scheduled mailing starts; past its time, "now" while an engine runs
    to start it, else that it is overdue for want of one."""
    if mailing.state != State.SCHEDULED:
        return "in turn"  # queued: after the one ahead of it
    assert mailing.scheduled_at is not None  # a scheduled mailing has its time
    if mailing.scheduled_at <= now and not engine_running:
        return OVERDUE_NO_ENGINE
    return countdown(mailing.scheduled_at - now)


def parked_reason(mailing: Parked) -> str:
    """Why a mailing is parked, short, as the panes and ``ls`` show it: a retry says what
    else remains ("19,160 left, 419 of them to retry")."""
    reason = mailing.state_reason or ""
    retry = _TO_RETRY.match(reason)
    if retry is not None:
        count = int(retry["count"].replace(",", ""))
        if mailing.remaining > count:
            return f"{mailing.remaining:,} left, {count:,} of them to retry"
    return reason


def planned_for(mailing: Planned, zone: tzinfo) -> str:
    """A scheduled mailing's time, or a queued one's place in the queue."""
    if mailing.state == State.SCHEDULED:
        return format_local(mailing.scheduled_at, zone)
    return f"queue #{mailing.position}"


def as_planned(when: datetime | None, planned_zone: str | None, zone: tzinfo) -> str:
    """How a time was typed, " (planned as 2026-12-04 09:00 America/New_York)", when
    that was in another zone than the reader's ``zone``; else nothing."""
    if when is None or not planned_zone or planned_zone == zone_label(zone):
        return ""
    try:
        typed_in = named_zone(planned_zone)
    except WhenError:  # a zone this machine's tz database no longer knows
        return ""
    return f" (planned as {format_named(when, typed_in)})"


def moment(when: datetime | None, zone: tzinfo) -> str:
    """A time in the operator's zone, or a dash when there is none yet."""
    return format_local(when, zone) if when else NONE_YET


def progress_bar(done: int, total: int, width: int = 8) -> str:
    """A bar and a percentage, e.g. ``██████░░░░░░  50%``."""
    fraction = done / total if total else 1.0
    filled = int(fraction * width)
    percent = done * 100 // total if total else 100  # rounded down: 100% only when all done
    return "█" * filled + "░" * (width - filled) + f" {percent:3d}%"


def countdown(left: timedelta) -> str:
    seconds = max(0, int(left.total_seconds()))
    if seconds == 0:
        return "now"
    days, seconds = divmod(seconds, 86_400)
    hours, seconds = divmod(seconds, 3_600)
    minutes, seconds = divmod(seconds, 60)
    if days:
        return f"in {days}d {hours}h"
    if hours:
        return f"in {hours}h {minutes:02d}m"
    return f"in {minutes}m {seconds:02d}s"


def per_minute(speed: float | None) -> str:
    """A speed in messages per second, as messages per minute (blank while unknown)."""
    return f"{speed * 60:,.0f}/min" if speed else ""


def eta(
    remaining: int, speed: float | None, window: str | None = None, now: datetime | None = None
) -> str:
    """How long until the rest is sent at ``speed`` (messages per second); with its sending
    ``window`` (as stored) and ``now``, counting only the window's open hours from now on."""
    if not speed or not remaining:
        return ""
    work = remaining / speed
    try:
        sending_window = stored_window(window)
    except WhenError:  # its zone left this machine's tz database: the engine stops it
        return ""
    if sending_window is not None and now is not None:
        work = (sending_window.after_open_time(now, work) - now).total_seconds()
    return countdown(timedelta(seconds=work)).removeprefix("in ")
