"""How fast a mailing goes and what came back, over time, from the minutes every engine
stores (core/model/send_minutes.py): its speed now, its last hour minute by minute.

One source for every screen and command: a dashboard opened now draws the last hour at
once, and ``ls``, ``show``, the ETA and the details agree.
"""

import functools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col

from sendstatus_tui.core.model.models import SendMinute
from sendstatus_tui.core.model.send_minutes import minute_of
from sendstatus_tui.core.store.together import Reading, Statement, read_one

CHART_MINUTES = 60  # a chart's width: the last hour
# nothing recorded for this long: nothing goes out now (engines record every second or two
# while they send)
QUIET_AFTER = timedelta(seconds=10)
# a speed measured over less than this (the first records) is not told yet
LEAST_SPAN = timedelta(seconds=5)
_MINUTE = timedelta(minutes=1)


@dataclass(frozen=True)
class Minute:
    start: datetime
    sent: int
    failed: int
    bounced: int
    complained: int
    first_at: datetime | None  # the first and last record of outcomes in it
    last_at: datetime | None

    @property
    def handled(self) -> int:
        """Messages with an outcome in this minute: sent or failed."""
        return self.sent + self.failed


@dataclass(frozen=True)
class Throughput:
    """One mailing's stored minutes, oldest first."""

    minutes: tuple[Minute, ...] = ()

    def speed(self, now: datetime) -> float | None:
        """Messages per second that got an outcome over the last one or two minutes: 0 when
        nothing was recorded for QUIET_AFTER; None while there is nothing to tell."""
        recent = [m for m in self.minutes if m.start >= minute_of(now) - _MINUTE and m.handled]
        if not recent:
            return None
        last = max(m.last_at for m in recent if m.last_at is not None)
        if now - last > QUIET_AFTER:
            return 0.0
        first = recent[0].first_at or recent[0].start
        span = (now - first).total_seconds()
        if span < LEAST_SPAN.total_seconds():
            return None
        return sum(m.handled for m in recent) / span

    def last_sending_minute(self) -> datetime | None:
        return next((m.start for m in reversed(self.minutes) if m.handled), None)

    def handled_per_minute(self, end: datetime, count: int = CHART_MINUTES) -> list[int]:
        """Messages with an outcome in each of the ``count`` minutes up to ``end``'s."""
        return self._per_minute(end, count, lambda m: m.handled)

    def came_back_per_minute(self, end: datetime, count: int = CHART_MINUTES) -> list[int]:
        """Bounces, blocks and complaints that came back in each minute up to ``end``'s."""
        return self._per_minute(end, count, lambda m: m.bounced + m.complained)

    def totals_since(self, since: datetime) -> Minute:
        """The minutes from ``since`` on, added up (its times: the first and last record)."""
        kept = [m for m in self.minutes if m.start >= minute_of(since)]
        times = [t for m in kept for t in (m.first_at, m.last_at) if t is not None]
        return Minute(
            minute_of(since),
            sum(m.sent for m in kept),
            sum(m.failed for m in kept),
            sum(m.bounced for m in kept),
            sum(m.complained for m in kept),
            min(times, default=None),
            max(times, default=None),
        )

    def _per_minute(self, end: datetime, count: int, value: Callable[[Minute], int]) -> list[int]:
        last = minute_of(end)
        by_start = {m.start: value(m) for m in self.minutes}
        return [by_start.get(last - (count - 1 - i) * _MINUTE, 0) for i in range(count)]


NO_MINUTES = Throughput()  # a mailing with no stored minute in the time asked for


def read_throughput(
    session: Session, mailing_ids: Iterable[int], since: datetime
) -> dict[int, Throughput]:
    """The stored minutes of ``mailing_ids`` from ``since``'s on, per mailing (every one
    asked for is in the answer)."""
    ids = list(mailing_ids)
    found = read_one(session, throughput_reading(ids, since)) if ids else {}
    return {mailing_id: found.get(mailing_id, NO_MINUTES) for mailing_id in ids}


def throughput_reading(
    mailing_ids: Sequence[int] | sa.Select[int | None], since: datetime
) -> Reading[dict[int, Throughput]]:
    """The stored minutes from ``since``'s on of those of ``mailing_ids`` (a list, or a
    statement selecting them) that have any, per mailing."""
    parameters: dict[str, object] = {"minutes_since": minute_of(since)}
    if isinstance(mailing_ids, sa.Select):
        statement = _minutes_of(mailing_ids)
    else:
        statement, parameters["minutes_of"] = _minutes_of(None), list(mailing_ids)
    return Reading(statement, _per_mailing, parameters)


@functools.cache
def _minutes_of(mailings: sa.Select[int | None] | None) -> Statement:
    """The statement of the minutes of ``mailings`` (None: those listed in the parameter
    minutes_of) from the parameter minutes_since on."""
    minutes = sa.select(  # columns, not ORM objects: a refresh reads up to an hour
        col(SendMinute.mailing_id),
        col(SendMinute.minute),
        col(SendMinute.sent),
        col(SendMinute.failed),
        col(SendMinute.bounced),
        col(SendMinute.complained),
        col(SendMinute.first_at),
        col(SendMinute.last_at),
    ).where(col(SendMinute.minute) >= sa.bindparam("minutes_since"))
    if mailings is None:
        listed: sa.BindParameter[list[int]] = sa.bindparam("minutes_of", expanding=True)
        return minutes.where(col(SendMinute.mailing_id).in_(listed))
    return minutes.where(col(SendMinute.mailing_id).in_(mailings))


def _per_mailing(rows: list[tuple[Any, ...]]) -> dict[int, Throughput]:
    found: dict[int, list[Minute]] = {}
    for mailing_id, *figures in sorted(rows, key=lambda row: (row[0], row[1])):
        found.setdefault(mailing_id, []).append(Minute(*figures))
    return {mailing_id: Throughput(tuple(minutes)) for mailing_id, minutes in found.items()}


def last_hour_since(now: datetime) -> datetime:
    """The start of the first minute a chart of the last hour shows."""
    return minute_of(now) - (CHART_MINUTES - 1) * _MINUTE
