"""``sendstatus relay add|set|rm|ls``: the relays every engine of the database sends
through (core/model/relays.py), and which engines find which of them down."""

import argparse
import json
from datetime import tzinfo
from typing import Any

from sqlmodel import select

from sendstatus_tui.cli.context import Access, Context
from sendstatus_tui.core.coordination import relay_breakers
from sendstatus_tui.core.model import audit, relays
from sendstatus_tui.core.model.models import EngineHeartbeat, Relay, RelayBreaker
from sendstatus_tui.core.model.relays import RelayChange
from sendstatus_tui.core.model.when import format_named
from sendstatus_tui.core.reads.listing import iso
from sendstatus_tui.core.store.store import Store

_CREDENTIALS = (
    "Credentials never go in the URL nor the database: each engine reads them from"
    " SENDSTATUS_RELAY_<NAME>_USER and SENDSTATUS_RELAY_<NAME>_PASSWORD (NAME in capitals,"
    " - as _) or a [relay.NAME] table (username, password) of its credentials file; an"
    " engine that lacks a relay's credentials leaves that relay out and says so."
)


def register(commands: Any, context: Context) -> None:
    relay = commands.add_parser(
        "relay",
        parents=[context.common],
        help="the relays engines send through",
        description="Relays stored in the database, used by every engine, which follows a"
        " change within seconds. Messages are spread over the relays by weight (a mailing"
        " may name its own: `mailing add --relay NAME[,NAME]`); a relay an engine cannot"
        " reach gets no messages from it until it answers again. --smtp overrides them all"
        " for one process. " + _CREDENTIALS,
    )
    verbs = relay.add_subparsers(dest="relay_command", metavar="COMMAND")
    verbs.required = True
    common = _without_engine_rate(context.common)
    add = _with_options(verbs.add_parser("add", parents=[common], help="add a relay"))
    add.add_argument("name", metavar="NAME")
    add.add_argument(
        "url", metavar="URL", help="smtp://HOST[:PORT], smtps://HOST[:PORT] or maildir:DIR"
    )
    add.set_defaults(run=lambda args: _add(args, context))
    change = _with_options(
        verbs.add_parser(
            "set",
            parents=[common],
            help="change a relay (what is not given stays)",
        )
    )
    change.add_argument("name", metavar="NAME")
    change.add_argument("url", metavar="URL", nargs="?", help="its new URL")
    change.set_defaults(run=lambda args: _set(args, context))
    remove = verbs.add_parser("rm", parents=[context.common], help="remove a relay")
    remove.add_argument("name", metavar="NAME")
    remove.set_defaults(run=lambda args: _remove(args, context))
    listing = verbs.add_parser(
        "ls", parents=[context.common], help="the relays, and which engines find them down"
    )
    listing.add_argument("--json", action="store_true", help="a JSON array, one object each")
    listing.set_defaults(
        run=lambda args: run_ls(args, context.store(args, Access.READ), context.zone(args))
    )


def _without_engine_rate(common: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The global options but --rate, which after ``relay add`` and ``relay set`` is the
    relay's (before the command it is still an engine's cap)."""
    parent = argparse.ArgumentParser(add_help=False, argument_default=argparse.SUPPRESS)
    for action in common._actions:  # argparse keeps no public list
        if "--rate" not in action.option_strings:
            parent._add_action(action)
    return parent


def _with_options(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--weight", type=int, metavar="N", help="its share (1 to 1000; default 1)")
    parser.add_argument(
        "--rate",
        dest="relay_rate",
        metavar="RATE",
        help="its speed, shared by every engine, e.g. 36000/h (unlimited: none; default: none)",
    )
    parser.add_argument(
        "--connections",
        type=int,
        metavar="N",
        help="each engine's most connections towards it (default: the URL's ?pool=, else 64)",
    )
    return parser


def _change(args: Any) -> RelayChange:
    return RelayChange(
        url=args.url, weight=args.weight, rate=args.relay_rate, connections=args.connections
    )


def _add(args: Any, context: Context) -> None:
    with context.store(args, Access.CHANGE).write() as session:
        relay = relays.add(session, args.name, _change(args))
        audit.record(session, audit.Change.SETTING, detail=f"relay {_described(relay)} added")
        print(f"relay {_described(relay)} added")


def _set(args: Any, context: Context) -> None:
    change = _change(args)
    if change == RelayChange():
        raise relays.RelaySettingError(
            f"relay set {args.name}: what? (a URL, --weight, --rate or --connections)"
        )
    with context.store(args, Access.CHANGE).write() as session:
        relay = relays.change(session, args.name, change)
        audit.record(session, audit.Change.SETTING, detail=f"relay {_described(relay)}")
        print(f"relay {_described(relay)}")


def _remove(args: Any, context: Context) -> None:
    with context.store(args, Access.CHANGE).write() as session:
        relays.remove(session, args.name)
        audit.record(session, audit.Change.SETTING, detail=f"relay {args.name} removed")
    print(f"relay {args.name} removed")


def _described(relay: Relay) -> str:
    """``main = smtp://relay.example.com:587, weight 2, rate 100/s, 8 connections``."""
    parts = [f"weight {relay.weight}"]
    if relay.rate:
        parts.append(f"rate {relay.rate}")
    if relay.connections:
        parts.append(f"at most {relay.connections} connections per engine")
    return f"{relay.name} = {relays.shown_url(relay)}, {', '.join(parts)}"


def run_ls(args: Any, store: Store, zone: tzinfo) -> None:
    with store.read() as session:
        stored = relays.all_relays(session)
        downs = relay_breakers.breakers(session)
        engines = {row.id: row for row in session.exec(select(EngineHeartbeat))}
    if args.json:
        print(json.dumps([_as_json(r, downs, engines) for r in stored], indent=2))
        return
    if not stored:
        print(
            "no relay stored: engines send to the default maildir"
            " (add one: sendstatus relay add NAME URL)"
        )
        return
    for relay in stored:
        down = [d for d in downs if d.relay == relay.name]
        state = "up" if not down else _down_line(down, engines, zone)
        print(f"{_described(relay)}; {state}")


def _down_line(down: list[RelayBreaker], engines: dict[str, EngineHeartbeat], zone: tzinfo) -> str:
    who = ", ".join(_engine_name(d.engine_id, engines) for d in down)
    first = down[0]
    return f"down for {who} since {format_named(first.down_since, zone)} ({first.reason})"


def _engine_name(engine_id: str, engines: dict[str, EngineHeartbeat]) -> str:
    row = engines.get(engine_id)
    return f"{row.host} pid {row.pid}" if row is not None else engine_id


def _as_json(
    relay: Relay, downs: list[RelayBreaker], engines: dict[str, EngineHeartbeat]
) -> dict[str, object]:
    return {
        "name": relay.name,
        "url": relays.shown_url(relay),
        "weight": relay.weight,
        "rate": relay.rate,
        "connections": relay.connections,
        "down": [
            {
                "engine": d.engine_id,
                "host": engines[d.engine_id].host if d.engine_id in engines else None,
                "pid": engines[d.engine_id].pid if d.engine_id in engines else None,
                "since": iso(d.down_since),
                "reason": d.reason,
            }
            for d in downs
            if d.relay == relay.name
        ],
    }
