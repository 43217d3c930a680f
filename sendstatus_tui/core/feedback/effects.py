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
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, func, select

from sendstatus_tui.core.importing import suppression
from sendstatus_tui.core.model import audit, send_minutes, settings
from sendstatus_tui.core.model.feedback import Report, ReportVerdict
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

    @property
    def counted(self) -> bool:
        """Whether it changed the recipient or the counters (or was recorded)."""
        return self.outcome in (Outcome.COUNTED, Outcome.RECORDED)


def apply(session: Session, report: Report, now: datetime | None = None) -> Applied:
    """Applies ``report`` in the caller's transaction (commit it, then acknowledge the
    message: a report read again after a crash is a duplicate)."""
    return apply_all(session, [report], now)[0]


def apply_all(
    session: Session, reports: list[Report], now: datetime | None = None
) -> list[Applied]:
    """Applies ``reports`` in order, in the caller's transaction, as ``apply`` would one by
    one, with a few statements for them all (an intake applies its messages in batches):
    the mailings named are locked first (in id order, as the engine's records take them:
    a second intake with the same reports waits there, then finds them applied), then their
    recipients are read, the reports already kept looked up, the rows written, the
    addresses suppressed, and the audit summary of each mailing brought up to date once."""
    now = now or utc_now()
    key = signing_key(session)
    matched = [_code_ids(key, report) for report in reports]
    named = [ids for ids in matched if not isinstance(ids, str)]
    mailings = _locked_mailings(session, sorted({mailing_id for mailing_id, _, _ in named}))
    came_back = {key: (m.bounced + m.blocked, m.complained) for key, m in mailings.items()}
    recipients = _recipients(session, [recipient_id for _, recipient_id, _ in named])
    kept = _kept(session, reports, matched)
    batch = _Batch(settings.enabled(session, "suppress_bounces"))
    applied = []
    for report, ids in zip(reports, matched, strict=True):
        applied.append(_apply_one(session, report, ids, mailings, recipients, kept, batch, now))
    _write_recipients(session, [r for r in recipients.values() if r.changed])
    if batch.suppress:
        suppression.add_uncounted(session, batch.suppress)
    session.flush()
    if batch.rows:
        session.execute(sa.insert(Feedback), batch.rows)
    added: dict[int, Counter[ReportVerdict]] = {}
    for report, outcome in zip(reports, applied, strict=True):
        if outcome.counted and outcome.mailing_id is not None:
            added.setdefault(outcome.mailing_id, Counter())[report.verdict] += 1
    for mailing_id in sorted(added):
        mailing = mailings[mailing_id]
        _summarise_hour(session, mailing, now, added[mailing_id])
        # what came back in this minute, for the rates over time (a hard bounce after a
        # block moves it from blocked to bounced: no more came back)
        bounced, complained = came_back[mailing_id]
        send_minutes.add_feedback(
            session,
            mailing_id,
            mailing.bounced + mailing.blocked - bounced,
            mailing.complained - complained,
            now,
        )
    return applied


@dataclass
class _Batch:
    suppress_bounces: bool
    suppress: list[tuple[str, str | None]] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)  # of the feedback table
    complained: set[int] = field(default_factory=set)  # recipients, in this batch


_Ids = tuple[int, int, str] | str  # (mailing, recipient, matched by), or why none


@dataclass
class _Recipient:
    """A recipient as a batch reads it, and changes it until the batch writes it back:
    read and written as rows, not ORM objects (a batch's hundred cost more than their SQL)."""

    id: int
    mailing_id: int
    email: str
    status: str
    failure_class: str | None
    last_reply: str | None = None
    changed: bool = False


