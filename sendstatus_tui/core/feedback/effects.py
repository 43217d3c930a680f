"""A report's effect, in one transaction: matched to a recipient by a signed code, kept in
the feedback table (once: its ``report_key`` is unique), then applied.

- hard bounce: the recipient, counted sent, becomes failed with class ``bounce`` (sent -1,
  failed +1, bounced +1); with ``suppress_bounces`` (default yes) its address is
  suppressed.
- blocked: failed with class ``blocked`` (blocked +1), never suppressed.
- soft: recorded only.
- complaint: the recipient stays sent; complained +1 (once per recipient), and its address
  is always suppressed.

A report with no valid code, about a deleted mailing or recipient, or about a recipient
that was never sent changes nothing. The audit trail gets one entry per mailing and hour,
kept up to date ("38 bounces, 1 complaint"), not one per report.
"""

import hashlib
import logging
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

import sqlalchemy as sa
from sqlmodel import Session, col, func, select

from sendstatus_tui.core.importing import suppression
from sendstatus_tui.core.model import audit, send_minutes, settings
from sendstatus_tui.core.model.feedback import Report, Verdict
from sendstatus_tui.core.model.models import (
    AuditEntry,
    FailureClass,
    Feedback,
    Mailing,
    Recipient,
    RecipientStatus,
    utc_now,
)
from sendstatus_tui.core.model.signing import signing_key
from sendstatus_tui.core.model.verp import verify

log = logging.getLogger("sendstatus.intake")

_REPLY_MAX = 500  # characters of a diagnostic kept as the recipient's reply


class Outcome(StrEnum):
    COUNTED = "counted"  # the recipient or the counters changed
    RECORDED = "recorded"  # kept, nothing else to do (soft bounce)
    NOT_A_BOUNCE = "not a bounce"
    UNMATCHED = "unmatched"  # no valid code, or its mailing or recipient is gone
    NO_EFFECT = "no effect"  # a recipient never sent, or already bounced
    DUPLICATE = "duplicate"  # this report was applied before


@dataclass(frozen=True)
class Applied:
    outcome: Outcome
    why: str  # for the intake's log line
    mailing_id: int | None = None
    recipient_id: int | None = None


def apply(session: Session, report: Report, now: datetime | None = None) -> Applied:
    """Applies ``report`` in the caller's transaction (commit it, then acknowledge the
    message: a report read again after a crash is a duplicate)."""
    now = now or utc_now()
    if report.verdict == Verdict.NOT_A_BOUNCE:
        return Applied(Outcome.NOT_A_BOUNCE, report.why)
    matched = _match(session, report)
    if isinstance(matched, str):
        return Applied(Outcome.UNMATCHED, matched)
    recipient, matched_by = matched
    assert recipient.id is not None
    mailing_id, recipient_id = recipient.mailing_id, recipient.id
    # the mailing row first, as the engine's records take it: counters move under its lock,
    # and a second intake with the same report waits here, then finds it applied
    mailing = session.get(Mailing, mailing_id, with_for_update=True, populate_existing=True)
    if mailing is None:
        return Applied(Outcome.UNMATCHED, f"mailing {mailing_id} is gone")
    row = Feedback(
        report_key=report_key(report.basis, recipient_id),
        mailing_id=mailing_id,
        recipient_id=recipient_id,
        kind=report.verdict.value,
        action=_short(report.action, 16),
        status=_short(report.status, 16),
        diagnostic=report.diagnostic,
        reporting_mta=report.reporting_mta,
        feedback_type=_short(report.feedback_type, 32),
        matched_by=matched_by,
        arrived_at=now,
    )
    if not _insert_once(session, row):
        return Applied(Outcome.DUPLICATE, "the same report again", mailing_id, recipient_id)
    session.refresh(recipient, with_for_update=True)
    came_back = (mailing.bounced + mailing.blocked, mailing.complained)
    effect = _effect(session, report, recipient, mailing)
    if effect is None:
        why = f"recipient {recipient_id} was never sent ({recipient.status}): no effect"
        if recipient.failure_class == FailureClass.BOUNCE:
            why = f"recipient {recipient_id} had bounced already: no effect"
        return Applied(Outcome.NO_EFFECT, why, mailing_id, recipient_id)
    row.counted = True
    session.add(row)
    mailing.updated_at = now
    session.add(mailing)
    session.flush()
    bounced, complained = mailing.bounced + mailing.blocked, mailing.complained
    send_minutes.add_feedback(
        session, mailing_id, bounced - came_back[0], complained - came_back[1], now
    )
    _summarise_hour(session, mailing, now)
    outcome = Outcome.RECORDED if report.verdict == Verdict.SOFT else Outcome.COUNTED
    return Applied(outcome, report.why, mailing_id, recipient_id)


def report_key(basis: str, recipient_id: int) -> str:
    return hashlib.sha256(f"{basis}\n{recipient_id}".encode()).hexdigest()


def _short(text: str | None, length: int) -> str | None:
    return None if text is None else text[:length]


