"""What changed lately, as a dashboard reads it at every refresh: the audit entries newer
than the last one it saw (by id: cheap, the primary key), today's entries for its activity
panel, and what came back about completed mailings since they completed."""

from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlmodel import Session, col, func, select

from sendstatus_tui.core.model.feedback import ReportVerdict
from sendstatus_tui.core.model.models import AuditEntry, Feedback, Mailing
from sendstatus_tui.core.model.states import State

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)  # before any change: every later one is news
# at most this many entries come back from one read (a burst by a script is summed up)
NEWS_AT_MOST = 200


def latest_entry_id(session: Session) -> int:
    """The newest entry's id (0: none yet)."""
    return session.exec(select(func.max(AuditEntry.id))).one() or 0


def entries_after(session: Session, after_id: int, limit: int = NEWS_AT_MOST) -> list[AuditEntry]:
    """The entries written since the one numbered ``after_id``, oldest first."""
    statement = (
        select(AuditEntry)
        .where(col(AuditEntry.id) > after_id)
        .order_by(col(AuditEntry.id))
        .limit(limit)
    )
    return list(session.exec(statement).all())


def entries_since(
    session: Session, since: datetime | None = None, limit: int | None = None
) -> list[AuditEntry]:
    """The entries from ``since`` on (None: all of them), newest first, ``limit`` at most."""
    statement = select(AuditEntry)
    if since is not None:
        statement = statement.where(col(AuditEntry.at) >= since)
    statement = statement.order_by(col(AuditEntry.id).desc())
    if limit is not None:
        statement = statement.limit(limit)
    return list(session.exec(statement).all())


@dataclass(frozen=True)
class CameBack:
    """What came back about a completed mailing since it completed (feedback counted)."""

    mailing_id: int
    name: str
    bounced: int = 0
    blocked: int = 0
    complaints: int = 0

    @property
    def any(self) -> bool:
        return bool(self.bounced or self.blocked or self.complaints)


def completed_changed_after(
    session: Session, after: datetime | None
) -> tuple[list[CameBack], datetime | None]:
    """The completed mailings changed (bounces, complaints) after ``after``, with what came
    back since each completed, and the newest change seen (the next call's ``after``).
    With ``after`` None, only the newest change is read: what came before is not news."""
    # (one query per mailing changed, which is rare: feedback comes in now and then)
    changed = select(func.max(Mailing.updated_at)).where(Mailing.state == State.COMPLETED)
    if after is None:
        return [], session.exec(changed).one() or EPOCH
    rows = session.exec(
        select(Mailing.id, Mailing.name, Mailing.finished_at, Mailing.updated_at).where(
            Mailing.state == State.COMPLETED, col(Mailing.updated_at) > after
        )
    ).all()
    newest = max((updated for *_, updated in rows), default=after)
    came_back = []
    for mailing_id, name, finished_at, _ in rows:
        assert mailing_id is not None
        kinds = Counter(
            dict(
                session.exec(
                    select(Feedback.kind, func.count())
                    .where(
                        Feedback.mailing_id == mailing_id,
                        col(Feedback.counted).is_(True),
                        col(Feedback.arrived_at) >= finished_at,
                    )
                    .group_by(Feedback.kind)
                ).all()
            )
        )
        came_back.append(
            CameBack(
                mailing_id,
                name,
                kinds[ReportVerdict.BOUNCE.value],
                kinds[ReportVerdict.BLOCKED.value],
                kinds[ReportVerdict.COMPLAINT.value],
            )
        )
    return [item for item in came_back if item.any], newest
