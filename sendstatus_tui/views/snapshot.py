"""What the dashboard's panes show, read in one go: a snapshot of the database turned into
rows of cells, plus the speed, ETA and last hour of what is sending (from the minutes the
engines store, so that a dashboard opened now has them at once).

Kept free of textual so that it can be tested, and measured, on its own.
"""

import functools
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, tzinfo
from typing import Any

from sqlmodel import Session

from sendstatus_tui.core.coordination import heartbeats, lease, relay_breakers
from sendstatus_tui.core.model import guard, settings
from sendstatus_tui.core.model.models import AuditEntry
from sendstatus_tui.core.model.states import AREA_OF_STATE, Area, State
from sendstatus_tui.core.model.waiting import WaitingKind
from sendstatus_tui.core.reads import activity
from sendstatus_tui.core.reads.activity import CameBack
from sendstatus_tui.core.reads.listing import PaneMailing, pane_rows_reading, sending_ids
from sendstatus_tui.core.reads.throughput import (
    NO_MINUTES,
    Throughput,
    last_hour_since,
    throughput_reading,
)
from sendstatus_tui.core.store.store import Store
from sendstatus_tui.core.store.together import Reading, read_together
from sendstatus_tui.views.activity import AuditWatch
from sendstatus_tui.views.cells import SLOW_START, STARTING_UP, Alarm, Cell, failed_alarm
from sendstatus_tui.views.completed import start_of_day
from sendstatus_tui.views.panes import PANE_AREAS, pane_cells, parked_cells


@dataclass(frozen=True)
class Row:
    mailing_id: int
    name: str
    state: State
    cells: tuple[Cell, ...]  # one value per column of its pane
    speed: float | None = None  # messages per second, for what is sending
    # "starting up" blinks in its start date; not while the engine says what it waits for
    blinks: bool = False
    waiting_kind: WaitingKind | None = None  # what keeps the engine from sending it
    waiting_reason: str | None = None  # the same, in the engine's words
    waiting_until: datetime | None = None
    waiting_since: datetime | None = None  # since when it waits
    # its start date says why nothing goes out, or that starting up takes too long
    flagged: bool = False
    scheduled_at: datetime | None = None  # a scheduled mailing's time (to reschedule)
    failed_alarm: Alarm = Alarm.NONE  # how its failed share compares with the guard's
    state_reason: str | None = None  # why it is parked (stopped, by whom: the guard)
    # what is sending: messages per minute over the last hour, oldest first
    chart: tuple[int, ...] = ()
    window: str | None = None  # the days and hours it may send in (to schedule again)

    @property
    def key(self) -> str:
        return str(self.mailing_id)


@dataclass(frozen=True)
class Snapshot:
    rows: dict[Area, list[Row]]
    engine_holder: str | None  # who holds the lease, if anyone (unexpired)
    taken_at: datetime
    rate: str | None = None  # the contracted rate, as stored (e.g. 36000/h)
    engines_running: int = 0  # engines whose heartbeat says they run (none lost)
    # the audit entries written since the last read (none at the first)
    news: list[AuditEntry] = field(default_factory=list)
    # today's changes, newest first, when they changed since the last read (else None)
    activity: list[AuditEntry] | None = None
    # completed mailings with bounces or complaints new since the last read
    came_back: list[CameBack] = field(default_factory=list)
    # the relays some running engine finds down, and since when (the earliest)
    relays_down: dict[str, datetime] = field(default_factory=dict)

    @property
    def on_screen(self) -> set[int]:
        return {row.mailing_id for rows in self.rows.values() for row in rows}


# the activity panel's entries at most (today's; the A screen shows them all)
ACTIVITY_READ = 30

# parked mailings' rows kept built (each version of a mailing is one; a few screens' worth)
PARKED_ROWS_KEPT = 8192


# a mailing whose count did not move over this many refreshes sends nothing now: its speed
# falls to nothing at once, without waiting for the stored minutes to say so...
STALLED_AFTER_REFRESHES = 2
# ...unless its count moves in bursts (an engine records its batches every second or two):
# then it is given half as long again as the longest pause between them, at most this long
STALLED_AFTER_AT_MOST_SECONDS = 5.0


