"""``sendstatus mailing add``: a new mailing from a message and a CSV of recipients, parked
or planned at once; ``mailing copy``: a new parked mailing like an existing one."""

import contextlib
import dataclasses
import signal
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlmodel import Session

from sendstatus_tui import config
from sendstatus_tui.cli import after_send, windows
from sendstatus_tui.cli.context import Access, CommandError, Context, counted, mailing_id
from sendstatus_tui.cli.planning import enqueued_message
from sendstatus_tui.core.importing.copying import copy_mailing
from sendstatus_tui.core.importing.drafts import (
    add_mailing,
    draft_from_files,
    remove_abandoned_imports,
)
from sendstatus_tui.core.importing.recipients import reported_rows
from sendstatus_tui.core.model import lifecycle
from sendstatus_tui.core.model.when import format_named, parse_when, typed_zone, zone


def register(commands: Any, context: Context) -> None:
    mailing = commands.add_parser("mailing", help="create mailings", parents=[context.common])
    mailing_commands = mailing.add_subparsers(dest="mailing_command", metavar="COMMAND")
    mailing_commands.required = True
    add = mailing_commands.add_parser(
        "add",
        parents=[context.common],
        help="create a mailing from a message and a CSV of recipients",
        description="Create a mailing. Recipients come from a CSV file with a header row and"
        " an 'email' column; other columns are personalisation fields.",
    )
    add.add_argument("--name", required=True)
    add.add_argument("--subject", required=True)
    add.add_argument("--from", dest="sender", required=True, metavar="ADDR")
    add.add_argument("--text", type=Path, metavar="FILE", help="plain-text body (UTF-8)")
    add.add_argument("--html", type=Path, metavar="FILE", help="HTML body (UTF-8)")
    add.add_argument("--recipients", type=Path, required=True, metavar="CSV")
    add.add_argument(
        "--skip-invalid", action="store_true", help="import the valid rows, skip the invalid ones"
    )
    plan = add.add_mutually_exclusive_group()
    plan.add_argument("--now", action="store_true", help="send now")
    plan.add_argument("--at", metavar="WHEN", help="send at 'YYYY-MM-DD HH:MM' (or ISO 8601)")
    plan.add_argument("--sequential", action="store_true", help="enqueue sequentially")
    plan.add_argument("--standby", action="store_true", help="decide later (the default)")
    add.add_argument(
        "--unsubscribe-url",
        metavar="TEMPLATE",
        help="one-click unsubscribe URL (https; {unsubscribe_token}, a token sendstatus signs"
        " and `sendstatus serve` answers, e.g. https://shop.example.com/u/{unsubscribe_token};"
        " also {field} placeholders from the CSV or {email}); default: `config get"
        " unsubscribe_url`",
    )
    add.add_argument(
        "--unsubscribe-mailto",
        metavar="ADDR",
        help="unsubscribe address for List-Unsubscribe; default: `config get unsubscribe_mailto`",
    )
    windows.add_option(add)
    add.add_argument(
        "--relay",
        metavar="NAME[,NAME]",
        help="the relays it goes through (see `sendstatus relay ls`); default: every relay"
        " that exists when each message goes out",
    )
    add.add_argument("--yes", action="store_true", help="confirm without asking")
    add.set_defaults(run=lambda args: _add(args, context))
    copy = mailing_commands.add_parser(
        "copy",
        parents=[context.common],
        help="a new parked mailing with the message, recipients and settings of another",
        description="Creates a mailing parked in Sends to schedule (decide later) with the"
        " same message, recipients (with their personalisation fields) and unsubscribe"
        " settings as mailing ID, none of its outcomes: every recipient is pending again."
        " Addresses put on the suppression list since are left out.",
    )
    copy.add_argument("id", type=mailing_id)
    copy.add_argument("--name", help="the new mailing's name (default: the same, marked copy)")
    copy.set_defaults(run=lambda args: _copy(args, context))


