"""The three panes: their titles, their columns, and a mailing's cells in each."""

from datetime import datetime, tzinfo

from ..core.listing import PaneMailing
from ..core.states import Area, State
from .cells import (
    Cell,
    countdown,
    eta,
    number,
    per_minute,
    planned_for,
    progress_bar,
    sent_of_total,
    start_date,
)

PANE_AREAS = (Area.NOW, Area.SCHEDULED, Area.STANDBY)

PANE_TITLE = {
    Area.NOW: "Sending now",
    Area.SCHEDULED: "Scheduled sendings",
    Area.STANDBY: "Sends to schedule",
    Area.DONE: "Completed",
}

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
BLINKING_COLUMN = {Area.NOW: "Start date"}  # where "starting up" blinks


def heading(area: Area, count: int) -> str:
    """A pane's title with how many mailings it shows, e.g. ``Sending now (3)``."""
    return f"{PANE_TITLE[area]} ({count})"


def pane_cells(
    area: Area, m: PaneMailing, zone: tzinfo, now: datetime, speed: float | None
) -> tuple[Cell, ...]:
    """One value per column of ``area``'s pane."""
    if area == Area.NOW:
        return (
            m.id,
            m.name,
            m.mode or "",
            start_date(m, zone),
            progress_bar(m.sent + m.failed, m.total),
            sent_of_total(m),
            number(m.failed),
            per_minute(speed),
            eta(m.remaining, speed),
        )
    if area == Area.SCHEDULED:
        if m.state == State.SCHEDULED:
            assert m.scheduled_at is not None  # a scheduled mailing has its time
            starts_in = countdown(m.scheduled_at - now)
        else:
            starts_in = "after the one ahead"
        return (m.id, m.name, m.mode or "", planned_for(m, zone), starts_in, number(m.total))
    return (m.id, m.name, m.state_reason or "", number(m.sent), number(m.total))
