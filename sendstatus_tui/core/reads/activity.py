"""What changed lately, as a dashboard reads it at every refresh: the audit entries newer
than the last one it saw (by id: cheap, the primary key), today's entries for its activity
panel, and what came back about completed mailings since they completed."""

import functools
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlmodel import Session, col, func, select

from sendstatus_tui.core.model.feedback import ReportVerdict
from sendstatus_tui.core.model.models import AuditEntry, Feedback, Mailing
from sendstatus_tui.core.model.states import State
from sendstatus_tui.core.store.together import Reading, Statement, columns_of, read_one, rows_as

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)  # before any change: every later one is news
# at most this many entries come back from one read (a burst by a script is summed up)
NEWS_AT_MOST = 200


@functools.cache
def latest_entry_reading() -> Reading[int]:
    """The newest entry's id (0: none yet)."""
    return Reading(sa.select(func.max(AuditEntry.id)), lambda rows: rows[0][0] or 0)


def entries_after_reading(after_id: int, limit: int = NEWS_AT_MOST) -> Reading[list[AuditEntry]]:
    """The entries written since the one numbered ``after_id``, oldest first."""
    return Reading(_entries_after(limit), _oldest_first, {"after_entry": after_id})


@functools.cache
def _entries_after(limit: int) -> Statement:
    return (
        sa.select(*columns_of(AuditEntry))
        .where(col(AuditEntry.id) > sa.bindparam("after_entry"))
        .order_by(col(AuditEntry.id))
        .limit(limit)
    )


def _oldest_first(rows: list[tuple[Any, ...]]) -> list[AuditEntry]:
    return sorted(_entries(rows), key=lambda entry: entry.id or 0)


def entries_since(
    session: Session, since: datetime | None = None, limit: int | None = None
) -> list[AuditEntry]:
    """The entries from ``since`` on (None: all of them), newest first, ``limit`` at most."""
    statement = sa.select(*columns_of(AuditEntry))
    if since is not None:
        statement = statement.where(col(AuditEntry.at) >= since)
    statement = statement.order_by(col(AuditEntry.id).desc())
    if limit is not None:
        statement = statement.limit(limit)
    return read_one(session, Reading(statement, _entries))


_entries = rows_as(AuditEntry)


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


@functools.cache
def newest_completed_change_reading() -> Reading[datetime]:
    """When a completed mailing last changed (EPOCH: none did): what came before is not
    news."""
    statement = sa.select(func.max(Mailing.updated_at)).where(col(Mailing.state) == State.COMPLETED)
    return Reading(statement, lambda rows: rows[0][0] or EPOCH)


_COMPLETED_CHANGED = sa.select(
    col(Mailing.id), col(Mailing.name), col(Mailing.finished_at), col(Mailing.updated_at)
).where(
    col(Mailing.state) == State.COMPLETED, col(Mailing.updated_at) > sa.bindparam("changed_after")
)


class Changed(NamedTuple):
    mailing_id: int
    name: str
    finished_at: datetime | None
    updated_at: datetime


def completed_changed_reading(after: datetime) -> Reading[list[Changed]]:
    """The completed mailings changed (bounces, complaints) after ``after``."""
    return Reading(
        _COMPLETED_CHANGED, lambda rows: [Changed(*row) for row in rows], {"changed_after": after}
    )


def came_back(session: Session, changed: list[Changed]) -> list[CameBack]:
    """What came back about each mailing of ``changed`` since it completed (feedback
    counted), those about which something did."""
    # (one query per mailing changed, which is rare: feedback comes in now and then)
    found = []
    for mailing_id, name, finished_at, _ in changed:
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
        found.append(
            CameBack(
                mailing_id,
                name,
                kinds[ReportVerdict.BOUNCE.value],
                kinds[ReportVerdict.BLOCKED.value],
                kinds[ReportVerdict.COMPLAINT.value],
            )
        )
    return [item for item in found if item.any]
