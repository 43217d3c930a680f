"""The tables: mailings, their recipients, and the engine lease.

Schema changes go through the Alembic migrations in ``core/migrations``; a test checks
that the migrations and these models agree.
"""

from datetime import UTC, datetime
from enum import StrEnum

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from sendstatus_tui.core.model.states import Mode, State
from sendstatus_tui.core.model.waiting import WaitingKind


class UTCDateTime(sa.types.TypeDecorator[datetime]):
    """Stores a timezone-aware datetime as naive UTC and gives it back aware.

    SQLite keeps no zone; storing UTC everywhere keeps SQLite and PostgreSQL alike.
    """

    impl = sa.DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: times must carry a zone")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


def _enum_column(enum_class: type[StrEnum]) -> sa.Enum:
    """Stores an enum as its value in a plain string column (no native enum type)."""
    return sa.Enum(
        enum_class,
        native_enum=False,
        length=16,
        values_callable=lambda members: [member.value for member in members],
    )


# named constraints, so that migrations can refer to them on every database
SQLModel.metadata.naming_convention = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utc_now() -> datetime:
    return datetime.now(UTC)


class RecipientStatus:
    """A recipient's delivery status (stored as text)."""

    PENDING = "pending"
    IN_FLIGHT = "in_flight"  # claimed by one engine (``Recipient.claimed_by``)
    SENT = "sent"
    DEFERRED = "deferred"
    FAILED = "failed"
    SUPPRESSED = "suppressed"  # on the suppression list when its turn came: never sent


class FailureClass:
    """Why a recipient failed (DESIGN.md §1), stored beside ``failed``."""

    REFUSED = "5xx"  # the relay refused it
    DEFERRED_TOO_OFTEN = "4xx"  # the relay deferred it on every attempt
    DOUBT = "doubt"  # no reply after DATA, every try: it may have received up to 3 copies
    ERROR = "error"  # refused by us before the relay, e.g. a message that cannot be built
    # accepted by the relay, bounced later (core/feedback): the address does not exist
    # (5.1.x, 5.2.1, 5.4.4), or any other permanent reason (policy: the address is fine)
    BOUNCE = "bounce"
    BLOCKED = "blocked"


