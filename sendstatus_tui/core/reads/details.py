"""One mailing in full, as ``show`` and the details screen tell it: a typed object read in
one transaction, with ``as_json()`` for ``show --json``."""

import dataclasses
import json
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlmodel import Session, select

from sendstatus_tui.core.coordination import domain_rate, heartbeats
from sendstatus_tui.core.coordination.deliveries import DEFERRED, failed_by_class, last_errors
from sendstatus_tui.core.model import audit, settings
from sendstatus_tui.core.model.domain_limits import stored_limits
from sendstatus_tui.core.model.models import Mailing, Recipient, utc_now
from sendstatus_tui.core.model.retry import CLASSES
from sendstatus_tui.core.model.send_minutes import MINUTES_KEPT
from sendstatus_tui.core.model.states import Mode, State
from sendstatus_tui.core.model.waiting import WaitingKind
from sendstatus_tui.core.reads.failed import FailedRecipient, failed_recipients
from sendstatus_tui.core.reads.listing import iso, summary
from sendstatus_tui.core.reads.throughput import Throughput, read_throughput


@dataclass(frozen=True)
class EngineOnIt:
    """An engine sending the mailing, with its connections to the relay."""

    id: str
    host: str
    pid: int
    connections: int
    connections_reason: str


@dataclass(frozen=True)
class LastError:
    email: str
    reply: str
    at: datetime


@dataclass(frozen=True)
class MailingDetails:
    id: int
    name: str
    state: State
    mode: Mode | None
    state_reason: str | None  # stored as text: decided later, stopped, interrupted: ...
    position: int | None
    scheduled_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    created_at: datetime
    updated_at: datetime
    subject: str
    sender: str
    has_text_body: bool
    has_html_body: bool
    fields: list[str]
    total: int
    sent: int
    failed: int
    deferred: int
    suppressed: int
    remaining: int
    resent_in_doubt: int
    recipients: dict[str, int]  # recipients by status
    failed_by_class: dict[str, int]  # failed recipients by class: 5xx, 4xx, doubt, error
    # what keeps the engine from sending it now, in the engine's words, and when it tries
    # again (its kind and since when: below)
    waiting_reason: str | None
    waiting_until: datetime | None
    last_errors: list[LastError]
    unsubscribe_url: str | None
    unsubscribe_mailto: str | None
    first_failed: list[FailedRecipient]  # the first few (``sendstatus failed`` lists all)
    engines: list[EngineOnIt]  # the live engines sending it
    # how it was last planned (from its history): told once it is parked without a mode
    planned_as: Mode | None
    planned_for: datetime | None  # the time it was scheduled at, for Mode.AT
    # what came back after the send (core/feedback): bounced and blocked are also failed
    bounced: int = 0
    blocked: int = 0
    complained: int = 0
    unsubscribed: int = 0
    scheduled_zone: str | None = None  # the zone its scheduled time was typed in
    window: str | None = None  # the days and hours it may send in, naming their zone
    waiting_kind: WaitingKind | None = None  # what it waits for, if anything
    waiting_since: datetime | None = None
    # its stored minutes of the last day, and its speed now (messages per second, only
    # while it is sending: a stopped mailing has no current rate)
    throughput: Throughput = Throughput()
    speed: float | None = None
    read_at: datetime | None = None  # when these figures were read
    # the recipient domains slowed down by their provider, while it sends
    throttled: tuple[domain_rate.Throttle, ...] = ()
    # of ``deferred``, those never tried: held back for their domain's limit, not retrying
    held_for_domains: int = 0

    def came_back_rates(self) -> dict[str, float | None]:
        accepted = self.sent + self.bounced + self.blocked
        counts = {
            "bounced": self.bounced,
            "blocked": self.blocked,
            "complained": self.complained,
            "unsubscribed": self.unsubscribed,
        }
        return {
            key: round(count / accepted, 6) if accepted else None for key, count in counts.items()
        }

    def last_hour(self) -> dict[str, int]:
        """What the last hour's minutes hold: sent, failed, and what came back."""
        if self.read_at is None:
            return {"sent": 0, "failed": 0, "bounced": 0, "complained": 0}
        hour = self.throughput.totals_since(self.read_at - timedelta(minutes=59))
        return {
            "sent": hour.sent,
            "failed": hour.failed,
            "bounced": hour.bounced,
            "complained": hour.complained,
        }

    def as_json(self) -> dict[str, object]:
        """Everything ``show --json`` tells: the ``ls --json`` fields and the rest."""
        return {
            **summary(self),
            "subject": self.subject,
            "sender": self.sender,
            "has_text_body": self.has_text_body,
            "has_html_body": self.has_html_body,
            "fields": self.fields,
            "deferred": self.deferred,
            "held_for_domains": self.held_for_domains,
            "resent_in_doubt": self.resent_in_doubt,
            "created_at": iso(self.created_at),
            "updated_at": iso(self.updated_at),
            "recipients": self.recipients,
            "failed_by_class": self.failed_by_class,
            "waiting_reason": self.waiting_reason,
            "waiting_until": iso(self.waiting_until),
            "unsubscribe_url": self.unsubscribe_url,
            "unsubscribe_mailto": self.unsubscribe_mailto,
            "first_failed": [row.as_json() for row in self.first_failed],
            "engines": [dataclasses.asdict(engine) for engine in self.engines],
            "planned_as": self.planned_as,
            "planned_for": iso(self.planned_for),
            # each kind of feedback's share of what the relay accepted (None: nothing yet)
            "came_back_rates": self.came_back_rates(),
            "speed_per_second": None if self.speed is None else round(self.speed, 3),
            "last_hour": self.last_hour(),
            "throttled_domains": [dataclasses.asdict(t) for t in self.throttled],
            "last_errors": [
                {"email": error.email, "reply": error.reply, "at": iso(error.at)}
                for error in self.last_errors
            ],
        }