@dataclass
class StallWatch:
    """Whether each mailing's count stood still for STALLED_AFTER_REFRESHES refreshes (and
    longer than the pauses of a count that moves in bursts), from the counts seen at each
    refresh over the last ``window`` seconds."""

    window: float = 10.0
    clock: Callable[[], float] = time.monotonic
    # mailing id -> (clock time, messages with an outcome by then)
    _samples: dict[int, deque[tuple[float, int]]] = field(default_factory=dict)

    def stalled(self, mailing_id: int, count: int) -> bool:
        now = self.clock()
        samples = self._samples.setdefault(mailing_id, deque())
        samples.append((now, count))
        while samples and now - samples[0][0] > self.window:
            samples.popleft()
        latest = list(samples)[-STALLED_AFTER_REFRESHES - 1 :]
        still = len(latest) > STALLED_AFTER_REFRESHES and latest[0][1] == count
        return still and now - _count_since(samples) >= _patience(samples)

    def forget_except(self, mailing_ids: set[int]) -> None:
        for mailing_id in set(self._samples) - mailing_ids:
            del self._samples[mailing_id]


def _count_since(samples: deque[tuple[float, int]]) -> float:
    """When the latest count was first seen."""
    since, count = samples[-1]
    for at, sent in reversed(samples):
        if sent != count:
            break
        since = at
    return since


def _patience(samples: deque[tuple[float, int]]) -> float:
    """How long a count that moves in bursts may stand still before it counts as stalled."""
    listed = list(samples)
    moves = [
        at
        for (at, sent), (_, before) in zip(listed[1:], listed[:-1], strict=True)
        if sent != before
    ]
    pauses = [later - earlier for earlier, later in zip(moves[:-1], moves[1:], strict=True)]
    return min(STALLED_AFTER_AT_MOST_SECONDS, 1.5 * max(pauses, default=0.0))


def speed_and_chart(
    throughput: Throughput, now: datetime, stalled: bool
) -> tuple[float | None, tuple[int, ...]]:
    """A sending mailing's speed now (messages per second) and its last hour: messages per
    minute in the 60 whole minutes before this one, oldest first (it changes once a minute,
    so that a chart is drawn again only then; the speed now is told beside it)."""
    speed = 0.0 if stalled else throughput.speed(now)
    return speed, tuple(throughput.handled_per_minute(now - timedelta(minutes=1)))


@dataclass
class StartWatch:
    """When this dashboard first saw each mailing starting up (its started_at is the first
    start ever, which a mailing sent again after a stop keeps)."""

    _since: dict[int, datetime] = field(default_factory=dict)

    def since(self, mailing_id: int, starting: bool, now: datetime) -> datetime | None:
        if not starting:
            self._since.pop(mailing_id, None)
            return None
        return self._since.setdefault(mailing_id, now)


def read_snapshot(
    store: Store,
    zone: tzinfo,
    now: datetime,
    stalls: StallWatch,
    starts: StartWatch | None = None,
    watch: AuditWatch | None = None,
) -> Snapshot:
    """One consistent read of everything the panes show; with ``watch``, also what changed
    in the audit trail and came back since the last read (``watch`` moves on)."""
    news: list[AuditEntry] = []
    today: list[AuditEntry] | None = None
    came_back: list[CameBack] = []
    with store.read() as session:
        # one statement on SQLite (core/store/together.py): beside the engine's thread,
        # each statement more waited for the GIL once more
        (mailings, holder, rate, beats, breakers, complaint_limit, throughputs, *changes) = (
            read_together(session, refresh_readings(now, watch))
        )
        if watch is not None:
            news, today, came_back = _read_changes(session, watch, changes, zone, now)
    active_holder = holder.holder if holder and holder.expires_at > now else None
    lost = heartbeats.lost_ids(beats, now)
    # a row still saying leader after its lease lapsed is an engine that died leading (its
    # heartbeat and its lease are renewed together)
    running = sum(
        1 for b in beats if b.id not in lost and (b.role != "leader" or b.id == active_holder)
    )
    relays_down: dict[str, datetime] = {}
    for breaker in breakers:  # the oldest first
        if breaker.engine_id not in lost:
            relays_down.setdefault(breaker.relay, breaker.down_since)
    starts = starts or StartWatch()
    rows: dict[Area, list[Row]] = {area: [] for area in PANE_AREAS}
    for mailing in mailings:
        area = AREA_OF_STATE[mailing.state]
        if area == Area.STANDBY:
            starts.since(mailing.id, False, now)  # forgets a start it may have seen
            rows[area].append(parked_row(mailing))
            continue
        # what no engine sends has no speed (an engine lost mid-send left its last count)
        sending = mailing.state == State.SENDING and active_holder is not None
        speed: float | None = None
        chart: tuple[int, ...] = ()
        if sending:
            stalled = stalls.stalled(mailing.id, mailing.sent + mailing.failed)
            minutes = throughputs.get(mailing.id, NO_MINUTES)
            speed, chart = speed_and_chart(minutes, now, stalled)
        since = starts.since(mailing.id, mailing.state == State.STARTING, now)
        used = mailing.relays.split(",") if mailing.relays else None
        down = {n: t for n, t in relays_down.items() if used is None or n in used}
        cells = pane_cells(area, mailing, zone, now, speed, active_holder is not None, since, down)
        blinks = area == Area.NOW and cells[3] == STARTING_UP
        slow = since is not None and now - since > SLOW_START
        # a relay's trouble is flagged; waiting for its window is the plan
        trouble = mailing.waiting_kind == WaitingKind.RELAY_DOWN
        flagged = area == Area.NOW and (not active_holder or trouble or slow)
        rows[area].append(
            Row(
                mailing.id,
                mailing.name,
                mailing.state,
                cells,
                speed=speed,
                blinks=blinks,
                waiting_kind=mailing.waiting_kind,
                waiting_reason=mailing.waiting_reason,
                waiting_until=mailing.waiting_until,
                waiting_since=mailing.waiting_since,
                flagged=flagged,
                scheduled_at=mailing.scheduled_at,
                failed_alarm=failed_alarm(
                    mailing.sent, mailing.failed, mailing.complained, complaint_limit
                )
                if area == Area.NOW
                else Alarm.NONE,
                state_reason=mailing.state_reason,
                chart=chart,
                window=mailing.window,
            )
        )
    stalls.forget_except({row.mailing_id for row in rows[Area.NOW]})
    return Snapshot(rows, active_holder, now, rate, running, news, today, came_back, relays_down)