class Mailing(SQLModel, table=True):
    __tablename__ = "mailing"

    id: int | None = Field(default=None, primary_key=True)
    name: str
    subject: str
    sender: str
    text_body: str | None = Field(default=None, sa_type=sa.Text)
    html_body: str | None = Field(default=None, sa_type=sa.Text)
    # personalisation field names, in CSV order, as a JSON array
    field_names: str = Field(default="[]", sa_type=sa.Text)

    state: State = Field(default=State.STANDBY, sa_type=_enum_column(State), index=True)
    mode: Mode | None = Field(default=None, sa_type=_enum_column(Mode))
    # why a mailing is parked: decided later, stopped, interrupted (with the error)
    state_reason: str | None = None
    # 1-based place in the sequential queue while queued; unique (NULLs never clash)
    position: int | None = Field(default=None, unique=True)

    scheduled_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # the zone the scheduled time was typed in (Europe/Rome), shown beside each reader's
    scheduled_zone: str | None = Field(default=None, sa_type=sa.String(64))
    # the days and hours it may send in, naming its zone (core/model/window.py): "Mon-Fri
    # 09:00-18:00 Europe/Rome"; None: any hour
    window: str | None = Field(default=None, sa_type=sa.Text)
    started_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    finished_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    created_at: datetime = Field(default_factory=utc_now, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utc_now, sa_type=UTCDateTime)

    # counters kept in the same transaction as the recipients they count
    total: int = 0
    sent: int = 0
    failed: int = 0
    deferred: int = 0
    # sends whose fate is unknown (DATA went out without a reply, or an engine died with them
    # in flight), counted each time they are sent again: each may be a duplicate
    resent_in_doubt: int = 0
    # recipients skipped at send time because their address was put on the suppression list
    suppressed: int = 0
    # what came back after the relay accepted (core/feedback): hard bounces and blocks,
    # each also counted in ``failed`` (a class of it); complaints and one-click
    # unsubscribes, whose recipients stay sent
    bounced: int = 0
    blocked: int = 0
    complained: int = 0
    unsubscribed: int = 0
    # the guard (core/model/guard.py): tries recorded so far, each recipient keeping the
    # number of its latest (``Recipient.tried_seq``), and the number before which the
    # current sending's window begins (sending again starts it afresh)
    tries: int = Field(default=0, sa_type=sa.BigInteger)
    guard_from: int = Field(default=0, sa_type=sa.BigInteger)
    # what keeps the engine from starting or sending it now: its kind (readers decide by
    # it), the engine's words for it (the relay's reply, shown in the details), since when,
    # and until when (the next try, or when its window opens); all None while all goes well
    waiting_kind: WaitingKind | None = Field(default=None, sa_type=_enum_column(WaitingKind))
    waiting_reason: str | None = Field(default=None, sa_type=sa.Text)
    waiting_since: datetime | None = Field(default=None, sa_type=UTCDateTime)
    waiting_until: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # List-Unsubscribe (RFC 2369, RFC 8058): an https URL template with {field}
    # placeholders, and an address; None when the mailing carries none
    unsubscribe_url: str | None = Field(default=None, sa_type=sa.Text)
    unsubscribe_mailto: str | None = Field(default=None, sa_type=sa.Text)
    # its recipients are still being imported: no list shows it, no command finds it; the
    # import touches ``updated_at`` at each batch, so one not touched for long was abandoned
    importing: bool = False
    # the relays it goes through, comma-separated names (core/model/relays.py); None: every
    # relay that exists when each message goes out
    relays: str | None = Field(default=None, sa_type=sa.Text)

    @property
    def remaining(self) -> int:
        return self.total - self.sent - self.failed - self.suppressed


# 64-bit on PostgreSQL (ten million recipients a mailing add up); SQLite's INTEGER is
# already 64-bit, and must stay INTEGER to remain the table's rowid
RECIPIENT_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


class Recipient(SQLModel, table=True):
    __tablename__ = "recipient"
    # claims walk this index in id order for one mailing and status (the pending), and stop
    # at the batch
    __table_args__ = (
        sa.Index("ix_recipient_claim", "mailing_id", "status", "id"),
        # only claimed recipients: how the leader finds the claims of engines whose heartbeat
        # expired
        sa.Index(
            "ix_recipient_claimed_by",
            "claimed_by",
            sqlite_where=sa.text("claimed_by IS NOT NULL"),
            postgresql_where=sa.text("claimed_by IS NOT NULL"),
        ),
        # only deferred recipients, by when they are due again: a claim finds the due ones
        # without reading those deferred for later (a throttled domain's, by the thousand)
        sa.Index(
            "ix_recipient_due_again",
            "mailing_id",
            "next_attempt_at",
            sqlite_where=sa.text("status = 'deferred'"),
            postgresql_where=sa.text("status = 'deferred'"),
        ),
        # the guard's window: a mailing's recipients in the order they were last tried,
        # with what it needs to count them (only recipients tried: imports skip it)
        sa.Index(
            "ix_recipient_tried",
            "mailing_id",
            "tried_seq",
            "status",
            "failure_class",
            sqlite_where=sa.text("tried_seq IS NOT NULL"),
            postgresql_where=sa.text("tried_seq IS NOT NULL"),
        ),
    )

    id: int | None = Field(default=None, primary_key=True, sa_type=RECIPIENT_ID)
    mailing_id: int = Field(foreign_key="mailing.id", ondelete="CASCADE")
    email: str
    # the mailbox key (core/addresses.py) of ``email``, by which the import finds duplicates;
    # None for recipients imported before it kept it
    mailbox: str | None = Field(default=None, sa_type=sa.Text)
    # personalisation values, a JSON array in the order of Mailing.field_names
    field_values: str | None = Field(default=None, sa_type=sa.Text)
    status: str = Field(default=RecipientStatus.PENDING, sa_type=sa.String(16))
    attempts: int = 0
    # the engine whose claim this is while in flight: only it may record the outcome
    claimed_by: str | None = Field(default=None, sa_type=sa.String(80))
    # sends of it that ended in doubt (no reply after DATA); at 3 it fails with class doubt
    doubts: int = 0
    failure_class: str | None = Field(default=None, sa_type=sa.String(8))
    next_attempt_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    last_reply: str | None = Field(default=None, sa_type=sa.Text)
    # the mailing's try count when this recipient was last tried (Mailing.tries)
    tried_seq: int | None = Field(default=None, sa_type=RECIPIENT_ID)


