"""Reading the mailings: ``ls`` (the panes as text or JSON) and ``show`` (one in full).
Neither imports textual, so that they answer quickly enough for a shell loop."""

import json
from datetime import timedelta
from typing import Any

from sendstatus_tui.cli.context import Access, Context, mailing_id
from sendstatus_tui.core.coordination import lease
from sendstatus_tui.core.model import lifecycle
from sendstatus_tui.core.model.models import utc_now
from sendstatus_tui.core.model.states import Area, State
from sendstatus_tui.core.reads.details import read_details
from sendstatus_tui.core.reads.listing import list_mailings, summary
from sendstatus_tui.core.reads.throughput import read_throughput
from sendstatus_tui.views.details import show_text
from sendstatus_tui.views.listing import render_panes

SPEED_MINUTES = timedelta(minutes=2)  # what a speed now is measured over, at most


def register(commands: Any, context: Context) -> None:
    ls = commands.add_parser("ls", parents=[context.common], help="list mailings by pane")
    ls.add_argument("--json", action="store_true", help="a JSON array, one object per mailing")
    ls.add_argument("--area", choices=[a.value for a in Area], help="only this pane")
    ls.set_defaults(run=lambda args: _ls(args, context))

    show = commands.add_parser("show", parents=[context.common], help="one mailing in detail")
    show.add_argument("id", type=mailing_id)
    show.add_argument("--json", action="store_true")
    show.set_defaults(run=lambda args: _show(args, context))


def _ls(args: Any, context: Context) -> None:
    area = Area(args.area) if args.area else None
    now = utc_now()
    with context.store(args, Access.READ).read() as session:
        mailings = list_mailings(session, area)
        holder = lease.current(session)
        sending = [m.id for m in mailings if m.id is not None and m.state == State.SENDING]
        throughputs = read_throughput(session, sending, now - SPEED_MINUTES)
    running = holder is not None and holder.expires_at > now  # as the dashboard judges it
    # messages per second, from the minutes the engines store; none while no engine runs
    speeds: dict[int | None, float | None] = {
        i: t.speed(now) if running else None for i, t in throughputs.items()
    }
    if args.json:
        listed = [{**summary(m), "speed_per_second": _rounded(speeds.get(m.id))} for m in mailings]
        print(json.dumps(listed, indent=2))
        return
    areas = [area] if area else [Area.NOW, Area.SCHEDULED, Area.STANDBY]
    zone = context.zone(args)
    print(render_panes(mailings, areas, zone, now=now, engine_running=running, speeds=speeds))


def _rounded(speed: float | None) -> float | None:
    return None if speed is None else round(speed, 3)


def _show(args: Any, context: Context) -> None:
    with context.store(args, Access.READ).read() as session:
        details = read_details(session, lifecycle.get(session, args.id))
    if args.json:
        print(json.dumps(details.as_json(), indent=2))
    else:
        print(show_text(details, context.zone(args)))
