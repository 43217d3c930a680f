"""The guard: a sending mailing that bounces, draws complaints or is refused too much stops
itself, before it harms the sender's reputation.

Each sending mailing is watched over a window: its last 5,000 recipients (all of them while
fewer), counted from where its current sending began (sending it again starts afresh).

- hard bounces and blocks, of the recipients the relay accepted: more than
  ``guard_hard_bounces`` (5 %) once at least 500 were accepted;
- complaints, of the same: more than ``guard_complaints`` (0.1 %) once at least 1,000;
- refusals at send time (5xx), of the recipients tried: more than ``guard_refusals``
  (20 %) once at least 200 were tried.

The order of sending: each record hands the recipients it writes the next numbers of the
mailing's ``tries`` counter (under the mailing's row lock) into ``Recipient.tried_seq``;
``guard_from`` is the counter when the current sending began. A window is then an indexed
query: the partial index ``ix_recipient_tried`` holds (mailing, tried_seq, status, failure
class) of tried recipients only, so counting the last 5,000 reads 5,000 index entries and
no table row, and an import writes nothing into it. That is cheaper and simpler than
counters kept per window, which a bounce arriving hours later would have to find the
window of anyway. The engine counts refusals only after a batch that had one (or that
brought the window to its minimum): a healthy mailing costs no query at all. The bounce
and complaint shares are counted after the intake applied a report about a mailing still
sending; a completed mailing cannot be stopped.

Crossing a limit stops the mailing as an operator's stop would, with the reason ("stopped
by guard: 612 hard bounces in the last 5,000 (12.2 %)"), recorded in the audit trail as
the guard's doing. It runs in a transaction of its own, which takes the transitions lock
before any row lock, as every transition does.
"""

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

import sqlalchemy as sa
from sqlmodel import Session, col, func, select

from sendstatus_tui.core.model import lifecycle, settings
from sendstatus_tui.core.model.audit import Actor, Source
from sendstatus_tui.core.model.models import (
    FailureClass,
    Feedback,
    Mailing,
    Recipient,
    RecipientStatus,
)
from sendstatus_tui.core.model.states import State
from sendstatus_tui.core.store.store import lock_transitions
from sendstatus_tui.core.store.together import Reading, read_one

WINDOW = 5_000
REASON_PREFIX = "stopped by guard"
_PENDING = RecipientStatus.PENDING
_BOUNCES = (FailureClass.BOUNCE, FailureClass.BLOCKED)


@dataclass(frozen=True)
class Limit:
    key: str  # the setting
    minimum: int  # recipients in the window before the share counts
    words: tuple[str, str]  # what is counted, one and many


class TryCounts(Protocol):
    """A mailing's try counter and where its guard's windows start (a Mailing, or its two
    columns read by a record that writes them itself)."""

    tries: int
    guard_from: int


HARD_BOUNCES = Limit("guard_hard_bounces", 500, ("hard bounce", "hard bounces"))
COMPLAINTS = Limit("guard_complaints", 1_000, ("complaint", "complaints"))
REFUSALS = Limit("guard_refusals", 200, ("refusal", "refusals"))


def share_of(session: Session, limit: Limit) -> float | None:
    """The limit's share (0.05 for 5 %), None while it is off."""
    return read_one(session, share_reading(limit))


@functools.cache
def share_reading(limit: Limit) -> Reading[float | None]:
    return settings.value_reading(limit.key).then(
        lambda stored: _share(stored or settings.DEFAULTS.get(limit.key))
    )


def _share(stored: str | None) -> float | None:
    if stored is None or stored == "off":
        return None
    return float(stored.removesuffix("%")) / 100


def is_guard_stop(reason: str | None) -> bool:
    return bool(reason) and str(reason).startswith(REASON_PREFIX)


# --- the order of sending ------------------------------------------------------------------


def was_tried(status: str, failure_class: str | None) -> bool:
    """Whether an outcome is a try at the relay: not handed back untried, and not a message
    we could not build (class error)."""
    return status != _PENDING and failure_class != FailureClass.ERROR


def numbering(mailing: TryCounts, outcomes: Sequence[tuple[str, str | None]]) -> list[int | None]:
    """The try number of each (status, failure class) about to be recorded (None: not a
    try), taken from the mailing's counter; the caller holds the mailing's row lock."""
    numbers: list[int | None] = []
    tries = mailing.tries  # counted here, set once: each set of a model's field is slow
    for status, failure_class in outcomes:
        if was_tried(status, failure_class):
            tries += 1
            numbers.append(tries)
        else:
            numbers.append(None)
    mailing.tries = tries
    return numbers


