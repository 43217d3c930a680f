"""One mailing in full: the text of ``show`` and the details screen's counters and errors,
both from a MailingDetails and the shared cells."""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo

from sendstatus_tui.core.coordination.domain_rate import Throttle
from sendstatus_tui.core.model.models import utc_now
from sendstatus_tui.core.model.states import State
from sendstatus_tui.core.model.waiting import WaitingKind
from sendstatus_tui.core.model.when import format_named, to_zone, zone_label
from sendstatus_tui.core.reads.details import EngineOnIt, LastError, MailingDetails
from sendstatus_tui.core.reads.failed import FailedRecipient
from sendstatus_tui.core.reads.throughput import CHART_MINUTES
from sendstatus_tui.views.cells import (
    as_planned,
    clock_time,
    countdown,
    eta,
    moment,
    number,
    per_minute,
    share_of,
    state_shown,
    window_opens,
)


def title(details: MailingDetails) -> str:
    return f"Mailing {details.id}: {details.name}"


def error_line(error: LastError) -> str:
    return f"{error.email}: {error.reply}"


def show_text(details: MailingDetails, zone: tzinfo) -> str:
    """``sendstatus show``: what is known, label by label (what is not known is left out)."""
    lines = [title(details)]
    for label, value in (
        ("State", state_shown(details.state)),
        ("Why", details.state_reason),
        ("Mode", details.mode),
        ("Queue position", details.position),
        ("Subject", details.subject),
        ("From", details.sender),
    ):
        if value is not None:
            lines.append(f"  {label + ':':16}{value}")
    if details.mode is None and details.planned_as is not None:
        lines.append(f"  {'Was planned:':16}{last_plan(details, zone)}")
    if details.scheduled_at:
        typed = as_planned(details.scheduled_at, details.scheduled_zone, zone)
        lines.append(f"  {'Scheduled at:':16}{format_named(details.scheduled_at, zone)}{typed}")
    if details.window:
        lines.append(f"  {'Window:':16}{details.window}")
    for label, when in (("Started", details.started_at), ("Finished", details.finished_at)):
        if when:
            lines.append(f"  {label + ':':16}{format_named(when, zone)}")
    lines.append(
        f"  {'Recipients:':16}{number(details.total)} total, {number(details.sent)} sent,"
        f" {number(details.failed)} failed, {number(details.remaining)} remaining"
    )
    if details.suppressed:
        lines.append(
            f"  {'':16}{number(details.suppressed)} suppressed (put on the suppression list"
            " after the import: never sent)"
        )
    # one line each: together they ran past 80 columns
    if details.deferred:
        lines.append(f"  {'':16}{deferred(details)}")
    if details.resent_in_doubt:
        lines.append(
            f"  {'':16}{number(details.resent_in_doubt)} resent in doubt (no reply, or the"
            " engine stopped mid-send)"
        )
    if details.speed is not None:
        lines.append(f"  {'Speed:':16}{speed_now(details)}")
    hour = details.last_hour()
    if any(hour.values()):
        lines.append(f"  {'Last hour:':16}{last_hour(hour)}")
    if came_back_any(details):
        lines.append(f"  {'Came back:':16}{came_back(details)}")
        lines.append(f"  {'':16}(bounced and blocked are counted failed)")
    if details.failed_by_class:
        lines.append(f"  {'Failed, why:':16}{failure_classes(details)}")
    if details.first_failed:
        more = details.failed - len(details.first_failed)
        lines.append(
            "  First failed:"
            + (f" ({number(more)} more: sendstatus failed {details.id})" if more else "")
        )
        lines += [f"    {failed_line(row)}" for row in details.first_failed]
    if details.waiting_kind is not None:
        lines.append(f"  {'Waiting:':16}{waiting(details, zone, format_named)}")
    lines += [f"  {'Slowed down:':16}{throttled(t, zone)}" for t in details.throttled]
    for engine in details.engines:
        lines.append(f"  {'Relay:':16}{relay_connections(engine)}")
    if details.fields:
        lines.append(f"  {'Fields:':16}{', '.join(details.fields)}")
    lines.append(f"  {'Unsubscribe:':16}{unsubscribe(details)}")
    if details.last_errors:
        lines.append("  Last errors:")
        lines += [f"    {error_line(error)}" for error in details.last_errors]
    return "\n".join(lines)


