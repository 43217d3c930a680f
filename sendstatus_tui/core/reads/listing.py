"""Mailings as the panes (and ``ls``) show them: which pane, in which order, which fields."""

import functools
from datetime import UTC, datetime
from typing import Any, NamedTuple, Protocol

import sqlalchemy as sa
from sqlalchemy.orm import defer
from sqlmodel import Session, col, select

from sendstatus_tui.core.model.models import Mailing
from sendstatus_tui.core.model.states import AREA_OF_STATE, Area, Mode, State
from sendstatus_tui.core.model.waiting import WaitingKind
from sendstatus_tui.core.store.together import Reading, read_one


class Summarised(Protocol):
    """What ``summary`` reads: a Mailing row, or a mailing's details (reads/details.py)."""

    @property
    def id(self) -> int | None: ...
    @property
    def name(self) -> str: ...
    @property
    def state(self) -> State: ...
    @property
    def mode(self) -> Mode | None: ...
    @property
    def position(self) -> int | None: ...
    @property
    def scheduled_at(self) -> datetime | None: ...
    @property
    def scheduled_zone(self) -> str | None: ...
    @property
    def window(self) -> str | None: ...
    @property
    def started_at(self) -> datetime | None: ...
    @property
    def finished_at(self) -> datetime | None: ...
    @property
    def total(self) -> int: ...
    @property
    def sent(self) -> int: ...
    @property
    def failed(self) -> int: ...
    @property
    def suppressed(self) -> int: ...
    @property
    def remaining(self) -> int: ...
    @property
    def state_reason(self) -> str | None: ...
    @property
    def bounced(self) -> int: ...
    @property
    def blocked(self) -> int: ...
    @property
    def complained(self) -> int: ...
    @property
    def unsubscribed(self) -> int: ...
    @property
    def waiting_kind(self) -> WaitingKind | None: ...
    @property
    def waiting_reason(self) -> str | None: ...
    @property
    def waiting_since(self) -> datetime | None: ...
    @property
    def waiting_until(self) -> datetime | None: ...


STATES_OF_AREA = {
    area: [state for state, its_area in AREA_OF_STATE.items() if its_area == area] for area in Area
}


def list_mailings(session: Session, area: Area | None = None) -> list[Mailing]:
    """Mailings in pane order: by area, then start time, schedule (queue after), or age."""
    # the bodies can be large and no list shows them (SQLModel types a column attribute as
    # its value, so defer() cannot see that it is the InstrumentedAttribute defer() takes)
    statement = (
        select(Mailing)
        .options(
            defer(Mailing.text_body),  # type: ignore[arg-type]
            defer(Mailing.html_body),  # type: ignore[arg-type]
        )
        .where(col(Mailing.importing).is_(False))  # shown once its import is complete
    )
    if area is not None:
        statement = statement.where(col(Mailing.state).in_(STATES_OF_AREA[area]))
    mailings = session.exec(statement).all()
    return sorted(mailings, key=_pane_order)


class PaneMailing(NamedTuple):
    """What the panes show of a mailing (no bodies, no ORM object)."""

    id: int
    name: str
    state: State
    mode: Mode | None
    state_reason: str | None
    position: int | None
    scheduled_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    total: int
    sent: int
    failed: int
    suppressed: int
    waiting_reason: str | None  # what keeps the engine from sending it now
    waiting_until: datetime | None  # when the engine tries again
    # what came back after the send (bounced and blocked are also counted failed)
    bounced: int = 0
    blocked: int = 0
    complained: int = 0
    window: str | None = None  # the days and hours it may send in (core/model/window.py)
    relays: str | None = None  # the relays it uses, comma-separated (None: every relay)
    waiting_kind: WaitingKind | None = None  # what it waits for (waiting_reason in words)
    waiting_since: datetime | None = None  # since when it waits for that

    @property
    def remaining(self) -> int:
        return self.total - self.sent - self.failed - self.suppressed


# in the order of PaneMailing's fields, which are named after them
_PANE_COLUMNS = (
    col(Mailing.id),
    col(Mailing.name),
    col(Mailing.state),
    col(Mailing.mode),
    col(Mailing.state_reason),
    col(Mailing.position),
    col(Mailing.scheduled_at),
    col(Mailing.started_at),
    col(Mailing.finished_at),
    col(Mailing.total),
    col(Mailing.sent),
    col(Mailing.failed),
    col(Mailing.suppressed),
    col(Mailing.waiting_reason),
    col(Mailing.waiting_until),
    col(Mailing.bounced),
    col(Mailing.blocked),
    col(Mailing.complained),
    col(Mailing.window),
    col(Mailing.relays),
    col(Mailing.waiting_kind),
    col(Mailing.waiting_since),
)


def list_pane_rows(session: Session, areas: tuple[Area, ...]) -> list[PaneMailing]:
    """The mailings of ``areas`` in pane order (completed ones, which only grow in number,
    are not even read)."""
    return read_one(session, pane_rows_reading(areas))


