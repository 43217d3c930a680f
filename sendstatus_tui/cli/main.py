"""The ``sendstatus`` command line (DESIGN.md §3).

Commands other than the dashboard never import textual, so that ``sendstatus ls`` answers
quickly enough to run in a shell loop.
"""

import argparse
import contextlib
import dataclasses
import json
import os
import shutil
import signal
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

from sendstatus_tui import config
from sendstatus_tui.cli import after_send as cli_after_send
from sendstatus_tui.cli import engines as engines_command
from sendstatus_tui.cli import settings as config_command
from sendstatus_tui.cli.log import add_log_command
from sendstatus_tui.core.importing.drafts import (
    add_mailing,
    draft_from_files,
    remove_abandoned_imports,
)
from sendstatus_tui.core.importing.recipients import MAX_REPORTED_ERRORS, RecipientsRefused
from sendstatus_tui.core.model import audit, lifecycle
from sendstatus_tui.core.model.queue import Direction
from sendstatus_tui.core.model.states import STATE_WORDS, Action, Area, State, next_state
from sendstatus_tui.core.model.when import format_named, parse_when, zone
from sendstatus_tui.core.reads.details import read_details
from sendstatus_tui.core.reads.listing import list_mailings, summary
from sendstatus_tui.core.store import settings
from sendstatus_tui.core.store.migrate import SchemaNotCurrent
from sendstatus_tui.core.store.store import DatabaseMissing, Store, may_write
from sendstatus_tui.errors import SendStatusError, mask_url
from sendstatus_tui.views.details import show_text
from sendstatus_tui.views.listing import render_panes


class CommandError(SendStatusError):
    """Ends the command with ``error: <message>`` and exit status 1."""


# what the command line suggests after some errors, in its own words (core's messages name
# no command)
_HINTS: dict[type[SendStatusError], str] = {
    lifecycle.TimeInPast: "; use send-now to send immediately",
    DatabaseMissing: "; `sendstatus init` creates one (so do `mailing add` and the dashboard)",
    SchemaNotCurrent: "; `sendstatus init` brings it up to date (so does any command that writes)",
}
# how each kind of command opens its database (core/store.py): commands that only read
# never create, migrate nor write it; those that change mailings migrate an existing one;
# init, mailing add, the dashboard and the engine also create a missing one
READS = {"create": False, "migrate": False, "read_only": True}
CHANGES = {"create": False, "migrate": True}
CREATES = {"create": True, "migrate": True}
# the dashboard as a pure client reads, and writes only what its operator asks for
ATTACHES = {"create": False, "migrate": False}
STORE_ACCESS = {"read": READS, "change": CHANGES, "create": CREATES}


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    audit.operating_from(audit.Source.CLI)
    for option in ("db", "tz", "smtp", "rate"):  # global options, absent when not given
        vars(args).setdefault(option, None)
    if args.command is None:
        args.run = _cmd_dashboard
    try:
        args.run(args)
        sys.stdout.flush()  # a reader that left is found here, not at the interpreter's exit
    except BrokenPipeError:  # the reader of the output left (`sendstatus ls | head -1`)
        _silence_stdout()
        return SIGPIPE_STATUS
    except SendStatusError as exc:  # every error raised on purpose; anything else is a bug
        _forget_new_database(args)
        message = str(exc)
        if isinstance(exc, lifecycle.TimeInPast):  # in the zone the time was typed in
            message = exc.in_zone(zone(config.zone_name(args.tz)))
        _print_error(_masked(message + _hint(exc), args))
        if isinstance(exc, RecipientsRefused):
            _print_row_errors(exc.errors)
        return 1
    except KeyboardInterrupt:
        _forget_new_database(args)
        _print_error("interrupted; nothing was changed by the unfinished command")
        return 130
    finally:
        if getattr(args, "store", None) is not None:
            args.store.dispose()
    _report_opening(args)
    return 0


# --- commands ----------------------------------------------------------------------------


