"""The database's figures of what is sending now, for ``sendstatus serve --metrics``: one
read of the mailings in Sending now and of the engines' heartbeats."""

from dataclasses import dataclass
from datetime import timedelta

from sqlmodel import Session, col, select

from sendstatus_tui.core.coordination import heartbeats
from sendstatus_tui.core.model.models import Mailing, utc_now
from sendstatus_tui.core.model.states import State
from sendstatus_tui.core.model.waiting import WaitingKind
from sendstatus_tui.core.reads.throughput import read_throughput

SPEED_WINDOW = timedelta(minutes=3)  # the minutes a speed now is read from


@dataclass(frozen=True)
class SendingMailing:
    id: int
    name: str
    remaining: int
    sent: int  # accepted and not bounced since
    failed: int
    bounced: int
    complained: int
    waiting: WaitingKind | None  # what the engine noted keeps it from sending, if anything
    speed: float  # messages per second now, from the minutes every engine stores


@dataclass(frozen=True)
class SendingFigures:
    mailings: list[SendingMailing]
    live_engines: int  # engines whose heartbeat is fresh (none lost)


def sending_figures(session: Session) -> SendingFigures:
    rows = session.exec(
        select(Mailing)
        .where(col(Mailing.state).in_([State.STARTING, State.SENDING]))
        .order_by(col(Mailing.id))
    ).all()
    now = utc_now()
    throughputs = read_throughput(session, [m.id for m in rows if m.id], now - SPEED_WINDOW)
    mailings = [
        SendingMailing(
            m.id or 0,
            m.name,
            m.remaining,
            m.sent,
            m.failed,
            m.bounced,
            m.complained,
            m.waiting_kind,
            throughputs[m.id or 0].speed(now) or 0.0,
        )
        for m in rows
    ]
    beats = heartbeats.engines(session)
    live = len(beats) - len(heartbeats.lost_ids(beats, now))
    return SendingFigures(mailings, live)