class DeliveryError(SQLModel, table=True):
    """A relay's refusal or deferral, kept for the operator (the newest few per mailing)."""

    __tablename__ = "delivery_error"

    id: int | None = Field(default=None, primary_key=True)
    mailing_id: int = Field(foreign_key="mailing.id", ondelete="CASCADE", index=True)
    email: str
    reply: str = Field(sa_type=sa.Text)
    at: datetime = Field(default_factory=utc_now, sa_type=UTCDateTime)


class EngineLease(SQLModel, table=True):
    """Who may run the engine on this database, until when (renewed while alive)."""

    __tablename__ = "engine_lease"

    name: str = Field(primary_key=True)
    holder: str
    expires_at: datetime = Field(sa_type=UTCDateTime)
    # +1 each time the lease is taken after it expired: a leader's writes carry the
    # generation it took, so a holder that let it expire can no longer write with it
    generation: int = 0


class Setting(SQLModel, table=True):
    """One stored setting shared by every engine and dashboard (``sendstatus config``)."""

    __tablename__ = "setting"

    key: str = Field(primary_key=True, max_length=64)
    value: str = Field(sa_type=sa.Text)
    updated_at: datetime = Field(default_factory=utc_now, sa_type=UTCDateTime)


class Suppression(SQLModel, table=True):
    """An address never to be mailed (``sendstatus suppress``), found by its mailbox key:
    every spelling of one mailbox (case, Unicode or ASCII domain) has the same key."""

    __tablename__ = "suppression"

    mailbox: str = Field(primary_key=True, max_length=320)
    address: str = Field(max_length=320)  # as it was given, in normal form
    reason: str | None = Field(default=None, sa_type=sa.Text)
    created_at: datetime = Field(default_factory=utc_now, sa_type=UTCDateTime)


class EngineHeartbeat(SQLModel, table=True):
    """One running engine, as it last told (``sendstatus engines``): written by the engine
    itself every lease renewal, removed when it stops cleanly. A row whose heartbeat is
    old is an engine that died or cannot reach the database."""

    __tablename__ = "engine"

    id: str = Field(primary_key=True, max_length=120)  # the lease holder it uses
    host: str = Field(max_length=255)
    pid: int
    role: str = Field(max_length=16)  # leader | sender (every engine sends; one leads)
    started_at: datetime = Field(sa_type=UTCDateTime)
    heartbeat_at: datetime = Field(sa_type=UTCDateTime)
    sending: str = Field(default="", max_length=1000)  # mailing ids, comma-separated
    sent: int = 0  # messages it sent since it started
    rate: float = 0.0  # messages a second, over its last heartbeat interval
    connections: int = 0  # to the relay, now
    connections_reason: str = Field(default="", sa_type=sa.Text)  # of the last change
    # whose claims this engine's recipients carry now (its id and a generation); claims of
    # a claimant no live engine row names are handed back by the leader
    claimant: str = Field(default="", max_length=140)