def speed_now(details: MailingDetails) -> str:
    """e.g. "1,200/min now, done in 12m 30s"; "nothing goes out now"."""
    if not details.speed:
        return "nothing goes out now"
    left = eta(details.remaining, details.speed, details.window, details.read_at or utc_now())
    return f"{per_minute(details.speed)} now" + (f", done in {left}" if left else "")


def last_hour(hour: dict[str, int]) -> str:
    """e.g. "3,456 sent, 12 failed; came back: 3 bounced or blocked, 0 complaints"."""
    text = f"{number(hour['sent'])} sent, {number(hour['failed'])} failed"
    if hour["bounced"] or hour["complained"]:
        text += (
            f"; came back: {number(hour['bounced'])} bounced or blocked,"
            f" {number(hour['complained'])} complaints"
        )
    return text


@dataclass(frozen=True)
class RateChart:
    """The details' send rate over time: per minute, as messages per second (the last one
    the speed now while it sends), from ``start`` to ``end``."""

    samples: list[float]
    start: datetime
    end: datetime


def rate_chart(details: MailingDetails, now: datetime) -> RateChart | None:
    """Its last hour while it sends, the speed now last; else the last hour it sent,
    within the stored day (None: nothing sent in that hour)."""
    sending = details.state == State.SENDING
    end = now if sending else details.throughput.last_sending_minute()
    if end is None:
        return None
    counts = details.throughput.handled_per_minute(end)
    if not any(counts):
        return None
    # from its first minute in the hour on, and two at least (one would fill the chart)
    first = min(next(i for i, count in enumerate(counts) if count), len(counts) - 2)
    samples = [count / 60 for count in counts[first:]]
    if sending:
        samples[-1] = details.speed or 0.0
    start = end - timedelta(minutes=CHART_MINUTES - 1 - first)
    return RateChart(samples, start, end)


def chart_axis(chart: RateChart, sending: bool, zone: tzinfo) -> tuple[str, str]:
    """The chart's left and right labels: "12m 00s ago" and "now" while it sends, else
    the clock times of its first and last minutes."""
    if sending:
        return time_ago((chart.end - chart.start).total_seconds()), "now"
    return clock_time(chart.start, zone)[:5], clock_time(chart.end, zone)[:5]


def came_back_heading(details: MailingDetails, now: datetime) -> str:
    """What came back in the last hour, e.g. "Came back in the last hour: 3 bounced or
    blocked, 1 complaint (per minute below)"."""
    hour = details.throughput.totals_since(now - timedelta(minutes=CHART_MINUTES - 1))
    if not (hour.bounced or hour.complained):
        return "Came back in the last hour: nothing"
    complaints = "complaint" if hour.complained == 1 else "complaints"
    return (
        f"Came back in the last hour: {number(hour.bounced)} bounced or blocked,"
        f" {number(hour.complained)} {complaints} (per minute below)"
    )


def came_back_any(details: MailingDetails) -> bool:
    return bool(details.bounced or details.blocked or details.complained or details.unsubscribed)


def accepted(details: MailingDetails) -> int:
    """What the relay accepted: sent, and what bounced or was blocked since (no longer
    counted sent). The share of each kind of feedback is of these."""
    return details.sent + details.bounced + details.blocked


