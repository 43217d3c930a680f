"""Planning and steering mailings: ``send-now``, ``schedule``, ``stop``, ``rm`` and
``move`` (DESIGN.md §1, the reference page's rules)."""

import sys
from collections.abc import Callable
from typing import Any

from sqlmodel import Session

from sendstatus_tui import config
from sendstatus_tui.cli import after_send, windows
from sendstatus_tui.cli.context import Access, Context, mailing_id
from sendstatus_tui.core.model import guard, lifecycle, relays
from sendstatus_tui.core.model.models import Mailing
from sendstatus_tui.core.model.queue import Direction, queue_end
from sendstatus_tui.core.model.states import Action, next_state
from sendstatus_tui.core.model.when import format_named, parse_when, typed_zone


def register(commands: Any, context: Context) -> None:
    common = context.common
    send_now = commands.add_parser("send-now", parents=[common], help="send a mailing now")
    send_now.add_argument("id", type=mailing_id)
    send_now.add_argument("--yes", action="store_true", help="confirm without asking")
    windows.add_option(send_now)
    _add_relay_option(send_now)
    send_now.set_defaults(run=lambda args: _send_now(args, context))

    schedule = commands.add_parser(
        "schedule", parents=[common], help="schedule at a time, or enqueue sequentially"
    )
    schedule.add_argument("id", type=mailing_id)
    when = schedule.add_mutually_exclusive_group(required=True)
    when.add_argument("--at", metavar="WHEN", help="'YYYY-MM-DD HH:MM' (or ISO 8601)")
    when.add_argument("--sequential", action="store_true", help="append to the sequential queue")
    schedule.add_argument("--yes", action="store_true", help="confirm without asking")
    windows.add_option(schedule)
    _add_relay_option(schedule)
    schedule.set_defaults(run=lambda args: _schedule(args, context))

    stop = commands.add_parser("stop", parents=[common], help="stop and park a mailing")
    stop.add_argument("id", type=mailing_id)
    stop.set_defaults(run=lambda args: _stop(args, context))

    rm = commands.add_parser("rm", parents=[common], help="delete a parked mailing")
    rm.add_argument("id", type=mailing_id)
    rm.add_argument("--yes", action="store_true", help="confirm without asking")
    rm.set_defaults(run=lambda args: _rm(args, context))

    move = commands.add_parser("move", parents=[common], help="reorder the sequential queue")
    move.add_argument("id", type=mailing_id)
    move.add_argument("direction", choices=[d.value for d in Direction])
    move.set_defaults(run=lambda args: _move(args, context))


def _add_relay_option(parser: Any) -> None:
    parser.add_argument(
        "--relay",
        metavar="NAME[,NAME]",
        help="the relays it goes through from now on (see `sendstatus relay ls`);"
        f" '{relays.EVERY}': every relay; default: the ones it has",
    )


def _check_relays(args: Any, session: Session) -> None:
    """Refuses an unknown relay before anything is asked or written."""
    if args.relay is not None:
        relays.chosen(session, args.relay)


def _set_choices(args: Any, session: Session, window: str | None) -> None:
    """Gives the mailing the window and relays given with the send choice, in the
    transaction that plans it."""
    if windows.given(args):
        lifecycle.set_window(session, args.id, window)
    if args.relay is not None:
        lifecycle.set_relays(session, args.id, relays.chosen(session, args.relay))


def _described(args: Any, mailing: Mailing) -> str:
    """How a planning command's confirmation ends: the window, and the relays when given."""
    chosen = ""
    if args.relay is not None:
        chosen = f"; through {mailing.relays.replace(',', ', ')}" if mailing.relays else ""
        chosen = chosen or "; through every relay"
    return windows.described(mailing.window) + chosen


def enqueued_message(result: lifecycle.Enqueued) -> str:
    if result.promoted:
        return "first in the sequential queue: sending now (starting up)"
    return f"queued sequentially at position {result.position}"


