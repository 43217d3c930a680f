"""The engines on the database, as their heartbeats tell: the lines of ``sendstatus engines``
and of the dashboard's E screen."""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo

from sendstatus_tui.core.coordination import heartbeats
from sendstatus_tui.core.model.models import EngineHeartbeat, RelayBreaker
from sendstatus_tui.core.model.when import format_named

NO_ENGINE = "no engine running on this database"


@dataclass(frozen=True)
class EngineShown:
    """One engine in three parts, e.g. "mailer-1 pid 4242: leader, since 2030-03-04 10:00",
    "sending 3, 7; 4,500 sent, 20 msg/s" and "4 relay connections (why)"."""

    who: str
    work: str
    relay: str
    lost: bool


def engine_shown(
    row: EngineHeartbeat,
    now: datetime,
    zone: tzinfo,
    lost: bool,
    down: Sequence[RelayBreaker] = (),
) -> EngineShown:
    """``lost``: from ``heartbeats.lost_ids`` (silent for LOST_AFTER, or a leader superseded);
    ``down``: the relays this engine finds down (core/coordination/relay_breakers.py)."""
    found_down = "".join(
        f"; relay {breaker.relay} down since {format_named(breaker.down_since, zone)}"
        f" ({breaker.reason})"
        for breaker in down
        if breaker.engine_id == row.id
    )
    silent = int((now - row.heartbeat_at).total_seconds())
    role = f"lost (silent {silent} s)" if lost else row.role
    sending = ", ".join(map(str, heartbeats.sending_ids(row))) or "nothing"
    return EngineShown(
        who=f"{row.host} pid {row.pid}: {role}, since {format_named(row.started_at, zone)}",
        work=f"sending {sending}; {row.sent:,} sent, {row.rate:,.0f} msg/s",
        relay=f"{row.connections} relay connection{'' if row.connections == 1 else 's'}"
        + (f" ({row.connections_reason})" if row.connections_reason else "")
        + found_down,
        lost=lost,
    )


def engine_line(
    row: EngineHeartbeat,
    now: datetime,
    zone: tzinfo,
    lost: bool,
    down: Sequence[RelayBreaker] = (),
) -> str:
    """The engine on one line (``sendstatus engines``)."""
    shown = engine_shown(row, now, zone, lost, down)
    return f"{shown.who}; {shown.work}; {shown.relay}"
