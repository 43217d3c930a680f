"""Incidents: what needs a person, found by the leading engine and kept in the database.

Each pass (``reconcile``) compares what is wrong now (``Trouble``) with the incidents open:
a new trouble opens an incident, due at once or after its delay (a relay down for 5 min);
one that went away ends its incident, or drops it silently if nobody was told yet. Each
incident is told once when due and once when it ends (``to_tell``, ``told``): the flags are
stored, so an engine that takes the lead later repeats nothing. Telling is at least once: a
leader killed between telling and recording it tells it again.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlmodel import Session, col, or_, select

from sendstatus_tui.core.coordination import heartbeats
from sendstatus_tui.core.model import audit, settings
from sendstatus_tui.core.model.guard import is_guard_stop
from sendstatus_tui.core.model.models import AlertIncident, Mailing
from sendstatus_tui.core.model.states import State
from sendstatus_tui.core.model.waiting import WaitingKind

RELAY_DOWN, STALLED, GUARD_STOP, ENGINE_LOST, COMPLETED = (
    "relay_down",
    "stalled",
    "guard_stop",
    "engine_lost",
    "completed",
)
# told once, with no end to tell: a completion
ONCE = {COMPLETED}
# how far back a completion is still news (a leader that starts later tells no older ones)
COMPLETION_NEWS = timedelta(hours=1)
SENDING = (State.STARTING, State.SENDING)


@dataclass(frozen=True)
class Trouble:
    key: str  # what it is about: one incident per key at a time
    kind: str
    reason: str
    mailing: Mailing | None = None
    since: datetime | None = None  # when it began, if known (else: when first seen)
    delay: timedelta = timedelta(0)  # told only once it lasted this long


@dataclass(frozen=True)
class Alert:
    """One thing to tell: an incident opening (``ended`` False) or ending."""

    incident_id: int
    kind: str
    ended: bool
    mailing_id: int | None
    mailing_name: str | None
    reason: str
    since: datetime
    ended_at: datetime | None

    def as_json(self, host: str) -> dict[str, object]:
        return {
            "kind": self.kind,
            "state": "ended" if self.ended else "open",
            "mailing": None
            if self.mailing_id is None
            else {"id": self.mailing_id, "name": self.mailing_name},
            "reason": self.reason,
            "since": _iso(self.since),
            "ended_at": _iso(self.ended_at),
            "host": host,
        }


@dataclass
class Progress:
    """What the leader saw of each sending mailing's counts, and since when (kept in its
    memory: a new leader starts watching afresh, and may tell a stall later, never twice)."""

    seen: dict[int, tuple[int, datetime]]

    def stalled_since(self, mailing: Mailing, now: datetime) -> datetime:
        assert mailing.id is not None
        done = mailing.sent + mailing.failed
        count, since = self.seen.get(mailing.id, (-1, now))
        if count != done:
            since = now
        self.seen[mailing.id] = (done, since)
        return since


def troubles(session: Session, now: datetime, progress: Progress) -> list[Trouble]:
    """What is wrong now."""
    relay_down = timedelta(seconds=settings.seconds(_setting(session, "alert_relay_down")))
    stalled_after = timedelta(seconds=settings.seconds(_setting(session, "alert_stalled")))
    found: list[Trouble] = []
    sending = session.exec(select(Mailing).where(col(Mailing.state).in_(SENDING))).all()
    for mailing in sending:
        if mailing.waiting_kind == WaitingKind.RELAY_DOWN:
            found.append(
                Trouble(
                    f"{RELAY_DOWN}:{mailing.id}",
                    RELAY_DOWN,
                    f"waits for its relay: {mailing.waiting_reason}",
                    mailing,
                    mailing.waiting_since,
                    relay_down,
                )
            )
        since = progress.stalled_since(mailing, now)
        # one that waits (for its relays, its window) sends nothing by plan or is told so
        if mailing.remaining and mailing.waiting_kind is None:
            found.append(
                Trouble(
                    f"{STALLED}:{mailing.id}",
                    STALLED,
                    f"sent nothing since {_iso(since)} with {mailing.remaining:,} to send",
                    mailing,
                    since,
                    stalled_after,
                )
            )
    found += _guard_stops(session)
    found += _lost_engines(session, now)
    if settings.enabled(session, "alert_completed"):
        found += _completions(session, now)
    live = {m.id for m in sending}
    progress.seen = {key: value for key, value in progress.seen.items() if key in live}
    return found


def reconcile(session: Session, found: list[Trouble], now: datetime) -> None:
    """Opens an incident for each new trouble, ends those whose trouble went away."""
    open_rows = session.exec(
        select(AlertIncident).where(col(AlertIncident.open_key).is_not(None))
    ).all()
    by_key = {row.open_key: row for row in open_rows}
    wanted = {trouble.key for trouble in found}
    for trouble in found:
        if trouble.key not in by_key:
            session.add(_incident(trouble, now))
    for row in open_rows:
        if row.open_key in wanted:
            continue
        if row.kind in ONCE:  # no longer news: its key is free, and it has no end to tell
            if row.told_open:
                row.open_key = None
            continue
        if row.told_open:
            row.open_key, row.ended_at = None, now
        else:
            session.delete(row)  # it went away before anyone was told: nothing to tell
    session.flush()


def to_tell(session: Session, now: datetime) -> list[Alert]:
    """The openings now due and the endings not told yet, oldest first."""
    rows = session.exec(
        select(AlertIncident)
        .where(
            or_(
                col(AlertIncident.told_open).is_(False) & (col(AlertIncident.due_at) <= now),
                col(AlertIncident.told_open).is_(True)
                & col(AlertIncident.ended_at).is_not(None)
                & col(AlertIncident.told_end).is_(False),
            )
        )
        .order_by(col(AlertIncident.id))
    ).all()
    return [_alert(row) for row in rows]


def told(session: Session, alert: Alert) -> None:
    """Records that ``alert`` was told: on its incident, and in the audit trail, where the
    dashboard's activity lists the alerts of the day with the changes."""
    row = session.get(AlertIncident, alert.incident_id)
    if row is None:
        return
    if alert.ended:
        row.told_end = True
    else:
        row.told_open = True
    mailing = session.get(Mailing, alert.mailing_id) if alert.mailing_id is not None else None
    detail = f"{alert.kind} ended" if alert.ended else f"{alert.kind}: {alert.reason}"
    audit.record(session, audit.Change.ALERT, mailing, detail, actor=audit.engine())