@functools.cache
def pane_rows_reading(areas: tuple[Area, ...]) -> Reading[list[PaneMailing]]:
    states = [state for area in areas for state in STATES_OF_AREA[area]]
    statement = sa.select(*_PANE_COLUMNS).where(
        col(Mailing.state).in_(states), col(Mailing.importing).is_(False)
    )
    return Reading(statement, _in_pane_order, from_stored=_stored_pane_mailing)


@functools.cache
def sending_ids() -> sa.Select[int | None]:
    """The mailings sending (as the panes read them), as a statement."""
    return sa.select(col(Mailing.id)).where(
        col(Mailing.state) == State.SENDING, col(Mailing.importing).is_(False)
    )


def _in_pane_order(rows: list[tuple[Any, ...]]) -> list[PaneMailing]:
    # rows read on SQLite are PaneMailings already (_stored_pane_mailing)
    mailings = [row if isinstance(row, PaneMailing) else PaneMailing(*row) for row in rows]
    return sorted(mailings, key=_pane_order)


# rows converted and kept: more than the panes hold (parked mailings are the many)
PANE_ROWS_KEPT = 8192


@functools.lru_cache(maxsize=PANE_ROWS_KEPT)
def _stored_pane_mailing(row: tuple[Any, ...]) -> PaneMailing:
    """One row as SQLite stores it, converted once per version: a refresh reads a thousand
    rows, most of them unchanged (parked ones do not move), and converting one costs
    microseconds (five times and an enum each)."""
    (
        id_,
        name,
        state,
        mode,
        reason,
        position,
        scheduled_at,
        started_at,
        finished_at,
        total,
        sent,
        failed,
        suppressed,
        waiting_reason,
        waiting_until,
        bounced,
        blocked,
        complained,
        window,
        relays,
        waiting_kind,
        waiting_since,
    ) = row
    return PaneMailing(
        id_,
        name,
        _STATES[state],
        _MODES[mode] if mode else None,
        reason,
        position,
        _utc(scheduled_at),
        _utc(started_at),
        _utc(finished_at),
        total,
        sent,
        failed,
        suppressed,
        waiting_reason,
        _utc(waiting_until),
        bounced,
        blocked,
        complained,
        window,
        relays,
        WaitingKind(waiting_kind) if waiting_kind else None,
        _utc(waiting_since),
    )


# stored value -> member, as a dict: Enum(value) costs a microsecond per row
_STATES = {state.value: state for state in State}
_MODES = {mode.value: mode for mode in Mode}


def _utc(stored: str | None) -> datetime | None:
    # as UTCDateTime stores them: naive UTC, in SQLAlchemy's SQLite text format
    return datetime.fromisoformat(stored).replace(tzinfo=UTC) if stored else None


# each state's pane, as its place among the panes (a refresh sorts a thousand rows by it)
_PANE_RANK = {state: list(Area).index(area) for state, area in AREA_OF_STATE.items()}


def _pane_order(mailing: "Mailing | PaneMailing") -> tuple[int, int, float | None, int | None]:
    rank = _PANE_RANK[mailing.state]
    if mailing.state == State.SCHEDULED:
        # timed ones by time, then the sequential queue in its order
        assert mailing.scheduled_at is not None  # a scheduled mailing has its time
        return (rank, 0, mailing.scheduled_at.timestamp(), mailing.id)
    if mailing.state == State.QUEUED:
        return (rank, 1, mailing.position, mailing.id)
    if mailing.state == State.COMPLETED:
        assert mailing.finished_at is not None  # a completed mailing has finished
        return (rank, 0, -mailing.finished_at.timestamp(), mailing.id)
    return (rank, 0, 0, mailing.id)


def summary(mailing: Summarised) -> dict[str, object]:
    """The fields of ``ls --json`` (DESIGN.md §3)."""
    return {
        "id": mailing.id,
        "name": mailing.name,
        "state": str(mailing.state),
        "area": str(AREA_OF_STATE[mailing.state]),
        "mode": str(mailing.mode) if mailing.mode else None,
        "position": mailing.position,
        "scheduled_at": iso(mailing.scheduled_at),
        "scheduled_zone": mailing.scheduled_zone,
        "window": mailing.window,
        "started_at": iso(mailing.started_at),
        "finished_at": iso(mailing.finished_at),
        "total": mailing.total,
        "sent": mailing.sent,
        "failed": mailing.failed,
        "suppressed": mailing.suppressed,
        "remaining": mailing.remaining,
        "reason": mailing.state_reason,
        "bounced": mailing.bounced,
        "blocked": mailing.blocked,
        "complained": mailing.complained,
        "unsubscribed": mailing.unsubscribed,
        "waiting": waiting(mailing),
    }


def waiting(mailing: Summarised) -> dict[str, str | None] | None:
    """What keeps the engine from sending it: its kind (``relay_down``, ``window``,
    ``domain_limit``), since and until when, and the engine's words; None: nothing."""
    if mailing.waiting_kind is None:
        return None
    return {
        "kind": str(mailing.waiting_kind),
        "since": iso(mailing.waiting_since),
        "until": iso(mailing.waiting_until),
        "reason": mailing.waiting_reason,
    }


def iso(moment: datetime | None) -> str | None:
    return moment.isoformat().replace("+00:00", "Z") if moment else None
