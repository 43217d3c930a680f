"""What the dashboard's panes show, read in one go: a snapshot of the database turned into
rows of cells, plus the speed and ETA of what is sending.

Kept free of textual so that it can be tested, and measured, on its own.
"""

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, tzinfo

from ..core import lease
from ..core.listing import list_pane_rows
from ..core.states import AREA_OF_STATE, Area, State
from ..core.store import Store
from .cells import Cell
from .panes import PANE_AREAS, pane_cells


@dataclass(frozen=True)
class Row:
    mailing_id: int
    name: str
    state: State
    cells: tuple[Cell, ...]  # one value per column of its pane
    speed: float | None = None  # messages per second, for what is sending
    # "starting up" blinks in its start date; not while the engine says what it waits for
    blinks: bool = False

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
    # mailing id -> (clock time, messages sent by then)
    _samples: dict[int, deque[tuple[float, int]]] = field(default_factory=dict)

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
    rows: dict[Area, list[Row]] = {area: [] for area in PANE_AREAS}
    for mailing in mailings:
        area = AREA_OF_STATE[mailing.state]
        speed = speeds.observe(mailing.id, mailing.sent) if mailing.state == State.SENDING else None
        cells = pane_cells(area, mailing, zone, now, speed)
        blinks = mailing.state == State.STARTING and not mailing.waiting_reason
        rows[area].append(Row(mailing.id, mailing.name, mailing.state, cells, speed, blinks))
    speeds.forget_except({row.mailing_id for row in rows[Area.NOW]})
    active_holder = holder.holder if holder and holder.expires_at > now else None
    return Snapshot(rows, active_holder, now)