def _apply_one(
    session: Session,
    report: Report,
    ids: _Ids,
    mailings: dict[int, Mailing],
    recipients: dict[int, _Recipient],
    kept: set[str],
    batch: _Batch,
    now: datetime,
) -> Applied:
    if report.verdict == ReportVerdict.NOT_A_BOUNCE:
        return Applied(Outcome.NOT_A_BOUNCE, report.why)
    if isinstance(ids, str):
        return Applied(Outcome.UNMATCHED, ids)
    mailing_id, recipient_id, matched_by = ids
    mailing, recipient = mailings.get(mailing_id), recipients.get(recipient_id)
    if mailing is None or recipient is None or recipient.mailing_id != mailing_id:
        return Applied(
            Outcome.UNMATCHED, f"mailing {mailing_id} or its recipient {recipient_id} is gone"
        )
    key = report_key(report.basis, recipient_id)
    if key in kept:
        return Applied(Outcome.DUPLICATE, "the same report again", mailing_id, recipient_id)
    kept.add(key)
    row = {  # inserted with the batch's others, at its end
        "report_key": key,
        "mailing_id": mailing_id,
        "recipient_id": recipient_id,
        "kind": report.verdict.value,
        "counted": False,
        "action": _short(report.action, 16),
        "status": _short(report.status, 16),
        "diagnostic": report.diagnostic,
        "reporting_mta": report.reporting_mta,
        "feedback_type": _short(report.feedback_type, 32),
        "matched_by": matched_by,
        "arrived_at": now,
    }
    batch.rows.append(row)
    effect = _effect(session, report, recipient, mailing, batch)
    if effect is None:
        why = f"recipient {recipient_id} was never sent ({recipient.status}): no effect"
        if recipient.failure_class == FailureClass.BOUNCE:
            why = f"recipient {recipient_id} had bounced already: no effect"
        return Applied(Outcome.NO_EFFECT, why, mailing_id, recipient_id)
    row["counted"] = True
    mailing.updated_at = now  # the mailing is this session's (locked): flushed with it
    outcome = Outcome.RECORDED if report.verdict == ReportVerdict.SOFT else Outcome.COUNTED
    return Applied(outcome, report.why, mailing_id, recipient_id)


def report_key(basis: str, recipient_id: int) -> str:
    return hashlib.sha256(f"{basis}\n{recipient_id}".encode()).hexdigest()


def _short(text: str | None, length: int) -> str | None:
    return None if text is None else text[:length]


def _code_ids(key: bytes | None, report: Report) -> _Ids:
    """The mailing and recipient a report names, by its first valid code: of the return path
    it was sent to, else of the signed header it quotes. A string says why none."""
    if report.verdict == ReportVerdict.NOT_A_BOUNCE:
        return "not a bounce"
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
            if ids is not None:
                return ids[0], ids[1], matched_by
    if tried:
        return "unknown or forged code: matches no recipient"
    return "no return path code and no signed header in it"


def _locked_mailings(session: Session, ids: list[int]) -> dict[int, Mailing]:
    mailings = {}
    for mailing_id in ids:
        mailing = session.get(Mailing, mailing_id, with_for_update=True, populate_existing=True)
        if mailing is not None:
            mailings[mailing_id] = mailing
    return mailings


def _recipients(session: Session, ids: list[int]) -> dict[int, _Recipient]:
    """The recipients, locked (after their mailings)."""
    if not ids:
        return {}
    statement = (
        sa.select(
            col(Recipient.id),
            col(Recipient.mailing_id),
            col(Recipient.email),
            col(Recipient.status),
            col(Recipient.failure_class),
        )
        .where(col(Recipient.id).in_(sorted(set(ids))))
        .with_for_update()
    )
    return {row.id: _Recipient(*row) for row in session.execute(statement)}


def _write_recipients(session: Session, changed: list[_Recipient]) -> None:
    """The batch's changes to its recipients, in one statement (by primary key)."""
    if changed:
        session.execute(
            sa.update(Recipient),
            [
                {
                    "id": r.id,
                    "status": r.status,
                    "failure_class": r.failure_class,
                    "last_reply": r.last_reply,
                }
                for r in changed
            ],
        )


def _kept(session: Session, reports: list[Report], matched: list[_Ids]) -> set[str]:
    """Which of the reports' keys are in the feedback table already (applied before: read
    under their mailings' locks, so a second intake's commit is seen)."""
    keys = [
        report_key(report.basis, ids[1])
        for report, ids in zip(reports, matched, strict=True)
        if not isinstance(ids, str)
    ]
    if not keys:
        return set()
    statement = select(Feedback.report_key).where(col(Feedback.report_key).in_(keys))
    return set(session.exec(statement))