def refusals_worth_counting(
    mailing: TryCounts, tried_before: int, outcomes: Sequence[tuple[str, str | None]]
) -> bool:
    """Whether a record may have pushed the refusal share over its limit: the batch had a
    refusal, or it brought the window to the minimum. Otherwise the share cannot have grown
    (a try that was not refused takes the place of one that was, or of none)."""
    if any(fc == FailureClass.REFUSED for _, fc in outcomes):
        return True
    before = tried_before - mailing.guard_from
    return before < REFUSALS.minimum <= mailing.tries - mailing.guard_from


# --- the windows ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Window:
    size: int  # recipients in it
    counted: int  # of them, those the limit counts


def refusal_window(session: Session, mailing: Mailing) -> Window:
    recent = (
        sa.select(col(Recipient.failure_class))
        .where(
            col(Recipient.mailing_id) == mailing.id,
            col(Recipient.tried_seq) > mailing.guard_from,
        )
        .order_by(col(Recipient.tried_seq).desc())
        .limit(WINDOW)
        .subquery()
    )
    refused = sa.case((recent.c.failure_class == FailureClass.REFUSED, 1), else_=0)
    size, counted = session.execute(
        sa.select(func.count(), func.coalesce(func.sum(refused), 0)).select_from(recent)
    ).one()
    return Window(int(size), int(counted))


def feedback_windows(session: Session, mailing: Mailing) -> tuple[Window, Window]:
    """(hard bounces and blocks, complaints) among the last recipients the relay accepted."""
    accepted = session.execute(
        sa.select(col(Recipient.tried_seq), col(Recipient.failure_class))
        .where(
            col(Recipient.mailing_id) == mailing.id,
            col(Recipient.tried_seq) > mailing.guard_from,
            sa.or_(
                col(Recipient.status) == RecipientStatus.SENT,
                col(Recipient.failure_class).in_(_BOUNCES),
            ),
        )
        .order_by(col(Recipient.tried_seq).desc())
        .limit(WINDOW)
    ).all()
    if not accepted:
        return Window(0, 0), Window(0, 0)
    bounced = sum(failure_class in _BOUNCES for _, failure_class in accepted)
    oldest = min(seq for seq, _ in accepted)
    complained = session.exec(
        select(func.count(func.distinct(Feedback.recipient_id)))
        .join(Recipient, col(Recipient.id) == col(Feedback.recipient_id))
        .where(
            Feedback.mailing_id == mailing.id,
            Feedback.kind == "complaint",
            col(Feedback.counted).is_(True),
            col(Recipient.tried_seq) >= oldest,
        )
    ).one()
    return Window(len(accepted), bounced), Window(len(accepted), int(complained))


def _crossed(session: Session, limit: Limit, window: Window, of: str) -> str | None:
    """The stop reason when ``window`` crosses ``limit``, else None."""
    share = share_of(session, limit)
    if share is None or window.size < limit.minimum or window.counted <= share * window.size:
        return None
    percent = 100 * window.counted / window.size
    shown = f"{percent:.1f}" if percent >= 1 else f"{percent:.2f}"
    words = limit.words[window.counted != 1]
    counted = f"{window.counted:,} {words} in the last {window.size:,}{of}"
    return f"{REASON_PREFIX}: {counted} ({shown} %)"


# --- the checks ----------------------------------------------------------------------------


def check_refusals(session: Session, mailing_id: int, now: datetime | None = None) -> str | None:
    """After the engine recorded a batch with refusals: stops the mailing if too many of its
    last recipients tried were refused; the reason, or None."""
    mailing = _sending(session, mailing_id)
    if mailing is None:
        return None
    reason = _crossed(session, REFUSALS, refusal_window(session, mailing), " tried")
    if reason is not None:
        lifecycle.stop(session, mailing_id, now, actor=actor(Source.ENGINE), reason=reason)
    return reason


def check_feedback(session: Session, mailing_id: int, now: datetime | None = None) -> str | None:
    """After the intake applied a bounce or complaint: stops the mailing if too many of its
    last recipients sent bounced or complained; the reason, or None."""
    mailing = _sending(session, mailing_id)
    if mailing is None:
        return None
    bounces, complaints = feedback_windows(session, mailing)
    reason = _crossed(session, HARD_BOUNCES, bounces, "") or _crossed(
        session, COMPLAINTS, complaints, ""
    )
    if reason is not None:
        lifecycle.stop(session, mailing_id, now, actor=actor(Source.INTAKE), reason=reason)
    return reason


def actor(source: Source) -> Actor:
    """The guard, as the audit trail names it: who is the guard, from the engine or the
    intake that found the limit crossed."""
    return Actor(user="guard", source=source)


def _sending(session: Session, mailing_id: int) -> Mailing | None:
    """The mailing, locked, while it is sending (the transitions lock first, as every
    transition takes it)."""
    lock_transitions(session)
    if lifecycle.find(session, mailing_id) is None:
        return None  # deleted meanwhile
    mailing = lifecycle.get_for_update(session, mailing_id)
    return mailing if mailing.state == State.SENDING else None
