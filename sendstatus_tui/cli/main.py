"""The ``sendstatus`` command line (DESIGN.md §3): the parser, built from every command
group's ``register(commands, context)``, and what an error becomes (one ``error:`` line
and exit status 1; the parser's usage errors keep its status 2).

Commands other than the dashboard never import textual, so that ``sendstatus ls`` answers
quickly enough to run in a shell loop."""

import argparse
import contextlib
import os
import re
import sys
from collections.abc import Sequence
from typing import Any

from sendstatus_tui import config
from sendstatus_tui.cli import (
    after_send,
    dashboard,
    database,
    engine,
    engines,
    intake,
    log,
    mailing,
    planning,
    reading,
    relay,
    serve,
    settings,
)
from sendstatus_tui.cli.context import Context
from sendstatus_tui.core.importing.recipients import RecipientsRefused
from sendstatus_tui.core.model import audit, lifecycle
from sendstatus_tui.core.model.when import zone
from sendstatus_tui.core.store.migrate import SchemaNotCurrent
from sendstatus_tui.core.store.store import DatabaseMissing
from sendstatus_tui.errors import SendStatusError, mask_url

# the command groups, in the order the help lists them
COMMAND_GROUPS = (
    dashboard,
    mailing,
    reading,
    planning,
    engine,
    database,
    log,
    settings,
    relay,
    engines,
    after_send,
    intake,
    serve,
)

# what the command line suggests after some errors, in its own words (core's messages name
# no command)
_HINTS: dict[type[SendStatusError], str] = {
    lifecycle.TimeInPast: "; use send-now to send immediately",
    DatabaseMissing: "; `sendstatus init` creates one (so do `mailing add` and the dashboard)",
    SchemaNotCurrent: "; `sendstatus init` brings it up to date (so does any command that writes)",
}

# as a command killed by SIGPIPE: what `git log | head -1` leaves in a pipeline
SIGPIPE_STATUS = 128 + 13


def main(argv: Sequence[str] | None = None) -> int:
    context = Context(_global_options())
    args = _parser(context).parse_args(argv)
    audit.operating_from(audit.Source.CLI)
    for option in ("db", "tz", "smtp", "rate"):  # global options, absent when not given
        vars(args).setdefault(option, None)
    if args.command is None:
        args.run = lambda args: dashboard.run_dashboard(args, context)
    try:
        args.run(args)
        sys.stdout.flush()  # a reader that left is found here, not at the interpreter's exit
    except BrokenPipeError:  # the reader of the output left (`sendstatus ls | head -1`)
        _silence_stdout()
        return SIGPIPE_STATUS
    except SendStatusError as exc:  # every error raised on purpose; anything else is a bug
        context.forget_new_database(args)
        message = str(exc)
        if isinstance(exc, lifecycle.TimeInPast):  # in the zone the time was typed in
            message = exc.in_zone(zone(config.zone_name(args.tz)))
        _print_error(_masked(message + _hint(exc), args))
        if isinstance(exc, RecipientsRefused):
            mailing.print_row_errors(exc.errors)
        return 1
    except KeyboardInterrupt:
        context.forget_new_database(args)
        _print_error("interrupted; nothing was changed by the unfinished command")
        return 130
    finally:
        if getattr(args, "store", None) is not None:
            args.store.dispose()
    context.report_opening(args)
    return 0


def _hint(exc: SendStatusError) -> str:
    if isinstance(exc, SchemaNotCurrent) and not exc.upgradable:
        return ""
    if isinstance(exc, SchemaNotCurrent) and exc.revision is None:
        return "; `sendstatus init` creates its tables (so does `mailing add` or the dashboard)"
    return next((hint for kind, hint in _HINTS.items() if isinstance(exc, kind)), "")


def _masked(message: str, args: Any) -> str:
    """``message`` with the passwords of the URLs given to this command masked (messages
    are built from masked URLs; this is the guard against a library quoting one)."""
    for url in (config.db_url(args.db), config.relay_url(args.smtp)):
        if url:
            message = message.replace(url, mask_url(url))
    return message


def _silence_stdout() -> None:
    """No more output, and no second BrokenPipeError when Python flushes it at exit."""
    with contextlib.suppress(OSError, ValueError):  # ValueError: no descriptor (captured)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def _print_error(message: str) -> None:
    print(f"error: {' '.join(message.splitlines())}", file=sys.stderr)  # always one line


# --- the parser --------------------------------------------------------------------------


def _global_options() -> argparse.ArgumentParser:
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
        help=f"this engine's cap under the stored rate, e.g. 36000/h, 600/min, 10/s, from 1/h"
        f" to 1000000/s (${config.RATE_ENV}; default: none, only the stored rate)",
    )
    return common


def _parser(context: Context) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sendstatus",
        description="Send Status: plan, follow and steer email mailings. Without a command,"
        " opens the dashboard (with the engine in it unless another engine runs).",
        parents=[context.common],
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
    for group in COMMAND_GROUPS:
        group.register(commands, context)
    _refuse_blank_values(parser)
    _dash_digit_is_a_value(parser)
    return parser


def _refuse_blank_values(parser: argparse.ArgumentParser) -> None:
    """Every value given on the command line, of every option and argument of every
    command, is refused when blank (empty or only spaces): a usage error naming the option
    (exit status 2), before anything acts. An empty ``--at ""`` or ``config set relay ""``
    would otherwise read as the option left out, and act as if it were."""
    for action in parser._actions:  # argparse keeps no public list
        if isinstance(action, argparse._SubParsersAction):
            for subparser in set(action.choices.values()):
                _refuse_blank_values(subparser)
        elif action.nargs != 0 and not getattr(action.type, "refuses_blank", False):
            action.type = _not_blank(action.type)


def _not_blank(convert: Any) -> Any:
    def checked(text: str) -> Any:
        if not text.strip():
            raise argparse.ArgumentTypeError(
                f"blank value {text!r}: give a value (or leave the option out)"
            )
        return text if convert is None else convert(text)

    checked.refuses_blank = True  # type: ignore[attr-defined]  # the parents share actions
    checked.__name__ = getattr(convert, "__name__", "str")  # argparse's "invalid X value"
    return checked


def _dash_digit_is_a_value(parser: argparse.ArgumentParser) -> None:
    """An argument that starts with a minus and a digit (``--rate -5/s``, ``config set rate
    -5/s``) is a value, as Python 3.13's argparse takes it, not an unknown option: it reaches
    the check that says what is wrong with it. No option of ours starts so."""
    parser._negative_number_matcher = re.compile(r"^-\.?\d")  # noqa: SLF001
    for action in parser._actions:  # noqa: SLF001
        if isinstance(action, argparse._SubParsersAction):  # noqa: SLF001
            for subparser in action.choices.values():
                _dash_digit_is_a_value(subparser)


if __name__ == "__main__":
    sys.exit(main())