def came_back(details: MailingDetails) -> str:
    """e.g. "188 bounced (2.1%), 3 blocked (0.03%), 2 complaints (0.02%), 0 unsubscribed
    (0.0%) of 9,000 sent": each kind, and its share of what the relay accepted."""
    whole = accepted(details)
    kinds = (
        (details.bounced, "bounced"),
        (details.blocked, "blocked"),
        (details.complained, "complaint" if details.complained == 1 else "complaints"),
        (details.unsubscribed, "unsubscribed"),
    )
    counted = ", ".join(
        f"{number(count)} {word} ({share_of(count, whole)})" for count, word in kinds
    )
    return f"{counted} of {number(whole)} sent"


def unsubscribe(details: MailingDetails) -> str:
    """The List-Unsubscribe a mailing's messages carry, or that they carry none."""
    ways = [way for way in (details.unsubscribe_url, details.unsubscribe_mailto) if way]
    if not ways:
        return "none (no List-Unsubscribe header)"
    one_click = " (one-click)" if details.unsubscribe_url else ""
    return ", ".join(ways) + one_click


def counters_text(details: MailingDetails, zone: tzinfo) -> str:
    """The details screen's counters, in aligned columns, 80 columns wide at most; its
    times in ``zone``, which it names."""
    reason = f" ({details.state_reason})" if details.state_reason else ""
    plan = details.mode or f"none while parked{planned_before(details, zone)}"
    position = f", position {details.position}" if details.position else ""
    lines = [
        f"State        {state_shown(details.state)}{reason}",
        f"Plan         {plan}{position}",
        f"Subject      {details.subject}",
        f"From         {details.sender}",
        f"Started      {moment(details.started_at, zone):<16}"
        f"    Scheduled {moment(details.scheduled_at, zone)}",
        f"Finished     {moment(details.finished_at, zone):<16}    (times in {zone_label(zone)})",
        *planned_in(details, zone),
        *([f"Window       {details.window}"] if details.window else []),
        f"Recipients   {number(details.total)}: {number(details.sent)} sent,"
        f" {number(details.remaining)} remaining, {deferred(details)}",
        f"Failed       {number(details.failed)}"
        + (f" — {failure_classes(details)}" if details.failed_by_class else ""),
        *[f"             {failed_line(row)}" for row in details.first_failed[:FIRST_ROWS_SHOWN]],
        f"Resent in doubt (no reply, or the engine stopped mid-send):"
        f" {number(details.resent_in_doubt)}",
    ]
    if details.speed is not None:
        lines.append(f"Speed        {speed_now(details)}")
    if came_back_any(details):
        lines.append(f"Came back    {came_back(details)}")
    if details.waiting_kind is not None:
        lines.append(f"Waiting      {waiting(details, zone)}")
    lines += [f"Slowed down  {throttled(t, zone)}" for t in details.throttled]
    lines += [f"Relay        {relay_connections(engine)}" for engine in details.engines]
    return "\n".join(lines)


def deferred(details: MailingDetails) -> str:
    """The deferred count, and how many of them wait for their domain's limit rather than
    for a retry after a relay's deferral."""
    held = details.held_for_domains
    if not held:
        return f"{number(details.deferred)} deferred (retrying)"
    retrying = details.deferred - held
    if not retrying:
        return f"{number(held)} deferred (held for a domain limit)"
    return (
        f"{number(details.deferred)} deferred ({number(held)} held for a domain limit,"
        f" {number(retrying)} retrying)"
    )


def throttled(throttle: Throttle, zone: tzinfo) -> str:
    """e.g. "gmail.com throttled (4.7.28): 10/s, since 10:02 (recovering to 20/s)"."""
    since = datetime.fromtimestamp(throttle.since, UTC)
    return (
        f"{throttle.domain} throttled ({throttle.status}): {per_second(throttle.per_second)},"
        f" since {to_zone(since, zone).strftime('%H:%M')}"
        f" (recovering to {per_second(throttle.ceiling)})"
    )


def per_second(rate: float) -> str:
    """e.g. "10/s", "2.5/s", "30/min" (under one a second)."""
    if rate >= 1:
        return f"{rate:.3g}/s"
    return f"{rate * 60:.3g}/min"