def _copy(args: Any, context: Context) -> None:
    store = context.store(args, Access.CHANGE)
    with _interrupted_by_sigterm():
        copied = copy_mailing(store, args.id, args.name)
    dropped = f", {copied.suppressed:,} suppressed dropped" if copied.suppressed else ""
    print(
        f"mailing {copied.mailing_id} {copied.name!r} created as a copy of mailing {args.id}"
        f" with {counted(copied.recipients, 'recipient')}{dropped};"
        " parked in Sends to schedule (decide later)"
    )


def _add(args: Any, context: Context) -> None:
    draft = draft_from_files(args.name, args.subject, args.sender, args.text, args.html)
    draft = dataclasses.replace(
        draft,
        unsubscribe_url=args.unsubscribe_url,
        unsubscribe_mailto=args.unsubscribe_mailto,
        # the zone it is planned in: a window that names none is read in it
        window=args.window,
        zone_name=config.zone_name(args.tz),
        relays=args.relay,
    )
    when = parse_when(args.at, config.zone_name(args.tz)) if args.at else None
    store = context.store(args, Access.CREATE)
    if args.sequential:
        with store.read() as session:
            context.confirm_sequential(args, session, "the new mailing")
    planned = args.now or when is not None or args.sequential
    ask_later = False

    def plan(session: Session, mailing: Any) -> str:
        # runs in the transaction that shows the imported mailing
        nonlocal ask_later
        if planned and after_send.needs_unsubscribe_confirmation(args, mailing):
            # not asked inside the transaction, which would hold the database meanwhile:
            # the mailing is created parked, and planned once confirmed
            ask_later = sys.stdin.isatty()
            if not ask_later:
                after_send.confirm_unsubscribe(args, mailing, context.confirm)  # refuses
        return _plan(args, session, mailing.id, when) if not ask_later else ""

    for abandoned in remove_abandoned_imports(store):
        print(f"removed mailing {abandoned}, whose import was interrupted", file=sys.stderr)
    with _interrupted_by_sigterm():
        mailing, report, outcome = add_mailing(
            store,
            draft,
            args.recipients,
            skip_invalid=args.skip_invalid,
            then=plan,
            on_interrupt=_removing_import,
        )
    assert mailing.id is not None  # flushed by add_mailing
    if ask_later:
        print(f"mailing {mailing.id} {mailing.name!r} created, parked in Sends to schedule")
        try:
            after_send.confirm_unsubscribe(args, mailing, context.confirm)
        except CommandError:
            raise CommandError(f"not confirmed; mailing {mailing.id} stays parked") from None
        with store.write() as session:
            outcome = _plan(args, session, mailing.id, when)
    print(
        f"mailing {mailing.id} {mailing.name!r} created with {report.counted()}; {outcome}"
        + windows.described(mailing.window)
    )
    if report.skipped:
        print(f"warning: skipped {counted(len(report.skipped), 'invalid row')}:", file=sys.stderr)
        print_row_errors(report.skipped)


def print_row_errors(errors: Any) -> None:
    for line in reported_rows(errors):
        print(f"  {line}", file=sys.stderr)


def _removing_import(written: int) -> None:
    print(
        f"interrupted: removing the {counted(written, 'recipient')} imported so far...",
        file=sys.stderr,
        flush=True,
    )


@contextlib.contextmanager
def _interrupted_by_sigterm() -> Iterator[None]:
    """SIGTERM ends the command as Ctrl-C does (what it wrote is removed), instead of
    killing it on the spot."""

    def interrupt(_signal: int, _frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _plan(args: Any, session: Session, mailing_id: int, when: datetime | None) -> str:
    """Applies the add command's send choice; says what became of the mailing."""
    if args.now:
        lifecycle.send_now(session, mailing_id)
        return "sending now (starting up)"
    if when is not None:
        zone_name = config.zone_name(args.tz)
        lifecycle.schedule_at(session, mailing_id, when, zone_name=typed_zone(args.at, zone_name))
        return f"scheduled at {format_named(when, zone(zone_name))}"
    if args.sequential:
        return enqueued_message(lifecycle.enqueue(session, mailing_id))
    return "parked in Sends to schedule (decide later)"