def _effect(
    session: Session, report: Report, recipient: _Recipient, mailing: Mailing, batch: _Batch
) -> bool | None:
    """Changes the recipient and counters, and notes the address to suppress; returns True
    when it had an effect (a soft bounce's is to be recorded), None when it has none."""
    verdict = report.verdict
    status, failure_class = recipient.status, recipient.failure_class
    was_sent = status == RecipientStatus.SENT
    bounced_before = status == RecipientStatus.FAILED and failure_class in (
        FailureClass.BOUNCE,
        FailureClass.BLOCKED,
    )
    if verdict == ReportVerdict.SOFT:
        return True if was_sent or bounced_before else None
    if verdict == ReportVerdict.COMPLAINT:
        if not (was_sent or bounced_before):
            return None
        if not _complained_before(session, recipient, batch):
            mailing.complained += 1
            batch.complained.add(recipient.id or 0)
        reason = f"complaint ({report.feedback_type or 'abuse'}) about mailing {mailing.id}"
        batch.suppress.append((recipient.email, reason))
        return True
    reply = _reply(report)
    if verdict == ReportVerdict.BOUNCE:
        if was_sent:
            mailing.sent -= 1
            mailing.failed += 1
        elif status == RecipientStatus.FAILED and failure_class == FailureClass.BLOCKED:
            mailing.blocked -= 1  # a hard bounce after a block: the address is gone
        else:
            return None
        mailing.bounced += 1
        _fail(recipient, FailureClass.BOUNCE, reply)
        if batch.suppress_bounces:
            batch.suppress.append((recipient.email, f"bounce: {reply}"))
        return True
    # blocked
    if not was_sent:
        return None
    mailing.sent -= 1
    mailing.failed += 1
    mailing.blocked += 1
    _fail(recipient, FailureClass.BLOCKED, reply)
    return True


def _fail(recipient: _Recipient, failure_class: str, reply: str) -> None:
    recipient.status = RecipientStatus.FAILED
    recipient.failure_class = failure_class
    recipient.last_reply = reply
    recipient.changed = True


def _reply(report: Report) -> str:
    """What the recipient's reply says of a bounce: status, diagnostic, who reported it."""
    parts = [report.status or "no status", report.diagnostic or "no diagnostic"]
    text = " ".join(" ".join(parts).split())
    if report.reporting_mta:
        text += f" (reported by {report.reporting_mta})"
    return text[:_REPLY_MAX]


def _complained_before(session: Session, recipient: _Recipient, batch: _Batch) -> bool:
    if recipient.id in batch.complained:
        return True
    statement = select(func.count()).where(
        Feedback.recipient_id == recipient.id,
        Feedback.kind == ReportVerdict.COMPLAINT.value,
        col(Feedback.counted).is_(True),
    )
    return session.exec(statement).one() > 0


_WORDS = {
    ReportVerdict.BOUNCE: ("bounce", "bounces"),
    ReportVerdict.BLOCKED: ("blocked", "blocked"),
    ReportVerdict.COMPLAINT: ("complaint", "complaints"),
    ReportVerdict.SOFT: ("delayed", "delayed"),
}


_VERDICT_OF_WORD = {word: verdict for verdict, words in _WORDS.items() for word in words}


def _summarise_hour(
    session: Session, mailing: Mailing, now: datetime, added: Counter[ReportVerdict]
) -> None:
    """The mailing's audit entry for this hour, written or brought up to date with what
    this batch ``added``: the entry's counts plus the batch's (under the mailing's lock, so
    that two intakes add up), not a count of the hour's rows, which would read more rows
    with each batch."""
    start = now.replace(minute=0, second=0, microsecond=0)
    end = start + timedelta(hours=1)
    entry = session.exec(
        select(AuditEntry).where(
            AuditEntry.mailing_id == mailing.id,
            AuditEntry.action == audit.Change.FEEDBACK.value,
            col(AuditEntry.at) >= start,
            col(AuditEntry.at) < end,
        )
    ).first()
    before = _counts_in(entry.detail) if entry is not None else Counter[ReportVerdict]()
    counts = before + added if before is not None else _counted(session, mailing, start, end)
    detail = ", ".join(
        f"{counts[verdict]:,} {words[counts[verdict] != 1]}"
        for verdict, words in _WORDS.items()
        if counts[verdict]
    )
    if entry is None:
        actor = audit.Actor.here(audit.Source.INTAKE)
        audit.record(session, audit.Change.FEEDBACK, mailing, detail, actor=actor, now=now)
    else:
        entry.detail = detail
        session.add(entry)


def _counts_in(detail: str | None) -> Counter[ReportVerdict] | None:
    """The counts an entry's detail gives ("38 bounces, 1 complaint"); None for a detail
    in other words."""
    counts = Counter[ReportVerdict]()
    for part in (detail or "").split(", "):
        number, _, word = part.partition(" ")
        verdict = _VERDICT_OF_WORD.get(word)
        if verdict is None or not number.replace(",", "").isdigit():
            return None
        counts[verdict] += int(number.replace(",", ""))
    return counts


def _counted(
    session: Session, mailing: Mailing, start: datetime, end: datetime
) -> Counter[ReportVerdict]:
    """The hour's counted reports about the mailing, by kind, from its rows."""
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
    return Counter({ReportVerdict(kind): count for kind, count in kinds})