class NextSlot(SQLModel, table=True):
    """The contracted rate shared by every engine of the database: engines reserve send
    slots, one every 1/rate seconds, by moving ``next_slot_at`` on
    (coordination/shared_rate.py). The table keeps its first name; its one row is created
    by the migration that added ``per_second``."""

    __tablename__ = "send_pace"

    name: str = Field(primary_key=True, max_length=32)
    # seconds since the epoch: the first slot nobody has reserved, at ``per_second``
    next_slot_at: float
    # the rate the last slots were reserved at (None: none yet since the column came); after
    # a change the next slot is the last one reserved plus the new spacing
    per_second: float | None = None
    # the mailing the last slots went to (no foreign key: a hint), which waits its turn
    mailing_id: int | None = None
    # a domain's row (``domain:KEY``) slowed by a 4.7.x deferral (coordination/
    # domain_rate.py): its rate right after, when (epoch seconds), the rate it recovers up
    # to, the enhanced status and the domain that got it
    throttled_per_second: float | None = None
    throttled_at: float | None = None
    throttle_ceiling: float | None = None
    throttle_status: str | None = Field(default=None, max_length=16)
    throttled_domain: str | None = Field(default=None, max_length=255)


class AuditEntry(SQLModel, table=True):
    """One change to the mailings, with who made it, from where and when (core/audit.py).

    ``mailing_id`` has no foreign key: a mailing's history outlives the mailing."""

    __tablename__ = "audit_entry"

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(default_factory=utc_now, sa_type=UTCDateTime, index=True)
    mailing_id: int | None = Field(default=None, index=True)
    mailing_name: str | None = Field(default=None, sa_type=sa.Text)
    action: str = Field(sa_type=sa.String(32))
    detail: str | None = Field(default=None, sa_type=sa.Text)
    # the time a schedule set, kept as a time so that each reader sees it in their zone
    scheduled_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    source: str = Field(sa_type=sa.String(16))  # cli, dashboard, engine
    os_user: str = Field(sa_type=sa.String(64))
    sudo_user: str | None = Field(default=None, sa_type=sa.String(64))
    ssh_from: str | None = Field(default=None, sa_type=sa.String(64))  # the client's address
    # the process that made it (one per dashboard, command or engine): a dashboard tells
    # the changes of every other session, also the same user's second dashboard
    session: str | None = Field(default=None, sa_type=sa.String(32))


class Secret(SQLModel, table=True):
    """A key made once per database (by its migration) and never shown: ``feedback`` signs
    the return paths and the recipient header of each message (core/model/verp.py)."""

    __tablename__ = "secret"

    name: str = Field(primary_key=True, max_length=32)
    value: str = Field(sa_type=sa.Text)  # hex
    created_at: datetime = Field(default_factory=utc_now, sa_type=UTCDateTime)


class Feedback(SQLModel, table=True):
    """What came back about one recipient after the relay accepted its message: a bounce
    (hard, blocked or soft) or a complaint (core/feedback). ``report_key`` makes the same
    report count once, however often it is read."""

    __tablename__ = "feedback"

    id: int | None = Field(default=None, primary_key=True)
    report_key: str = Field(max_length=64, unique=True)
    mailing_id: int = Field(foreign_key="mailing.id", ondelete="CASCADE", index=True)
    recipient_id: int = Field(
        foreign_key="recipient.id", ondelete="CASCADE", index=True, sa_type=RECIPIENT_ID
    )
    kind: str = Field(sa_type=sa.String(16))  # bounce, blocked, soft, complaint
    # whether it changed the recipient or the counters (not for a recipient never sent, nor
    # a second report about one already bounced)
    counted: bool = False
    action: str | None = Field(default=None, sa_type=sa.String(16))  # DSN Action
    status: str | None = Field(default=None, sa_type=sa.String(16))  # DSN Status: 5.1.1
    diagnostic: str | None = Field(default=None, sa_type=sa.Text)
    reporting_mta: str | None = Field(default=None, sa_type=sa.Text)
    feedback_type: str | None = Field(default=None, sa_type=sa.String(32))  # ARF: abuse
    matched_by: str = Field(sa_type=sa.String(16))  # return-path | header
    arrived_at: datetime = Field(default_factory=utc_now, sa_type=UTCDateTime, index=True)


