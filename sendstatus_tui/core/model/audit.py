"""The audit trail: every change to the mailings, with who made it, from where and when.

Each entry is written in the transaction of the change it records, so the trail and the
mailings never disagree. Who: the OS user, the user who ran sudo (``SUDO_USER``) and the SSH
client's address (``SSH_CONNECTION``/``SSH_CLIENT``) when there are; from where: the command
line, a dashboard or an engine. Operators' changes are recorded as the process's operator
(``operating_from`` sets where from, the command line by default); the engine's as the
engine. Entries are also logged (logger ``sendstatus.audit``), so the engine log names them.
"""

import getpass
import logging
import os
import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sqlmodel import Session, col, func, select

from sendstatus_tui.core.model.models import AuditEntry, Mailing, utc_now
from sendstatus_tui.core.model.states import Mode

log = logging.getLogger("sendstatus.audit")


class Source(StrEnum):
    CLI = "cli"
    DASHBOARD = "dashboard"
    ENGINE = "engine"
    INTAKE = "intake"  # bounces and complaints read back (core/feedback)


class Change(StrEnum):
    """What was done (the ``action`` of an entry; JSON keeps these names)."""

    CREATED = "created"
    SEND_NOW = "send-now"
    SCHEDULED = "scheduled"
    ENQUEUED = "enqueued"
    MOVED = "moved"
    STOPPED = "stopped"
    DELETED = "deleted"
    RETRIED = "retried"
    SETTING = "setting"
    WINDOW = "window"  # a mailing's sending window changed
    RELAYS = "relays"  # the relays a mailing goes through changed
    STARTED = "started"  # its scheduled time came
    PROMOTED = "promoted"  # head of the sequential queue, into Sending now
    INTERRUPTED = "interrupted"
    COMPLETED = "completed"
    TAKEOVER = "takeover"  # an engine took the lease over from another one
    FEEDBACK = "feedback"  # bounces and complaints of one hour: one entry, kept up to date
    ALERT = "alert"  # an incident told (core/coordination/incidents.py), or its end


@dataclass(frozen=True)
class Actor:
    user: str
    source: Source
    sudo_user: str | None = None
    ssh_from: str | None = None
    session: str | None = None  # which process (a dashboard's own, see ``new_session``)

    @classmethod
    def here(cls, source: Source) -> "Actor":
        """Whoever runs this process, as the environment tells."""
        ssh = os.environ.get("SSH_CONNECTION") or os.environ.get("SSH_CLIENT") or ""
        return cls(
            user=_os_user(),
            source=source,
            sudo_user=os.environ.get("SUDO_USER") or None,
            ssh_from=ssh.split()[0] if ssh.split() else None,
            session=_session,
        )

    def __str__(self) -> str:
        return describe(self.user, self.sudo_user, self.ssh_from, self.source)


_operator_source = Source.CLI
# this process's session: every entry it writes carries it
_session = uuid.uuid4().hex[:16]


def operating_from(source: Source) -> None:
    """Where this process's operators act from (a dashboard says so when it opens)."""
    global _operator_source
    _operator_source = source


def new_session() -> str:
    """Starts a session of its own for what this process records from now on (a dashboard
    does when it opens, so that it can tell its own changes from everyone else's)."""
    global _session
    _session = uuid.uuid4().hex[:16]
    return _session


def current_session() -> str:
    return _session


def operator() -> Actor:
    return Actor.here(_operator_source)


def engine() -> Actor:
    return Actor.here(Source.ENGINE)


def record(
    session: Session,
    change: Change,
    mailing: Mailing | None = None,
    detail: str | None = None,
    *,
    actor: Actor | None = None,
    now: datetime | None = None,
    scheduled_at: datetime | None = None,
) -> AuditEntry:
    """Adds an entry to the caller's transaction: ``change`` to ``mailing`` (None for a
    change of no one mailing, e.g. a setting), with ``detail`` in the operator's words (and
    ``scheduled_at``, the time a schedule set: shown in each reader's zone).
    ``actor`` defaults to this process's operator. The retry command records with
    ``record(session, Change.RETRIED, mailing, "4xx: 120 recipients")``."""
    actor = actor or operator()
    entry = AuditEntry(
        at=now or utc_now(),
        mailing_id=mailing.id if mailing else None,
        mailing_name=mailing.name if mailing else None,
        action=change.value,
        detail=detail,
        scheduled_at=scheduled_at,
        source=actor.source.value,
        os_user=actor.user,
        sudo_user=actor.sudo_user,
        ssh_from=actor.ssh_from,
        session=actor.session,
    )
    session.add(entry)
    session.flush()
    subject = f"mailing {mailing.id} {mailing.name!r}" if mailing else "sendstatus"
    what = " ".join(
        [change.value]
        + ([detail] if detail else [])
        + ([f"at {scheduled_at:%Y-%m-%d %H:%M} UTC"] if scheduled_at else [])
    )
    log.info("%s: %s (by %s)", subject, what, actor)
    return entry


def history(
    session: Session, mailing_id: int | None = None, limit: int | None = None
) -> list[AuditEntry]:
    """The entries, oldest first: all of them, or those of one mailing (deleted or not);
    with ``limit``, the newest ``limit`` of them."""
    statement = select(AuditEntry)
    if mailing_id is not None:
        statement = statement.where(AuditEntry.mailing_id == mailing_id)
    newest_first = statement.order_by(col(AuditEntry.id).desc())  # the order of commits
    if limit is not None:
        newest_first = newest_first.limit(limit)
    return list(reversed(session.exec(newest_first).all()))


# the changes that plan a mailing, and the mode each gives it
PLANS = {
    Change.SEND_NOW: Mode.IMMEDIATE,
    Change.SCHEDULED: Mode.AT,
    Change.ENQUEUED: Mode.SEQUENTIAL,
}


def last_plan(session: Session, mailing_id: int) -> AuditEntry | None:
    """The newest change that planned the mailing (send now, schedule, enqueue), if any."""
    statement = (
        select(AuditEntry)
        .where(AuditEntry.mailing_id == mailing_id, col(AuditEntry.action).in_(list(PLANS)))
        .order_by(col(AuditEntry.id).desc())
        .limit(1)
    )
    return session.exec(statement).first()


def unused_mailing_id(session: Session) -> int | None:
    """The id a new mailing takes on SQLite, which would give a deleted last mailing's id
    again: one past every id used, by a mailing or in the trail (which records every
    delete). None on PostgreSQL, whose sequence never goes back."""
    if session.get_bind().dialect.name != "sqlite":
        return None
    in_use = session.exec(select(func.max(Mailing.id))).one() or 0
    recorded = session.exec(select(func.max(AuditEntry.mailing_id))).one() or 0
    return max(in_use, recorded) + 1


def describe(user: str, sudo_user: str | None, ssh_from: str | None, source: str) -> str:
    """Who and from where, as one phrase: ``root (sudo by ann) from 10.0.0.7 via cli``."""
    who = f"{user} (sudo by {sudo_user})" if sudo_user else user
    if ssh_from:
        who += f" from {ssh_from}"
    return f"{who} via {source}"


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no login name and no passwd entry (some containers)
        return f"uid {os.getuid()}"
