"""One mailing in full: the text of ``show`` and the details screen's counters and errors,
both from a MailingDetails and the shared cells."""

from datetime import tzinfo

from ..core.details import LastError, MailingDetails
from ..core.states import STATE_WORDS
from ..core.when import format_named
from .cells import moment, number


def title(details: MailingDetails) -> str:
    return f"Mailing {details.id}: {details.name}"


def error_line(error: LastError) -> str:
    return f"{error.email}: {error.reply}"


def show_text(details: MailingDetails, zone: tzinfo) -> str:
    """``sendstatus show``: what is known, label by label (what is not known is left out)."""
    lines = [title(details)]
    for label, value in (
        ("State", STATE_WORDS[details.state]),
        ("Why", details.state_reason),
        ("Mode", details.mode),
        ("Queue position", details.position),
        ("Subject", details.subject),
        ("From", details.sender),
    ):
        if value is not None:
            lines.append(f"  {label + ':':16}{value}")
    for label, when in (
        ("Scheduled at", details.scheduled_at),
        ("Started", details.started_at),
        ("Finished", details.finished_at),
    ):
        if when:
            lines.append(f"  {label + ':':16}{format_named(when, zone)}")
    lines.append(
        f"  {'Recipients:':16}{number(details.total)} total, {number(details.sent)} sent,"
        f" {number(details.failed)} failed, {number(details.remaining)} remaining"
    )
    if details.deferred or details.resent_in_doubt:
        lines.append(
            f"  {'':16}{number(details.deferred)} deferred (retrying),"
            f" {number(details.resent_in_doubt)} resent in doubt (no reply, or the engine"
            " stopped mid-send)"
        )
    if details.failed_by_class:
        lines.append(f"  {'Failed, why:':16}{failure_classes(details)}")
    if details.waiting_reason:
        retry = details.waiting_until
        until = f"; retry at {format_named(retry, zone)}" if retry else ""
        lines.append(f"  {'Waiting:':16}{details.waiting_reason}{until}")
    if details.fields:
        lines.append(f"  {'Fields:':16}{', '.join(details.fields)}")
    if details.last_errors:
        lines.append("  Last errors:")
        lines += [f"    {error_line(error)}" for error in details.last_errors]
    return "\n".join(lines)


def counters_text(details: MailingDetails, zone: tzinfo) -> str:
    """The details screen's counters, in aligned columns."""
    reason = f" ({details.state_reason})" if details.state_reason else ""
    position = f", position {details.position}" if details.position else ""
    lines = [
        f"State        {details.state}{reason}",
        f"Mode         {details.mode or '—'}{position}",
        f"Subject      {details.subject}",
        f"From         {details.sender}",
        f"Scheduled    {moment(details.scheduled_at, zone)}"
        f"    Started {moment(details.started_at, zone)}"
        f"    Finished {moment(details.finished_at, zone)}",
        "",
        f"Recipients   {number(details.total)}",
        f"Sent         {number(details.sent)}",
        f"Failed       {number(details.failed)}"
        + (f" — {failure_classes(details)}" if details.failed_by_class else ""),
        f"Deferred     {number(details.deferred)} (retrying)",
        f"Remaining    {number(details.remaining)}",
        f"Resent in doubt (no reply, or the engine stopped mid-send):"
        f" {number(details.resent_in_doubt)}",
    ]
    if details.waiting_reason:
        lines.append(f"Waiting      {waiting(details, zone)}")
    return "\n".join(lines)


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
    "error": "not sent",
}


def waiting(details: MailingDetails, zone: tzinfo) -> str:
    """What keeps the engine from sending it, and when it tries again."""
    retry = f"; retry at {moment(details.waiting_until, zone)}" if details.waiting_until else ""
    return f"{details.waiting_reason}{retry}"


def errors_text(details: MailingDetails) -> str:
    return "\n".join(error_line(error) for error in details.last_errors) or "none"