def _cmd_mailing_add(args) -> None:
    draft = draft_from_files(args.name, args.subject, args.sender, args.text, args.html)
    draft = dataclasses.replace(
        draft, unsubscribe_url=args.unsubscribe_url, unsubscribe_mailto=args.unsubscribe_mailto
    )
    when = parse_when(args.at, config.zone_name(args.tz)) if args.at else None
    store = _store(args, CREATES)
    if args.sequential:
        with store.read() as session:
            _confirm_sequential(args, session, "the new mailing")
    planned = args.now or when is not None or args.sequential
    ask_later = False

    def plan(session, mailing) -> str:
        # runs in the transaction that shows the imported mailing
        nonlocal ask_later
        if planned and cli_after_send.needs_unsubscribe_confirmation(args, mailing):
            # not asked inside the transaction, which would hold the database meanwhile:
            # the mailing is created parked, and planned once confirmed
            ask_later = sys.stdin.isatty()
            if not ask_later:
                cli_after_send.confirm_unsubscribe(args, mailing, _confirm)  # refuses
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
            cli_after_send.confirm_unsubscribe(args, mailing, _confirm)
        except CommandError:
            raise CommandError(f"not confirmed; mailing {mailing.id} stays parked") from None
        with store.write() as session:
            outcome = _plan(args, session, mailing.id, when)
    print(f"mailing {mailing.id} {mailing.name!r} created with {report.counted()}; {outcome}")
    if report.skipped:
        print(f"warning: skipped {_count(len(report.skipped), 'invalid row')}:", file=sys.stderr)
        _print_row_errors(report.skipped)