def planned_in(details: MailingDetails, zone: tzinfo) -> list[str]:
    """The line that gives a scheduled time as it was typed, in another zone than the
    reader's (none when it was typed in theirs)."""
    typed = as_planned(details.scheduled_at, details.scheduled_zone, zone)
    return [f"             {typed.strip(' ()')}"] if typed else []


def planned_before(details: MailingDetails, zone: tzinfo) -> str:
    """How a parked mailing had been planned, e.g. " (was: at 2030-03-04 10:00)"."""
    return f" (was: {last_plan(details, zone)})" if details.planned_as else ""


def last_plan(details: MailingDetails, zone: tzinfo) -> str:
    """e.g. "at 2030-03-04 10:00", "immediate", "sequential"."""
    at = f" {moment(details.planned_for, zone)}" if details.planned_for else ""
    return f"{details.planned_as}{at}"


def relay_connections(engine: EngineOnIt) -> str:
    """e.g. "12 connections from mailer-1 pid 4242 (connections busy 95% at 300 msg/s)":
    the pid tells apart the engines of one host."""
    count = f"{engine.connections} connection{'' if engine.connections == 1 else 's'}"
    why = f" ({engine.connections_reason})" if engine.connections_reason else ""
    return f"{count} from {engine.host} pid {engine.pid}{why}"


# failed rows under the Failed counter of the details screen (``show`` has a few more)
FIRST_ROWS_SHOWN = 3


def failed_line(row: FailedRecipient) -> str:
    return f"{row.email} ({row.failure_class}): {row.reply or 'no reply'}"


def rate_heading(samples: list[float], sending: bool = True) -> str:
    """The sparkline's scale: its top and, while it is sending, the latest value, in
    messages per minute (a mailing that is not sending has no current rate)."""
    if not samples:
        return "Send rate"
    top = f"top of the graph {per_minute(max(samples)) or '0/min'}"
    if not sending:
        return f"Send rate while it was sending: {top}"
    return f"Send rate: now {per_minute(samples[-1]) or '0/min'}, {top}"


def time_ago(seconds: float) -> str:
    """The left end of the sparkline's time axis, e.g. "1m 00s ago"."""
    return f"{countdown(timedelta(seconds=seconds)).removeprefix('in ')} ago"


def failure_classes(details: MailingDetails) -> str:
    """e.g. "298 refused (5xx), 2 no reply (doubt)", by class."""
    return ", ".join(
        f"{number(count)} {FAILURE_CLASS_NAMES.get(cls, cls)} ({cls})"
        for cls, count in sorted(details.failed_by_class.items())
    )


FAILURE_CLASS_NAMES = {
    "5xx": "refused",
    "4xx": "deferred too often",
    "doubt": "no reply",
    "bounce": "bounced",
    "blocked": "blocked",
    "error": "not sent",
}


def waiting(
    details: MailingDetails, zone: tzinfo, stamp: Callable[[datetime, tzinfo], str] = moment
) -> str:
    """What keeps the engine from sending it, and when it tries again, as ``stamp`` writes
    the time (or, outside its window, when the window opens). Held for a domain's limit is
    no failure: the next of its messages goes then."""
    again = details.waiting_until
    if details.waiting_kind == WaitingKind.WINDOW:
        when = f" ({format_named(again, zone)})" if again else ""
        return f"{window_opens(again, zone)}{when}"
    then = "next at" if details.waiting_kind == WaitingKind.DOMAIN_LIMIT else "retry at"
    when = f"; {then} {stamp(again, zone)}" if again else ""
    return f"{details.waiting_reason}{when}"


def errors_text(details: MailingDetails) -> str:
    """The last errors, the relay's own first while the engine waits for it (a relay it
    cannot reach fails no recipient, but is the error the operator needs)."""
    relay_down = details.waiting_kind == WaitingKind.RELAY_DOWN
    relay = [f"relay: {details.waiting_reason}"] if relay_down else []
    lines = relay + [error_line(error) for error in details.last_errors]
    return "\n".join(lines) or "none"
