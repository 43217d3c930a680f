"""What the dashboard's three panes show, computed without any UI: a snapshot of the
database turned into rows of text, plus the speed and ETA of what is sending.

Kept free of textual so that it can be tested, and measured, on its own.
"""

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, tzinfo

from .core import lease
from .core.listing import PaneMailing, list_pane_rows
from .core.states import AREA_OF_STATE, Area, State
from .core.store import Store
from .core.when import format_local

STARTING_UP = "starting up"
PANE_AREAS = (Area.NOW, Area.SCHEDULED, Area.STANDBY)

# (title, width) of each pane's columns; fixed widths keep the panes steady as values change
COLUMNS = {
    Area.NOW: (
        ("ID", 3),
        ("Name", 18),
        ("Mode", 10),
        ("Start date", 16),
        ("Progress", 15),
        ("Sent", 17),
        ("Failed", 6),
        ("Speed", 10),
        ("ETA", 7),
    ),
    Area.SCHEDULED: (
        ("ID", 3),
        ("Name", 26),
        ("Mode", 10),
        ("When", 16),
        ("Starts in", 19),
        ("Recipients", 10),
    ),
    Area.STANDBY: (("ID", 3), ("Name", 26), ("Why", 54), ("Sent", 10), ("Recipients", 10)),
}


@dataclass(frozen=True)
class Row:
    mailing_id: int
    name: str
    state: State
    cells: tuple  # one value per column of its pane
    speed: float | None = None  # messages per second, for what is sending

    @property
    def key(self) -> str:
        return str(self.mailing_id)


@dataclass(frozen=True)
class Snapshot:
    rows: dict[Area, list[Row]]
    engine_holder: str | None  # who holds the lease, if anyone (unexpired)
    taken_at: datetime


@dataclass
class SpeedMeter:
    """Messages per second per mailing, over the last ``window`` seconds of samples."""

    window: float = 10.0
    clock: Callable[[], float] = time.monotonic
    _samples: dict[int, deque] = field(default_factory=dict)

    def observe(self, mailing_id: int, sent: int) -> float | None:
        now = self.clock()
        samples = self._samples.setdefault(mailing_id, deque())
        samples.append((now, sent))
        while samples and now - samples[0][0] > self.window:
            samples.popleft()
        first_time, first_sent = samples[0]
        if now - first_time < 0.5:
            return None  # too early to tell
        return max(0.0, (sent - first_sent) / (now - first_time))

    def forget_except(self, mailing_ids: set[int]) -> None:
        for mailing_id in set(self._samples) - mailing_ids:
            del self._samples[mailing_id]


def read_snapshot(store: Store, zone: tzinfo, now: datetime, speeds: SpeedMeter) -> Snapshot:
    """One consistent read of everything the panes show."""
    with store.read() as session:
        mailings = list_pane_rows(session, PANE_AREAS)
        holder = lease.current(session)
    rows = {area: [] for area in PANE_AREAS}
    for mailing in mailings:
        area = AREA_OF_STATE[mailing.state]
        speed = speeds.observe(mailing.id, mailing.sent) if mailing.state == State.SENDING else None
        cells = _cells(area, mailing, zone, now, speed)
        rows[area].append(Row(mailing.id, mailing.name, mailing.state, cells, speed))
    speeds.forget_except({row.mailing_id for row in rows[Area.NOW]})
    active_holder = holder.holder if holder and holder.expires_at > now else None
    return Snapshot(rows, active_holder, now)


def _cells(area: Area, m: PaneMailing, zone: tzinfo, now: datetime, speed: float | None) -> tuple:
    if area == Area.NOW:
        start = STARTING_UP if m.state == State.STARTING else format_local(m.started_at, zone)
        return (
            m.id,
            m.name,
            m.mode or "",
            start,
            progress_bar(m.sent + m.failed, m.total),
            f"{m.sent:,}/{m.total:,}",
            f"{m.failed:,}",
            f"{speed * 60:,.0f}/min" if speed else "",
            _eta(m.remaining, speed),
        )
    if area == Area.SCHEDULED:
        if m.state == State.SCHEDULED:
            when, starts_in = format_local(m.scheduled_at, zone), countdown(m.scheduled_at - now)
        else:
            when, starts_in = f"queue #{m.position}", "after the one ahead"
        return (m.id, m.name, m.mode or "", when, starts_in, f"{m.total:,}")
    return (m.id, m.name, m.state_reason or "", f"{m.sent:,}", f"{m.total:,}")


def progress_bar(done: int, total: int, width: int = 10) -> str:
    """A bar and a percentage, e.g. ``██████░░░░░░  50%``."""
    fraction = done / total if total else 1.0
    filled = int(fraction * width)
    return "█" * filled + "░" * (width - filled) + f" {fraction:4.0%}"


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


def _eta(remaining: int, speed: float | None) -> str:
    if not speed or not remaining:
        return ""
    return countdown(timedelta(seconds=remaining / speed)).removeprefix("in ")
