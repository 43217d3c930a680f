"""Plain-text views for the command line: ``ls`` reads like the dashboard's panes."""

from datetime import datetime, tzinfo

from .core.models import Mailing
from .core.states import AREA_OF_STATE, PANE_TITLE, Area, State
from .core.when import format_local


def render_panes(mailings: list[Mailing], areas: list[Area], zone: tzinfo) -> str:
    lines: list[str] = []
    for area in areas:
        in_area = [m for m in mailings if AREA_OF_STATE[m.state] == area]
        if lines:
            lines.append("")
        lines.append(f"{PANE_TITLE[area]} ({len(in_area)})")
        if not in_area:
            lines.append("  (none)")
            continue
        rows = [_row(area, m, zone) for m in in_area]
        header = _HEADERS[area]
        columns = zip(header, *rows, strict=True)
        widths = [max(len(str(cell)) for cell in column) for column in columns]
        for row in [header, *rows]:
            cells = [str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)]
            lines.append("  " + "  ".join(cells).rstrip())
    return "\n".join(lines)


_HEADERS = {
    Area.NOW: ("ID", "NAME", "MODE", "START DATE", "SENT", "FAILED"),
    Area.SCHEDULED: ("ID", "NAME", "MODE", "WHEN", "RECIPIENTS"),
    Area.STANDBY: ("ID", "NAME", "WHY", "SENT", "RECIPIENTS"),
    Area.DONE: ("ID", "NAME", "MODE", "FINISHED", "SENT", "FAILED"),
}


def _row(area: Area, m: Mailing, zone: tzinfo) -> tuple:
    mode = m.mode or ""
    if area == Area.NOW:
        start = "starting up" if m.state == State.STARTING else format_local(m.started_at, zone)
        return (m.id, m.name, mode, start, f"{m.sent:,}/{m.total:,}", f"{m.failed:,}")
    if area == Area.SCHEDULED:
        when = (
            format_local(m.scheduled_at, zone)
            if m.state == State.SCHEDULED
            else f"queue #{m.position}"
        )
        return (m.id, m.name, mode, when, f"{m.total:,}")
    if area == Area.STANDBY:
        return (m.id, m.name, m.state_reason or "", f"{m.sent:,}", f"{m.total:,}")
    return (m.id, m.name, mode, format_local(m.finished_at, zone), f"{m.sent:,}", f"{m.failed:,}")


def render_details(details: dict, zone: tzinfo) -> str:
    lines = [f"Mailing {details['id']}: {details['name']}"]
    for label, key in (
        ("State", "state"),
        ("Why", "reason"),
        ("Mode", "mode"),
        ("Queue position", "position"),
        ("Subject", "subject"),
        ("From", "sender"),
    ):
        if details.get(key) is not None:
            lines.append(f"  {label + ':':16}{details[key]}")
    times = (
        ("Scheduled at", "scheduled_at"),
        ("Started", "started_at"),
        ("Finished", "finished_at"),
    )
    for label, key in times:
        if details.get(key):
            moment = datetime.fromisoformat(details[key])
            lines.append(f"  {label + ':':16}{format_local(moment, zone)}")
    lines.append(
        f"  {'Recipients:':16}{details['total']:,} total, {details['sent']:,} sent,"
        f" {details['failed']:,} failed, {details['remaining']:,} remaining"
    )
    if details["deferred"] or details["resent_in_doubt"]:
        lines.append(
            f"  {'':16}{details['deferred']:,} deferred (retrying),"
            f" {details['resent_in_doubt']:,} resent after an engine stopped mid-send"
        )
    if details["fields"]:
        lines.append(f"  {'Fields:':16}{', '.join(details['fields'])}")
    if details["last_errors"]:
        lines.append("  Last errors:")
        lines += [f"    {e['email']}: {e['reply']}" for e in details["last_errors"]]
    return "\n".join(lines)