def _removing_import(written: int) -> None:
    print(
        f"interrupted: removing the {_count(written, 'recipient')} imported so far...",
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


def _plan(args, session, mailing_id: int, when) -> str:
    """Applies the add command's send choice; says what became of the mailing."""
    if args.now:
        lifecycle.send_now(session, mailing_id)
        return "sending now (starting up)"
    if when is not None:
        lifecycle.schedule_at(session, mailing_id, when)
        return f"scheduled at {format_named(when, zone(config.zone_name(args.tz)))}"
    if args.sequential:
        return _enqueued_message(lifecycle.enqueue(session, mailing_id))
    return "parked in Sends to schedule (decide later)"


def _cmd_ls(args) -> None:
    area = Area(args.area) if args.area else None
    with _store(args, READS).read() as session:
        mailings = list_mailings(session, area)
    if args.json:
        print(json.dumps([summary(m) for m in mailings], indent=2))
        return
    areas = [area] if area else [Area.NOW, Area.SCHEDULED, Area.STANDBY]
    print(render_panes(mailings, areas, zone(config.zone_name(args.tz))))


def _cmd_show(args) -> None:
    with _store(args, READS).read() as session:
        details = read_details(session, lifecycle.get(session, args.id))
    if args.json:
        print(json.dumps(details.as_json(), indent=2))
    else:
        print(show_text(details, zone(config.zone_name(args.tz))))


def _cmd_send_now(args) -> None:
    with _store(args, CHANGES).read() as session:
        mailing = lifecycle.get(session, args.id)
        next_state(mailing.state, Action.SEND_NOW, mailing.id)  # refuse before asking
        cli_after_send.confirm_unsubscribe(args, mailing, _confirm)
    with _store(args, CHANGES).write() as session:
        mailing = lifecycle.send_now(session, args.id)
    print(f"mailing {mailing.id} {mailing.name!r}: sending now (starting up)")


def _cmd_schedule(args) -> None:
    store = _store(args, CHANGES)
    if args.at:
        when = parse_when(args.at, config.zone_name(args.tz))
        with store.read() as session:
            mailing = lifecycle.get(session, args.id)
            next_state(mailing.state, Action.SCHEDULE_AT, mailing.id)  # refuse before asking
            cli_after_send.confirm_unsubscribe(args, mailing, _confirm)
        with store.write() as session:
            mailing = lifecycle.schedule_at(session, args.id, when)
        local = format_named(when, zone(config.zone_name(args.tz)))
        print(f"mailing {mailing.id} {mailing.name!r}: scheduled at {local}")
        return
    with store.read() as session:
        mailing = lifecycle.get(session, args.id)
        next_state(mailing.state, Action.ENQUEUE, mailing.id)  # refuse before asking
        cli_after_send.confirm_unsubscribe(args, mailing, _confirm)
        _confirm_sequential(args, session, f"mailing {mailing.id} {mailing.name!r}")
    with store.write() as session:
        outcome = _enqueued_message(lifecycle.enqueue(session, args.id))
    print(f"mailing {args.id} {mailing.name!r}: {outcome}")


def _cmd_stop(args) -> None:
    with _store(args, CHANGES).write() as session:
        mailing = lifecycle.stop(session, args.id)
    print(f"mailing {mailing.id} {mailing.name!r}: stopped, parked in Sends to schedule")


def _cmd_rm(args) -> None:
    store = _store(args, CHANGES)
    with store.read() as session:
        mailing = lifecycle.get(session, args.id)
        lifecycle.check_deletable(session, mailing)  # refuse before asking
    _confirm(args, f"delete mailing {mailing.id} {mailing.name!r} and its recipients?")
    with store.write() as session:
        lifecycle.delete(session, args.id)
    print(f"mailing {mailing.id} {mailing.name!r}: deleted")


def _cmd_dashboard(args) -> None:
    from sendstatus_tui.tui.launch.dashboard import run_dashboard

    # every setting is checked before the screen opens: an error is a line, not a screen;
    # the engine's ones even when another engine holds the lease (the next start needs them)
    zone_name = _zone_name(args)
    engine_wanted = not args.no_engine
    rate = None
    if engine_wanted:
        store = _store(args, CREATES)
        _report_opening(args)  # before the screen opens
        rate = _rate(args)
        _transport(args)  # checked now; the engine builds its own at each start
    else:  # a file it may not write is shown all the same (an action says it cannot write)
        store = _store(args, ATTACHES if may_write(config.db_url(args.db)) else READS)
    run_dashboard(
        store,
        zone_name=zone_name,
        relay_url=config.relay_url(args.smtp),
        rate_per_second=rate,
        engine_wanted=engine_wanted,
        blink=config.blink(args.no_blink),
    )


def _cmd_demo(args) -> None:
    from sendstatus_tui.tui.launch.dashboard import run_dashboard
    from sendstatus_tui.tui.launch.demo import DEMO_RATE_PER_SECOND, create_demo

    zone_name = _zone_name(args)
    print("preparing the demo database…", file=sys.stderr)
    store, transport, directory = create_demo()
    try:
        run_dashboard(
            store,
            zone_name=zone_name,
            rate_per_second=DEMO_RATE_PER_SECOND,
            blink=config.blink(args.no_blink),
            transport=("the demo's maildir", transport),
            log_file=directory / "engine.log",
            demo=True,
        )
    finally:
        store.dispose()
        if args.keep:
            print(
                f"demo files (database, maildir, engine log) kept in {directory}", file=sys.stderr
            )
        else:
            shutil.rmtree(directory, ignore_errors=True)
            print(f"demo files removed ({directory}; --keep keeps them)", file=sys.stderr)


def _cmd_engine(args) -> None:
    from sendstatus_tui.engine.headless import run_headless, run_supervisor

    # the database is created and migrated once, here, before any engine or worker uses it
    store = _store(args, CREATES)
    relay_url, transport, rate = _relay_url(args), _transport(args), _rate(args)
    _report_opening(args)  # before the engine's log starts
    if args.workers == 1:
        run_headless(config.db_url(args.db), relay_url, transport, rate)
        return
    store.dispose()  # the supervisor needs no connection
    run_supervisor(
        args.workers, _worker_environment(args), store.safe_url, relay_url, transport, rate
    )


def _worker_environment(args) -> dict[str, str]:
    """This command's settings, as the workers of ``engine --workers`` get them: through
    their environment, which (unlike the command line) other users cannot read."""
    given = {
        config.DB_ENV: config.db_url(args.db),
        config.SMTP_ENV: args.smtp,
        config.RATE_ENV: args.rate,
    }
    return {name: value for name, value in given.items() if value}


def _workers(text: str) -> int:
    from sendstatus_tui.engine.supervisor import cores

    if text == "auto":
        return cores()
    try:
        count = int(text)
    except ValueError:
        count = 0
    if count < 1:
        raise argparse.ArgumentTypeError(
            f"not a number of workers: {text!r} (give a whole number, 1 or more, or auto)"
        )
    return count


def _zone_name(args) -> str | None:
    """The operator's zone name, checked."""
    name = config.zone_name(args.tz)
    zone(name)
    return name


def _rate(args) -> float | None:
    """This process's engine's own cap (``--rate`` or its environment variable), under the
    contracted rate stored in the database, which every engine reads as it sends."""
    from sendstatus_tui.core.model.rates import parse_rate

    return parse_rate(config.rate(args.rate))


def _relay_url(args) -> str | None:
    """``--smtp`` (or its environment variable), else the relay stored in the database,
    else None: the default maildir."""
    if override := config.relay_url(args.smtp):
        return override
    with _store(args, CREATES).read() as session:
        return settings.read(session, "relay")


def _transport(args):
    """The relay's transport, from the relay URL and the credentials (nothing connects yet)."""
    from sendstatus_tui.engine.smtp.credentials import load_credentials
    from sendstatus_tui.engine.transports import transport_for

    return transport_for(_relay_url(args), load_credentials())


def _cmd_config(args) -> None:
    words = args.words
    changes = bool(words) and (words[0] in ("set", "unset") or len(words) > 1)
    config_command.run_config(args, _store(args, CHANGES if changes else READS))


def _cmd_engines(args) -> None:
    engines_command.run_engines(args, _store(args, READS), zone(_zone_name(args)))


def _cmd_move(args) -> None:
    with _store(args, CHANGES).write() as session:
        position = lifecycle.move(session, args.id, Direction(args.direction))
    print(f"mailing {args.id}: position {position} in the sequential queue")


# --- helpers -----------------------------------------------------------------------------


def _cmd_init(args) -> None:
    store = _store(args, CREATES, report=False)
    for abandoned in remove_abandoned_imports(store):
        print(f"removed mailing {abandoned}, whose import was interrupted")
    if store.created:
        print(f"created database {store.safe_url}")
    elif store.upgraded_from:
        print(f"upgraded database {store.safe_url} from schema {store.upgraded_from}")
    else:
        print(f"database {store.safe_url} is up to date")


def _store(args, opening: dict[str, bool], *, report: bool = True) -> Store:
    """The command's database, opened once and closed when the command ends (see main).
    A database created or upgraded on the way is said on stderr when the command succeeds
    (``report``)."""
    if getattr(args, "store", None) is None:
        args.store = Store(config.db_url(args.db), **opening)
        args.report_opening = report
    return args.store


def _report_opening(args) -> None:
    store = getattr(args, "store", None)
    if store is None or not args.report_opening:
        return
    args.report_opening = False  # once
    if store.created:
        print(f"created database {store.safe_url}", file=sys.stderr)
    elif store.upgraded_from:
        print(
            f"upgraded database {store.safe_url} from schema {store.upgraded_from}", file=sys.stderr
        )


def _forget_new_database(args) -> None:
    """A command that failed leaves no new database behind (nothing half-done)."""
    store = getattr(args, "store", None)
    if store is not None:
        with contextlib.suppress(SendStatusError, OSError):
            store.remove_if_unused()


def _hint(exc: SendStatusError) -> str:
    if isinstance(exc, SchemaNotCurrent) and not exc.upgradable:
        return ""
    if isinstance(exc, SchemaNotCurrent) and exc.revision is None:
        return "; `sendstatus init` creates its tables (so does `mailing add` or the dashboard)"
    return next((hint for kind, hint in _HINTS.items() if isinstance(exc, kind)), "")


def _confirm_sequential(args, session, what: str) -> None:
    """The reference page's warning: other sequential mailings are in progress or queued."""
    ahead = lifecycle.sequential_ahead(session)
    if not ahead:
        return
    names = ", ".join(f"{m.id} {m.name!r} ({STATE_WORDS[m.state]})" for m in ahead)
    position = sum(1 for m in ahead if m.state == State.QUEUED) + 1
    print(
        f"warning: other sequential mailings are in progress or queued: {names};"
        f" {what} will be number {position} in the sequential queue",
        file=sys.stderr,
    )
    _confirm(args, "enqueue it?")


def _confirm(args, question: str) -> None:
    if args.yes:
        return
    if not sys.stdin.isatty():
        raise CommandError(f"{question.rstrip('?')}: confirmation needed; pass --yes to confirm")
    answer = input(f"{question} [y/N] ").strip().lower()
    if answer not in ("y", "yes"):
        raise CommandError("not confirmed; nothing changed")


def _enqueued_message(result: lifecycle.Enqueued) -> str:
    if result.promoted:
        return "first in the sequential queue: sending now (starting up)"
    return f"queued sequentially at position {result.position}"


def _count(number: int, noun: str) -> str:
    return f"{number:,} {noun}{'' if number == 1 else 's'}"


def _masked(message: str, args) -> str:
    """``message`` with the passwords of the URLs given to this command masked (messages
    are built from masked URLs; this is the guard against a library quoting one)."""
    for url in (config.db_url(args.db), config.relay_url(args.smtp)):
        if url:
            message = message.replace(url, mask_url(url))
    return message


# as a command killed by SIGPIPE: what `git log | head -1` leaves in a pipeline
SIGPIPE_STATUS = 128 + 13


def _silence_stdout() -> None:
    """No more output, and no second BrokenPipeError when Python flushes it at exit."""
    with contextlib.suppress(OSError, ValueError):  # ValueError: no descriptor (captured)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def _print_error(message: str) -> None:
    print(f"error: {' '.join(message.splitlines())}", file=sys.stderr)  # always one line


def _print_row_errors(errors) -> None:
    for error in errors[:MAX_REPORTED_ERRORS]:
        print(f"  {error}", file=sys.stderr)
    if len(errors) > MAX_REPORTED_ERRORS:
        print(f"  ... and {len(errors) - MAX_REPORTED_ERRORS:,} more", file=sys.stderr)


# --- the parser --------------------------------------------------------------------------


def _mailing_id(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a mailing id: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"not a mailing id: {text!r}")
    return value


def _parser() -> argparse.ArgumentParser:
    # the global options are accepted before and after the command; SUPPRESS keeps a
    # subcommand's parser from resetting a value given before the command
    common = argparse.ArgumentParser(add_help=False, argument_default=argparse.SUPPRESS)
    common.add_argument(
        "--db",
        metavar="URL",
        help=f"database (SQLAlchemy URL; ${config.DB_ENV}; default: an SQLite file in the"
        " user's data directory)",
    )
    common.add_argument(
        "--tz",
        metavar="ZONE",
        help=f"your time zone for dates typed and shown (${config.TZ_ENV}; default: the system's)",
    )
    common.add_argument(
        "--smtp",
        metavar="URL",
        help=f"relay: smtp://HOST[:PORT], smtps://HOST[:PORT] or maildir:DIR (${config.SMTP_ENV};"
        " default: a maildir in the user's data directory); credentials come from"
        " SENDSTATUS_SMTP_USER/SENDSTATUS_SMTP_PASSWORD or the credentials file, never the URL",
    )
    common.add_argument(
        "--rate",
        metavar="RATE",
        help=f"the contracted sending speed, e.g. 36000/h, 600/min, 10/s (${config.RATE_ENV};"
        " default: unlimited)",
    )
    parser = argparse.ArgumentParser(
        prog="sendstatus",
        description="Send Status: plan, follow and steer email mailings. Without a command,"
        " opens the dashboard (with the engine in it unless another engine runs).",
        parents=[common],
    )
    parser.add_argument(
        "--no-engine",
        action="store_true",
        help="open the dashboard as a pure client: never start an engine in it",
    )
    parser.add_argument(
        "--no-blink",
        action="store_true",
        help=f"no blinking 'starting up' (${config.BLINK_ENV}=0 does the same)",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = commands.add_parser(
        "demo",
        parents=[common],
        help="the dashboard on a throwaway database with sample mailings",
        description="Open the dashboard on a throwaway database with sample mailings that"
        " deliver to a local maildir at a demo rate.",
    )
    demo.add_argument(
        "--no-blink", action="store_true", default=argparse.SUPPRESS, help="no blinking"
    )
    demo.add_argument(
        "--keep",
        action="store_true",
        help="keep the demo's files (database, maildir, engine log) instead of removing them",
    )
    demo.set_defaults(run=_cmd_demo)

    mailing = commands.add_parser("mailing", help="create mailings", parents=[common])
    mailing_commands = mailing.add_subparsers(dest="mailing_command", metavar="COMMAND")
    mailing_commands.required = True
    add = mailing_commands.add_parser(
        "add",
        parents=[common],
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
        help="one-click unsubscribe URL (https, {field} placeholders from the CSV or {email});"
        " default: `config get unsubscribe_url`",
    )
    add.add_argument(
        "--unsubscribe-mailto",
        metavar="ADDR",
        help="unsubscribe address for List-Unsubscribe; default: `config get unsubscribe_mailto`",
    )
    add.add_argument("--yes", action="store_true", help="confirm without asking")
    add.set_defaults(run=_cmd_mailing_add)

    ls = commands.add_parser("ls", parents=[common], help="list mailings by pane")
    ls.add_argument("--json", action="store_true", help="a JSON array, one object per mailing")
    ls.add_argument("--area", choices=[a.value for a in Area], help="only this pane")
    ls.set_defaults(run=_cmd_ls)

    show = commands.add_parser("show", parents=[common], help="one mailing in detail")
    show.add_argument("id", type=_mailing_id)
    show.add_argument("--json", action="store_true")
    show.set_defaults(run=_cmd_show)

    send_now = commands.add_parser("send-now", parents=[common], help="send a mailing now")
    send_now.add_argument("id", type=_mailing_id)
    send_now.add_argument("--yes", action="store_true", help="confirm without asking")
    send_now.set_defaults(run=_cmd_send_now)

    schedule = commands.add_parser(
        "schedule", parents=[common], help="schedule at a time, or enqueue sequentially"
    )
    schedule.add_argument("id", type=_mailing_id)
    when = schedule.add_mutually_exclusive_group(required=True)
    when.add_argument("--at", metavar="WHEN", help="'YYYY-MM-DD HH:MM' (or ISO 8601)")
    when.add_argument("--sequential", action="store_true", help="append to the sequential queue")
    schedule.add_argument("--yes", action="store_true", help="confirm without asking")
    schedule.set_defaults(run=_cmd_schedule)

    stop = commands.add_parser("stop", parents=[common], help="stop and park a mailing")
    stop.add_argument("id", type=_mailing_id)
    stop.set_defaults(run=_cmd_stop)

    rm = commands.add_parser("rm", parents=[common], help="delete a parked mailing")
    rm.add_argument("id", type=_mailing_id)
    rm.add_argument("--yes", action="store_true", help="confirm without asking")
    rm.set_defaults(run=_cmd_rm)

    engine = commands.add_parser(
        "engine",
        parents=[common],
        help="run the sending engine headless (for a service manager)",
        description="Run the sending engine without the dashboard. It logs to stderr and stops"
        " cleanly on SIGTERM or SIGINT, recording the batches in flight. With --workers N it"
        " runs N engines as processes of their own under one supervising process, which starts"
        " another in place of one that dies and stops them all on SIGTERM or SIGINT.",
    )
    engine.add_argument(
        "--workers",
        type=_workers,
        default=1,
        metavar="N|auto",
        help="engine processes on this host (auto: one per core; default: 1, this process itself)",
    )
    engine.set_defaults(run=_cmd_engine)

    move = commands.add_parser("move", parents=[common], help="reorder the sequential queue")
    move.add_argument("id", type=_mailing_id)
    move.add_argument("direction", choices=[d.value for d in Direction])
    move.set_defaults(run=_cmd_move)

    init = commands.add_parser(
        "init",
        parents=[common],
        help="create the database, or bring its schema up to date",
        description="Create the database (an SQLite file, or the tables in an existing"
        " PostgreSQL database) or bring its schema up to date. Commands that only read"
        " (ls, show, log, the dashboard with --no-engine) never do.",
    )
    init.set_defaults(run=_cmd_init)
    add_log_command(commands, common, lambda args: _store(args, READS))
    config_command.add_parser(commands, common, _cmd_config)
    engines_command.add_parser(commands, common, _cmd_engines)
    cli_after_send.add_parsers(
        commands,
        common,
        _mailing_id,
        cli_after_send.Hooks(
            lambda args, access: _store(args, STORE_ACCESS[access]), _confirm, _relay_url
        ),
    )
    return parser


if __name__ == "__main__":
    sys.exit(main())