def confirm_after_guard(args: Any, mailing: Mailing, confirm: Callable[[Any, str], None]) -> None:
    """A mailing the guard stopped: says why, and asks before sending it again."""
    if not guard.is_guard_stop(mailing.state_reason):
        return
    print(
        f"warning: mailing {mailing.id} was {mailing.state_reason}; sending it again starts"
        " the guard's window afresh",
        file=sys.stderr,
    )
    confirm(args, "send it again?")


def _send_now(args: Any, context: Context) -> None:
    with context.store(args, Access.CHANGE).read() as session:
        mailing = lifecycle.get(session, args.id)
        next_state(mailing.state, Action.SEND_NOW, mailing.id)  # refuse before asking
        window = windows.stored(args, mailing.scheduled_zone) if windows.given(args) else None
        _check_relays(args, session)
        after_send.confirm_unsubscribe(args, mailing, context.confirm)
        confirm_after_guard(args, mailing, context.confirm)
    with context.store(args, Access.CHANGE).write() as session:
        _set_choices(args, session, window)
        mailing = lifecycle.send_now(session, args.id)
    print(
        f"mailing {mailing.id} {mailing.name!r}: sending now (starting up)"
        + _described(args, mailing)
    )


def _schedule(args: Any, context: Context) -> None:
    store = context.store(args, Access.CHANGE)
    if args.at:
        when = parse_when(args.at, config.zone_name(args.tz))
        typed_in = typed_zone(args.at, config.zone_name(args.tz))
        with store.read() as session:
            mailing = lifecycle.get(session, args.id)
            next_state(mailing.state, Action.SCHEDULE_AT, mailing.id)  # refuse before asking
            window = windows.stored(args, typed_in) if windows.given(args) else None
            _check_relays(args, session)
            after_send.confirm_unsubscribe(args, mailing, context.confirm)
        confirm_after_guard(args, mailing, context.confirm)
        with store.write() as session:
            _set_choices(args, session, window)
            mailing = lifecycle.schedule_at(session, args.id, when, zone_name=typed_in)
        local = format_named(when, context.zone(args))
        described = _described(args, mailing)
        print(f"mailing {mailing.id} {mailing.name!r}: scheduled at {local}{described}")
        return
    with store.read() as session:
        mailing = lifecycle.get(session, args.id)
        next_state(mailing.state, Action.ENQUEUE, mailing.id)  # refuse before asking
        window = windows.stored(args, mailing.scheduled_zone) if windows.given(args) else None
        _check_relays(args, session)
        after_send.confirm_unsubscribe(args, mailing, context.confirm)
        confirm_after_guard(args, mailing, context.confirm)
        context.confirm_sequential(args, session, f"mailing {mailing.id} {mailing.name!r}")
    with store.write() as session:
        _set_choices(args, session, window)
        enqueued = lifecycle.enqueue(session, args.id)
        outcome = enqueued_message(enqueued) + _described(args, enqueued.mailing)
    print(f"mailing {args.id} {mailing.name!r}: {outcome}")


def _stop(args: Any, context: Context) -> None:
    with context.store(args, Access.CHANGE).write() as session:
        mailing = lifecycle.stop(session, args.id)
    print(f"mailing {mailing.id} {mailing.name!r}: stopped, parked in Sends to schedule")


def _rm(args: Any, context: Context) -> None:
    store = context.store(args, Access.CHANGE)
    with store.read() as session:
        mailing = lifecycle.get(session, args.id)
        lifecycle.check_deletable(session, mailing)  # refuse before asking
    context.confirm(args, f"delete mailing {mailing.id} {mailing.name!r} and its recipients?")
    with store.write() as session:
        lifecycle.delete(session, args.id)
    print(f"mailing {mailing.id} {mailing.name!r}: deleted")


def _move(args: Any, context: Context) -> None:
    with context.store(args, Access.CHANGE).write() as session:
        direction = Direction(args.direction)
        moved = lifecycle.move(session, args.id, direction)
    if moved.changed:
        print(f"mailing {args.id}: position {moved.after} in the sequential queue")
    else:
        print(
            f"mailing {args.id} is already {queue_end(direction)} in the sequential queue:"
            " nothing changed"
        )