class AlertIncident(SQLModel, table=True):
    """Something that needs a person (core/coordination/incidents.py): told once when it
    is due, and once when it ends, by whichever engine leads then (the flags say what was
    told, so that a new leader repeats nothing)."""

    __tablename__ = "alert_incident"

    id: int | None = Field(default=None, primary_key=True)
    # what it is about (relay_down, stalled:12, engine_lost:ID …) while it lasts; None once
    # it ended, so that the same trouble later is a new incident
    open_key: str | None = Field(default=None, max_length=160, unique=True)
    kind: str = Field(sa_type=sa.String(32))
    mailing_id: int | None = Field(default=None)  # no foreign key: it outlives the mailing
    mailing_name: str | None = Field(default=None, sa_type=sa.Text)
    reason: str = Field(sa_type=sa.Text)
    since: datetime = Field(sa_type=UTCDateTime)  # when the trouble began, as far as known
    due_at: datetime = Field(sa_type=UTCDateTime, index=True)  # told from then on
    ended_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    told_open: bool = False
    told_end: bool = False


class SendMinute(SQLModel, table=True):
    """What became of a mailing's messages in one minute (UTC), added to by every engine in
    the transaction that records the outcomes (core/model/send_minutes.py): the
    figures behind every speed, ETA and chart. Kept for a day (MINUTES_KEPT)."""

    __tablename__ = "send_minute"

    mailing_id: int = Field(foreign_key="mailing.id", ondelete="CASCADE", primary_key=True)
    minute: datetime = Field(sa_type=UTCDateTime, primary_key=True, index=True)  # its start
    sent: int = 0
    failed: int = 0
    # what came back in that minute, about messages sent at any time (core/feedback)
    bounced: int = 0  # hard bounces and blocks
    complained: int = 0
    # the first and the last record of outcomes in that minute (None: only feedback)
    first_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    last_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class Relay(SQLModel, table=True):
    """A relay engines send through (``sendstatus relay``), shared by every engine of the
    database (core/model/relays.py). Its credentials are never stored: each engine reads
    them from its environment or its credentials file."""

    __tablename__ = "relay"

    name: str = Field(primary_key=True, max_length=64)
    url: str = Field(sa_type=sa.Text)
    weight: int = 1  # its share of the messages, against the other relays' weights
    rate: str | None = Field(default=None, max_length=32)  # shared by every engine; None: none
    connections: int | None = None  # each engine's most towards it; None: the URL's pool
    updated_at: datetime = Field(default_factory=utc_now, sa_type=UTCDateTime)


class RelayBreaker(SQLModel, table=True):
    """One engine finds one relay down (engine/breaker.py): published by the engine with
    its heartbeat, so that ``relay ls`` and ``engines`` show which engines find which relay
    down, and since when. Only relays found down have a row."""

    __tablename__ = "relay_breaker"

    engine_id: str = Field(primary_key=True, max_length=120)
    relay: str = Field(primary_key=True, max_length=64)
    down_since: datetime = Field(sa_type=UTCDateTime)
    reason: str = Field(sa_type=sa.Text)


class ChangeMarker(SQLModel, table=True):
    """One row whose counter is bumped in the same transaction as every change an engine
    follows (core/model/changes.py): engines read this one number often, and the mailings,
    settings and relays only when it moved."""

    __tablename__ = "change_marker"

    id: int = Field(default=1, primary_key=True)
    counter: int = Field(default=0, sa_type=sa.BigInteger)
