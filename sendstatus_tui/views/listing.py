"""``sendstatus ls``: the panes as plain text, with the panes' own cells."""

from datetime import datetime, tzinfo

from sendstatus_tui.core.model.models import Mailing, utc_now
from sendstatus_tui.core.model.states import AREA_OF_STATE, Area
from sendstatus_tui.core.model.when import format_local, zone_label
from sendstatus_tui.views.cells import (
    as_planned,
    eta,
    now_status,
    number,
    parked_reason,
    per_minute,
    planned_for,
    sent_of_total,
)
from sendstatus_tui.views.panes import heading

_HEADERS = {
    # START DATE, or why it waits; SPEED per minute, from the minutes the engines store
    Area.NOW: ("ID", "NAME", "MODE", "START DATE", "SENT", "FAILED", "SPEED", "ETA"),
    Area.SCHEDULED: ("ID", "NAME", "MODE", "WHEN", "RECIPIENTS"),
    Area.STANDBY: ("ID", "NAME", "WHY", "SENT", "RECIPIENTS"),
    Area.DONE: ("ID", "NAME", "MODE", "FINISHED", "SENT", "FAILED"),
}


_TIMES = {"START DATE", "WHEN", "FINISHED"}


def render_panes(
    mailings: list[Mailing],
    areas: list[Area],
    zone: tzinfo,
    *,
    now: datetime | None = None,
    engine_running: bool = True,
    speeds: dict[int | None, float | None] | None = None,
) -> str:
    """The panes as text, with the panes' short reasons (what a mailing waits for, why it is
    parked); ``show`` has them in full. ``engine_running``: an engine holds the lease;
    ``speeds``: messages per second of those sending (core/reads/throughput.py)."""
    speeds = speeds or {}
    now = now or utc_now()
    lines: list[str] = []
    for area in areas:
        in_area = [m for m in mailings if AREA_OF_STATE[m.state] == area]
        if lines:
            lines.append("")
        lines.append(heading(area, len(in_area)))
        if not in_area:
            lines.append("  (none)")
            continue
        rows = [_row(area, m, zone, now, engine_running, speeds.get(m.id)) for m in in_area]
        # the column of times names their zone
        header = tuple(f"{h} ({zone_label(zone)})" if h in _TIMES else h for h in _HEADERS[area])
        columns = zip(header, *rows, strict=True)
        widths = [max(len(str(cell)) for cell in column) for column in columns]
        for row in [header, *rows]:
            cells = [str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)]
            lines.append("  " + "  ".join(cells).rstrip())
    return "\n".join(lines)


def _row(
    area: Area,
    m: Mailing,
    zone: tzinfo,
    now: datetime,
    engine_running: bool,
    speed: float | None,
) -> tuple[object, ...]:  # printed with str()
    mode = m.mode or ""
    if area == Area.NOW:
        status = now_status(m, zone, now, engine_running)
        speed = speed if engine_running else None  # what no engine sends has no speed
        return (
            m.id,
            m.name,
            mode,
            status,
            sent_of_total(m),
            number(m.failed),
            per_minute(speed),
            eta(m.remaining, speed, m.window, now),
        )
    if area == Area.SCHEDULED:
        planned = planned_for(m, zone) + as_planned(m.scheduled_at, m.scheduled_zone, zone)
        return (m.id, m.name, mode, planned, number(m.total))
    if area == Area.STANDBY:
        return (m.id, m.name, parked_reason(m), number(m.sent), number(m.total))
    finished = format_local(m.finished_at, zone)
    return (m.id, m.name, mode, finished, number(m.sent), number(m.failed))