def of_the_day(session: Session, since: datetime) -> list[AlertIncident]:
    """The incidents told since ``since`` (the dashboard's activity), oldest first."""
    return list(
        session.exec(
            select(AlertIncident)
            .where(col(AlertIncident.told_open).is_(True), col(AlertIncident.due_at) >= since)
            .order_by(col(AlertIncident.due_at))
        ).all()
    )


def _guard_stops(session: Session) -> list[Trouble]:
    parked = session.exec(select(Mailing).where(Mailing.state == State.STANDBY)).all()
    return [
        Trouble(f"{GUARD_STOP}:{m.id}", GUARD_STOP, m.state_reason or "", m, m.updated_at)
        for m in parked
        if is_guard_stop(m.state_reason)
    ]


def _lost_engines(session: Session, now: datetime) -> list[Trouble]:
    rows = heartbeats.engines(session)
    lost = heartbeats.lost_ids(rows, now)
    return [
        Trouble(
            f"{ENGINE_LOST}:{row.id}",
            ENGINE_LOST,
            f"engine {row.host} pid {row.pid} silent since {_iso(row.heartbeat_at)}",
            since=row.heartbeat_at,
        )
        for row in rows
        if row.id in lost
    ]


def _completions(session: Session, now: datetime) -> list[Trouble]:
    recent = session.exec(
        select(Mailing).where(
            Mailing.state == State.COMPLETED, col(Mailing.finished_at) >= now - COMPLETION_NEWS
        )
    ).all()
    return [
        Trouble(
            # a mailing sent again completes again: a new incident
            f"{COMPLETED}:{m.id}:{m.finished_at.timestamp():.0f}",
            COMPLETED,
            f"completed: {m.sent:,} sent, {m.failed:,} failed",
            m,
            m.finished_at,
        )
        for m in recent
        if m.finished_at is not None
    ]


def _incident(trouble: Trouble, now: datetime) -> AlertIncident:
    since = trouble.since or now
    mailing = trouble.mailing
    return AlertIncident(
        open_key=trouble.key,
        kind=trouble.kind,
        mailing_id=mailing.id if mailing else None,
        mailing_name=mailing.name if mailing else None,
        reason=trouble.reason,
        since=since,
        # a delay counts from when it began, when that is known (a stall), else from now
        due_at=since + trouble.delay,
        ended_at=now if trouble.kind in ONCE else None,
        told_end=trouble.kind in ONCE,
    )


def _alert(row: AlertIncident) -> Alert:
    assert row.id is not None
    return Alert(
        row.id,
        row.kind,
        row.told_open,  # an incident already told open is told ending
        row.mailing_id,
        row.mailing_name,
        row.reason,
        row.since,
        row.ended_at if row.told_open else None,
    )


def _setting(session: Session, key: str) -> str:
    value = settings.read_or_default(session, key)
    assert value is not None  # every alert_ duration has a default
    return value


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z") if moment else None