# Most rows are parked mailings, whose rows change only with their stored fields: each is
# built once per version of them (a refresh beside a sending engine, which competes for the
# GIL, spent a third of its time rebuilding them)
@functools.lru_cache(maxsize=PARKED_ROWS_KEPT)
def parked_row(mailing: PaneMailing) -> Row:
    return Row(
        mailing.id,
        mailing.name,
        mailing.state,
        parked_cells(mailing),
        waiting_kind=mailing.waiting_kind,
        waiting_reason=mailing.waiting_reason,
        waiting_until=mailing.waiting_until,
        waiting_since=mailing.waiting_since,
        scheduled_at=mailing.scheduled_at,
        state_reason=mailing.state_reason,
        window=mailing.window,
    )


def refresh_readings(now: datetime, watch: AuditWatch | None) -> list[Reading[Any]]:
    """What a refresh reads: the panes' mailings, the lease, the rate, the engines, the
    relays found down, the complaint share, the minutes of what is sending, and with
    ``watch`` what changed since it last read."""
    return [
        pane_rows_reading(PANE_AREAS),
        lease.current_reading(),
        settings.value_reading("rate"),
        heartbeats.engines_reading(),
        relay_breakers.breakers_reading(),
        guard.share_reading(guard.COMPLAINTS),
        throughput_reading(sending_ids(), last_hour_since(now)),
        *(_change_readings(watch) if watch is not None else ()),
    ]


def _change_readings(watch: AuditWatch) -> list[Reading[Any]]:
    """What a refresh reads of what changed since ``watch`` last read: the audit entries
    after its last one (by id), and the completed mailings changed after its last change;
    at the first read, only where they stand (what came before is not news)."""
    if watch.last_entry_id is None:
        entries: Reading[Any] = activity.latest_entry_reading()
    else:
        entries = activity.entries_after_reading(watch.last_entry_id)
    if watch.completed_changed_at is None:
        completed: Reading[Any] = activity.newest_completed_change_reading()
    else:
        completed = activity.completed_changed_reading(watch.completed_changed_at)
    return [entries, completed]


def _read_changes(
    session: Session, watch: AuditWatch, changes: list[Any], zone: tzinfo, now: datetime
) -> tuple[list[AuditEntry], list[AuditEntry] | None, list[CameBack]]:
    """From what ``_change_readings`` read: the entries new since ``watch`` last read,
    today's entries when they changed (read now), and what came back about completed
    mailings; ``watch`` moves on."""
    entries, completed = changes
    news: list[AuditEntry] = []
    if watch.last_entry_id is None:
        watch.last_entry_id = entries
    else:
        news = entries
        if news:
            watch.last_entry_id = news[-1].id
    day = start_of_day(now, zone)
    today = None
    if news or day != watch.activity_day:
        today = activity.entries_since(session, day, ACTIVITY_READ)
        watch.activity_day = day
    came_back: list[CameBack] = []
    if watch.completed_changed_at is None:
        watch.completed_changed_at = completed
    elif completed:
        came_back = activity.came_back(session, completed)
        watch.completed_changed_at = max(changed.updated_at for changed in completed)
    return news, today, came_back
