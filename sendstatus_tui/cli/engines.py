"""``sendstatus engines``: the engines on this database, as their heartbeats tell."""

import json
from datetime import tzinfo
from typing import Any

from sendstatus_tui.cli.context import Access, Context
from sendstatus_tui.core.coordination import heartbeats, relay_breakers
from sendstatus_tui.core.model.models import EngineHeartbeat, RelayBreaker, utc_now
from sendstatus_tui.core.reads.listing import iso
from sendstatus_tui.core.store.store import Store
from sendstatus_tui.views.engines import NO_ENGINE, engine_line

FIELDS = "id, host, pid, role, started_at, heartbeat_at, sending, sent, rate"


def register(commands: Any, context: Context) -> None:
    parser = commands.add_parser(
        "engines",
        parents=[context.common],
        help="the engines running on this database",
        description="The engines on this database, from the heartbeat each writes every"
        " second: who leads, what each sends, how fast, and its connections to the relay."
        f" An engine silent for {heartbeats.LOST_AFTER.seconds} s, or a leader whose lead"
        " another engine has taken since, is shown as lost."
        f" --json fields: {FIELDS}, connections, connections_reason, lost, relays_down (the"
        " relays it finds down: relay, since, reason).",
    )
    parser.add_argument("--json", action="store_true", help="a JSON array, one object each")
    parser.set_defaults(
        run=lambda args: run_engines(args, context.store(args, Access.READ), context.zone(args))
    )


def run_engines(args: Any, store: Store, zone: tzinfo) -> None:
    with store.read() as session:
        rows = heartbeats.engines(session)
        down = relay_breakers.breakers(session)
    now = utc_now()
    lost = heartbeats.lost_ids(rows, now)
    if args.json:
        print(json.dumps([_as_json(row, row.id in lost, down) for row in rows], indent=2))
        return
    if not rows:
        print(f"{NO_ENGINE} (start one with: sendstatus engine)")
        return
    for row in rows:
        print(engine_line(row, now, zone, row.id in lost, down))


def _as_json(row: EngineHeartbeat, lost: bool, down: list[RelayBreaker]) -> dict[str, object]:
    return {
        "id": row.id,
        "host": row.host,
        "pid": row.pid,
        "role": row.role,
        "started_at": iso(row.started_at),
        "heartbeat_at": iso(row.heartbeat_at),
        "sending": heartbeats.sending_ids(row),
        "sent": row.sent,
        "rate": row.rate,
        "connections": row.connections,
        "connections_reason": row.connections_reason,
        "lost": lost,
        "relays_down": [
            {"relay": b.relay, "since": iso(b.down_since), "reason": b.reason}
            for b in down
            if b.engine_id == row.id
        ],
    }
