"""``sendstatus intake SOURCE [--follow]``: reads bounces and complaints back where they
arrive (``maildir:DIR``, ``imap[s]://USER@HOST/FOLDER``) and applies them (core/feedback)."""

import logging
import signal
import sys
import threading
from typing import Any

from sendstatus_tui.cli.context import Access, CommandError, Context
from sendstatus_tui.engine.intake.imap import PASSWORD_ENV, ImapSource, imap_source
from sendstatus_tui.engine.intake.maildir import maildir_source
from sendstatus_tui.engine.intake.run import DEFAULT_INTERVAL, run_intake
from sendstatus_tui.engine.intake.source import Source, SourceError


def register(commands: Any, context: Context) -> None:
    intake = commands.add_parser(
        "intake",
        parents=[context.common],
        help="read bounces and complaints back (from a maildir or an IMAP mailbox) and apply them",
        description="Reads the bounces (RFC 3464 DSNs, and the other kinds MTAs send) and"
        " complaints (ARF feedback reports) delivered to SOURCE, matches each to its"
        " recipient by the signed code of its return path or header (`config set"
        " return_path`), and applies it: a hard bounce fails the recipient (class bounce) and"
        " suppresses the address (suppress_bounces), a block fails it (class blocked), a"
        " complaint suppresses it. Once applied, each message is moved to cur/ (maildir) or"
        " flagged \\Seen and SendstatusProcessed (IMAP). Prints a summary line at the end."
        f" IMAP: the password comes from {PASSWORD_ENV} or the [intake] table of the"
        " credentials file, never from the URL; imaps:// or STARTTLS, certificates checked"
        " (?verify=off for a server you trust).",
    )
    intake.add_argument("source", metavar="maildir:DIR|imaps://USER@HOST[:PORT]/FOLDER")
    intake.add_argument(
        "--follow",
        action="store_true",
        help="keep reading until SIGTERM or SIGINT (Ctrl-C), one pass every --interval (IMAP:"
        " as soon as the server tells of new mail, where it offers IDLE)",
    )
    intake.add_argument(
        "--interval",
        type=float,
        default=DEFAULT_INTERVAL,
        metavar="SECONDS",
        help=f"between two passes with --follow (default: {DEFAULT_INTERVAL:g})",
    )
    intake.set_defaults(run=lambda args: _intake(args, context))


def source_of(text: str) -> Source:
    source: Source | None
    try:
        source = maildir_source(text) or imap_source(text)
    except SourceError as exc:
        raise CommandError(str(exc)) from None
    if source is None:
        raise CommandError(
            f"unknown intake source {text!r}: expected maildir:DIR or"
            " imaps://USER@HOST[:PORT]/FOLDER (an SMTP listener is to come)"
        )
    return source


def _intake(args: Any, context: Context) -> None:
    if args.interval <= 0:
        raise CommandError(
            f"--interval: expected a positive number of seconds, not {args.interval}"
        )
    source = source_of(args.source)
    store = context.store(args, Access.CHANGE)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr
    )
    stop = threading.Event()
    if isinstance(source, ImapSource):
        source.stop, source.patient = stop, args.follow  # --follow waits out a lost server
        try:
            source.open()  # a refused login or an untrusted certificate: said now
        except SourceError as exc:
            raise CommandError(str(exc)) from None
    if args.follow:
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda number, frame: stop.set())
        print(
            f"following {source.name}: a pass every {args.interval:g} s; SIGTERM or Ctrl-C"
            " stops after the message in hand",
            file=sys.stderr,
        )
    try:
        tally = run_intake(store, source, follow=args.follow, interval=args.interval, stop=stop)
    except SourceError as exc:
        raise CommandError(str(exc)) from None
    finally:
        if isinstance(source, ImapSource):
            source.close()
    trouble = source.summary() if isinstance(source, ImapSource) else ""
    print(f"intake {source.name}: {tally.line()}" + (f"; {trouble}" if trouble else ""))