FIRST_FAILED = 5


def _engines_on(session: Session, mailing_id: int) -> list[EngineOnIt]:
    rows = heartbeats.engines(session)
    lost = heartbeats.lost_ids(rows, utc_now())
    return [
        EngineOnIt(row.id, row.host, row.pid, row.connections, row.connections_reason)
        for row in rows
        if mailing_id in heartbeats.sending_ids(row) and row.id not in lost
    ]


def _first_failed(session: Session, mailing: Mailing) -> list[FailedRecipient]:
    assert mailing.id is not None
    names = json.loads(mailing.field_names)
    return list(failed_recipients(session, mailing.id, names, CLASSES, FIRST_FAILED))


def _last_plan(session: Session, mailing_id: int) -> dict[str, object]:
    entry = audit.last_plan(session, mailing_id)
    if entry is None:
        return {"planned_as": None, "planned_for": None}
    return {
        "planned_as": audit.PLANS[audit.Change(entry.action)],
        "planned_for": entry.scheduled_at,
    }


def _throttled(session: Session, now: datetime) -> tuple[domain_rate.Throttle, ...]:
    groups = stored_limits(settings.read(session, "domain_limits"))
    configured = {group.key: group.per_second for group in groups}
    return tuple(domain_rate.throttles(session, configured, now.timestamp()))


def _held_for_domains(session: Session, mailing_id: int) -> int:
    """Deferred recipients never tried: a relay's deferral counts an attempt, a hold for the
    recipient's domain does not (core/coordination/deliveries.py). Only deferred rows are
    read, through the claim index."""
    return session.exec(
        select(sa.func.count()).where(
            Recipient.mailing_id == mailing_id,
            Recipient.status == DEFERRED,
            Recipient.attempts == 0,
        )
    ).one()


def read_details(session: Session, mailing: Mailing, now: datetime | None = None) -> MailingDetails:
    assert mailing.id is not None
    now = now or utc_now()
    throughput = read_throughput(session, [mailing.id], now - MINUTES_KEPT)[mailing.id]
    by_status = dict(
        session.exec(
            select(Recipient.status, sa.func.count())
            .where(Recipient.mailing_id == mailing.id)
            .group_by(Recipient.status)
        ).all()
    )
    computed = {
        "has_text_body": mailing.text_body is not None,
        "has_html_body": mailing.html_body is not None,
        "fields": json.loads(mailing.field_names),
        "recipients": by_status,
        "failed_by_class": failed_by_class(session, mailing.id) if mailing.failed else {},
        "last_errors": [
            LastError(error.email, error.reply, error.at)
            for error in last_errors(session, mailing.id)
        ],
        "first_failed": _first_failed(session, mailing) if mailing.failed else [],
        "engines": _engines_on(session, mailing.id),
        **_last_plan(session, mailing.id),
        "throughput": throughput,
        "speed": throughput.speed(now) if mailing.state == State.SENDING else None,
        "read_at": now,
        "throttled": _throttled(session, now) if mailing.state == State.SENDING else (),
        "held_for_domains": _held_for_domains(session, mailing.id) if mailing.deferred else 0,
    }
    # every other field is the mailing's own column or property, under the same name
    copied = {
        field.name: getattr(mailing, field.name)
        for field in dataclasses.fields(MailingDetails)
        if field.name not in computed
    }
    return MailingDetails(**copied, **computed)
