"""Who did what, as the dashboard tells it: the notices of other people's changes to the
mailings on screen, the activity panel and screen (today's changes, newest first), and the
notice of what came back about a mailing after it completed. Times in the operator's zone."""

from dataclasses import dataclass
from datetime import datetime, tzinfo

from sendstatus_tui.core.model.audit import Change, Source
from sendstatus_tui.core.model.models import AuditEntry
from sendstatus_tui.core.model.when import format_local, to_zone
from sendstatus_tui.core.reads.activity import CameBack
from sendstatus_tui.views.cells import quoted
from sendstatus_tui.views.layout import Column

# a change, as a verb in a sentence ("ops2 stopped 10 “Flash sale”")
VERBS = {
    Change.CREATED: "created",
    Change.SEND_NOW: "sent now",
    Change.SCHEDULED: "scheduled",
    Change.ENQUEUED: "queued",
    Change.MOVED: "moved",
    Change.STOPPED: "stopped",
    Change.DELETED: "deleted",
    Change.RETRIED: "retried",
    Change.SETTING: "set",
    Change.WINDOW: "window set",
    Change.RELAYS: "relays set",
    Change.STARTED: "started",
    Change.PROMOTED: "promoted",
    Change.INTERRUPTED: "interrupted",
    Change.COMPLETED: "completed",
    Change.TAKEOVER: "took over the lease",
    Change.FEEDBACK: "received feedback on",
    Change.ALERT: "alerted about",
}
# told otherwise: a completion and a guard's stop by their own notices, what came back by
# the notice of what came back
TOLD_ELSEWHERE = {Change.COMPLETED.value, Change.FEEDBACK.value}
GUARD = "guard"  # the user the guard records as (core/model/guard.py)


@dataclass
class AuditWatch:
    """What a dashboard has seen of the trail so far: the newest entry (None: none read
    yet), the newest change to a completed mailing, and the session it acts in."""

    session: str | None = None
    last_entry_id: int | None = None
    completed_changed_at: datetime | None = None
    activity_day: datetime | None = None  # the day the activity read last showed


def who(entry: AuditEntry) -> str:
    """The actor, short: "ops2", "ops2 via cli", "the engine", "the guard"."""
    if entry.os_user == GUARD:
        return "the guard"
    if entry.source in (Source.ENGINE.value, Source.INTAKE.value):
        return f"the {entry.source}"
    if entry.source == Source.DASHBOARD.value:
        return entry.os_user
    return f"{entry.os_user} via {entry.source}"


def verb(entry: AuditEntry) -> str:
    try:
        return VERBS[Change(entry.action)]
    except ValueError:  # an action a newer version recorded
        return entry.action


def what(entry: AuditEntry, zone: tzinfo) -> str:
    """The change and its object: "stopped 10 “Flash sale”", "scheduled 4 “Digest” for
    2030-03-04 15:00", "set rate = 36000/h"."""
    target = f"{entry.mailing_id} {quoted(entry.mailing_name or '')}" if entry.mailing_id else ""
    extra = ""
    if entry.scheduled_at is not None:
        extra = f"for {format_local(entry.scheduled_at, zone)}"
    elif entry.detail:
        extra = f"({entry.detail})" if target else entry.detail
    return " ".join(part for part in (verb(entry), target, extra) if part)


def change_notice(entry: AuditEntry, zone: tzinfo) -> str:
    """A change by someone else: "ops2 stopped 10 “Flash sale” at 14:00"."""
    at = to_zone(entry.at, zone).strftime("%H:%M")
    target = f" {entry.mailing_id} {quoted(entry.mailing_name or '')}" if entry.mailing_id else ""
    return f"{who(entry)} {verb(entry)}{target} at {at}"


def is_news(entry: AuditEntry, own_session: str | None, on_screen: set[int]) -> bool:
    """Whether a dashboard tells ``entry``: a change by someone else (another dashboard,
    the command line, the engine, the guard) to a mailing it shows, not told otherwise."""
    own = entry.session == own_session and entry.source == Source.DASHBOARD.value
    if own or entry.mailing_id not in on_screen or entry.action in TOLD_ELSEWHERE:
        return False
    # the guard's stop has a notice of its own, with the reason
    return not (entry.os_user == GUARD and entry.action == Change.STOPPED.value)


def came_back_notice(item: CameBack) -> str:
    """“November news”: 188 bounced, 2 complaints since it completed (as the completion's
    notice names it)."""
    parts = []
    if item.bounced:
        parts.append(f"{item.bounced:,} bounced")
    if item.blocked:
        parts.append(f"{item.blocked:,} blocked")
    if item.complaints:
        parts.append(f"{item.complaints:,} complaint{'' if item.complaints == 1 else 's'}")
    return f"{quoted(item.name)}: {', '.join(parts)} since it completed"


def activity_line(entry: AuditEntry, zone: tzinfo) -> str:
    """The panel's line: "14:00  ops2  stopped 10 “Flash sale”"."""
    at = to_zone(entry.at, zone).strftime("%H:%M")
    return f"{at}  {who(entry)}  {what(entry, zone)}"


# the activity screen's columns
COLUMNS = (
    Column("When", 16),
    Column("Who", 10, fits_values=True),
    Column("What", 30, grows=True),
)


def activity_row(entry: AuditEntry, zone: tzinfo) -> tuple[str, str, str]:
    return (format_local(entry.at, zone), who(entry), what(entry, zone))
