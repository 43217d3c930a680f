"""The three panes: their titles, their columns, and a mailing's cells in each."""

from collections.abc import Mapping
from datetime import datetime, tzinfo

from sendstatus_tui.core.model.states import Area
from sendstatus_tui.core.reads.listing import PaneMailing
from sendstatus_tui.views.cells import (
    PAUSED_NO_ENGINE,
    Cell,
    eta,
    failed_cell,
    now_status,
    number,
    parked_reason,
    per_minute,
    planned_for,
    progress_bar,
    sent_of_total,
    starts_in,
)
from sendstatus_tui.views.layout import Column

PANE_AREAS = (Area.NOW, Area.SCHEDULED, Area.STANDBY)

PANE_TITLE = {
    Area.NOW: "Sending now",
    Area.SCHEDULED: "Scheduled sendings",
    Area.STANDBY: "Sends to schedule",
    Area.DONE: "Completed",
}

# Each pane's columns, in the order of its cells. The essential ones (priority 0) always
# show, at 80 columns too, before the name takes more than its least; the others join by
# priority as the terminal's width (never the values) allows; names and reasons take the
# width that is left.
COLUMNS = {
    Area.NOW: (
        Column("ID", 3, fits_values=True),
        Column("Name", 12, grows=True),
        Column("Mode", 10, priority=3),
        # a date, "paused: no engine"; "relay down, retry 15:42:10" widens it
        Column("Start date", len(PAUSED_NO_ENGINE), fits_values=True),
        Column("Progress", len(progress_bar(1, 1))),
        Column("Sent", 11, fits_values=True),  # 9,999/9,999; more widens it
        # the failed share, "12.5%", then what came back: "12.5% 188b 2c"
        Column("Failed", 6, fits_values=True),
        Column("Speed", 10, priority=1, fits_values=True),
        Column("ETA", 7, priority=2, fits_values=True),
    ),
    Area.SCHEDULED: (
        Column("ID", 3, fits_values=True),
        Column("Name", 16, grows=True),
        Column("Mode", 10, priority=2),
        Column("When", 16, fits_values=True),
        Column("Starts in", 10, priority=1, fits_values=True),
        Column("Recipients", 10, fits_values=True),
    ),
    Area.STANDBY: (
        Column("ID", 3, fits_values=True),
        Column("Name", 16, grows=True),
        Column("Why", 14, grows=True),
        Column("Sent", 6, fits_values=True),
        Column("Recipients", 10, fits_values=True),
    ),
}
BLINKING_COLUMN = {Area.NOW: "Start date"}  # where "starting up" blinks


def heading(area: Area, count: int, of: int | None = None) -> str:
    """A pane's title with how many mailings it shows, e.g. ``Sending now (3)``; while a
    filter hides some of its ``of``, how many of them: ``Sending now (1 of 2)``."""
    if of is not None and of != count:
        return f"{PANE_TITLE[area]} ({count:,} of {of:,})"
    return f"{PANE_TITLE[area]} ({count:,})"


def pane_cells(
    area: Area,
    m: PaneMailing,
    zone: tzinfo,
    now: datetime,
    speed: float | None,
    engine_running: bool = True,
    starting_since: datetime | None = None,
    down: Mapping[str, datetime] | None = None,
) -> tuple[Cell, ...]:
    """One value per column of ``area``'s pane."""
    if area == Area.NOW:
        return (
            m.id,
            m.name,
            m.mode or "",
            now_status(m, zone, now, engine_running, starting_since, down),
            progress_bar(m.sent + m.failed, m.total),
            sent_of_total(m),
            failed_cell(m.sent, m.failed, m.bounced + m.blocked, m.complained),
            per_minute(speed),
            eta(m.remaining, speed, m.window, now),
        )
    if area == Area.SCHEDULED:
        return (
            m.id,
            m.name,
            m.mode or "",
            planned_for(m, zone),
            starts_in(m, now, engine_running),
            number(m.total),
        )
    return parked_cells(m)


def parked_cells(m: PaneMailing) -> tuple[Cell, ...]:
    """A parked mailing's cells: from its stored fields alone (no clock, no engine)."""
    return (m.id, m.name, parked_reason(m), number(m.sent), number(m.total))