def _match(session: Session, report: Report) -> tuple[Recipient, str] | str:
    """The recipient a report is about, by the first valid code: of the return path it was
    sent to, else of the signed header it quotes. A string says why none."""
    key = signing_key(session)
    if key is None:
        return "this database has no signing key: nothing can be matched"
    tried = False
    for codes, matched_by in (
        (report.return_codes, "return-path"),
        (report.header_codes, "header"),
    ):
        for code in codes:
            tried = True
            ids = verify(key, code)
            if ids is None:
                continue
            mailing_id, recipient_id = ids
            recipient = session.get(Recipient, recipient_id)
            if recipient is None or recipient.mailing_id != mailing_id:
                return f"mailing {mailing_id} or its recipient {recipient_id} is gone"
            return recipient, matched_by
    if tried:
        return "unknown or forged code: matches no recipient"
    return "no return path code and no signed header in it"


def _insert_once(session: Session, row: Feedback) -> bool:
    """Inserts ``row`` unless a row with its report_key exists (also one being inserted by
    another intake right now: the unique constraint decides, and this one waits for it)."""
    try:
        with session.begin_nested():
            session.add(row)
            session.flush()
    except sa.exc.IntegrityError:
        return False
    return True


def _effect(
    session: Session, report: Report, recipient: Recipient, mailing: Mailing
) -> bool | None:
    """Changes the recipient, counters and suppression list; returns True when it had an
    effect (a soft bounce's is to be recorded), None when it has none."""
    verdict = report.verdict
    status, failure_class = recipient.status, recipient.failure_class
    was_sent = status == RecipientStatus.SENT
    bounced_before = status == RecipientStatus.FAILED and failure_class in (
        FailureClass.BOUNCE,
        FailureClass.BLOCKED,
    )
    if verdict == Verdict.SOFT:
        return True if was_sent or bounced_before else None
    if verdict == Verdict.COMPLAINT:
        if not (was_sent or bounced_before):
            return None
        if not _complained_before(session, recipient):
            mailing.complained += 1
        reason = f"complaint ({report.feedback_type or 'abuse'}) about mailing {mailing.id}"
        suppression.add_entries(session, [(recipient.email, reason)])
        return True
    reply = _reply(report)
    if verdict == Verdict.BOUNCE:
        if was_sent:
            mailing.sent -= 1
            mailing.failed += 1
        elif status == RecipientStatus.FAILED and failure_class == FailureClass.BLOCKED:
            mailing.blocked -= 1  # a hard bounce after a block: the address is gone
        else:
            return None
        mailing.bounced += 1
        _fail(recipient, FailureClass.BOUNCE, reply)
        if settings.enabled(session, "suppress_bounces"):
            suppression.add_entries(session, [(recipient.email, f"bounce: {reply}")])
        return True
    # blocked
    if not was_sent:
        return None
    mailing.sent -= 1
    mailing.failed += 1
    mailing.blocked += 1
    _fail(recipient, FailureClass.BLOCKED, reply)
    return True


def _fail(recipient: Recipient, failure_class: str, reply: str) -> None:
    recipient.status = RecipientStatus.FAILED
    recipient.failure_class = failure_class
    recipient.last_reply = reply


def _reply(report: Report) -> str:
    """What the recipient's reply says of a bounce: status, diagnostic, who reported it."""
    parts = [report.status or "no status", report.diagnostic or "no diagnostic"]
    text = " ".join(" ".join(parts).split())
    if report.reporting_mta:
        text += f" (reported by {report.reporting_mta})"
    return text[:_REPLY_MAX]


def _complained_before(session: Session, recipient: Recipient) -> bool:
    statement = select(func.count()).where(
        Feedback.recipient_id == recipient.id,
        Feedback.kind == Verdict.COMPLAINT.value,
        col(Feedback.counted).is_(True),
    )
    return session.exec(statement).one() > 0


_WORDS = {
    Verdict.BOUNCE: ("bounce", "bounces"),
    Verdict.BLOCKED: ("blocked", "blocked"),
    Verdict.COMPLAINT: ("complaint", "complaints"),
    Verdict.SOFT: ("delayed", "delayed"),
}


def _summarise_hour(session: Session, mailing: Mailing, now: datetime) -> None:
    """The mailing's audit entry for this hour, written or brought up to date."""
    start = now.replace(minute=0, second=0, microsecond=0)
    end = start + timedelta(hours=1)
    kinds = session.exec(
        select(Feedback.kind, func.count())
        .where(
            Feedback.mailing_id == mailing.id,
            col(Feedback.counted).is_(True),
            col(Feedback.arrived_at) >= start,
            col(Feedback.arrived_at) < end,
        )
        .group_by(Feedback.kind)
    ).all()
    counts = Counter(dict(kinds))
    detail = ", ".join(
        f"{counts[verdict]:,} {words[counts[verdict] != 1]}"
        for verdict, words in _WORDS.items()
        if counts[verdict]
    )
    entry = session.exec(
        select(AuditEntry).where(
            AuditEntry.mailing_id == mailing.id,
            AuditEntry.action == audit.Change.FEEDBACK.value,
            col(AuditEntry.at) >= start,
            col(AuditEntry.at) < end,
        )
    ).first()
    if entry is None:
        actor = audit.Actor.here(audit.Source.INTAKE)
        audit.record(session, audit.Change.FEEDBACK, mailing, detail, actor=actor, now=now)
    else:
        entry.detail = detail
        session.add(entry)
