"""``sendstatus intake SOURCE [--follow]``: reads bounces and complaints back where they
arrive (``maildir:DIR``; ``imap[s]://USER@HOST/FOLDER``; ``smtp://HOST:PORT``, a listener
they are sent to) and applies them (core/feedback)."""

import logging
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any

from sendstatus_tui.cli.context import Access, CommandError, Context
from sendstatus_tui.engine.intake.source import (
    DEFAULT_INTERVAL,
    PASSWORD_ENV,
    Listener,
    Source,
    SourceError,
)


def _sources() -> dict[str, Callable[[str], Source | Listener]]:
    """The kinds of SOURCE: how the text starts, and what makes the source of it
    (SourceError when the text names none). Their modules (an IMAP client, an SMTP server,
    the parser under them) are imported once a command names a source: every other command
    starts without them."""
    from sendstatus_tui.engine.intake.imap import imap_source
    from sendstatus_tui.engine.intake.listener import smtp_listener
    from sendstatus_tui.engine.intake.maildir import maildir_source

    def maildir(text: str) -> Source:
        source = maildir_source(text)
        assert source is not None  # the text starts with maildir:
        return source

    def imap(text: str) -> Source:
        source = imap_source(text)
        assert source is not None  # the text starts with imap:// or imaps://
        return source

    return {"maildir:": maildir, "imap://": imap, "imaps://": imap, "smtp://": smtp_listener}


def register(commands: Any, context: Context) -> None:
    intake = commands.add_parser(
        "intake",
        parents=[context.common],
        help="read bounces and complaints back (from a maildir, an IMAP mailbox, or as an SMTP"
        " listener) and apply them",
        description="Reads the bounces (RFC 3464 DSNs, and the other kinds MTAs send) and"
        " complaints (ARF feedback reports) delivered to SOURCE, matches each to its"
        " recipient by the signed code of its return path or header (`config set"
        " return_path`), and applies it: a hard bounce fails the recipient (class bounce) and"
        " suppresses the address (suppress_bounces), a block fails it (class blocked), a"
        " complaint suppresses it. maildir:DIR: each message is moved to cur/ once applied."
        " imap[s]://USER@HOST[:PORT]/FOLDER: each is flagged \\Seen and SendstatusProcessed"
        f" once applied; the password comes from {PASSWORD_ENV} or the [intake] table of the"
        " credentials file, never from the URL; imaps:// or STARTTLS, certificates checked"
        " (?verify=off for a server you trust)."
        " smtp://HOST:PORT: an SMTP server for the bounce domain's MX, which accepts only the"
        " signed return path addresses, the bare return_path and complaints_address (any"
        " other is refused at RCPT), and answers 250 once a message is applied; it runs until"
        " SIGTERM or SIGINT, with or without --follow. Prints a summary line at the end.",
    )
    intake.add_argument(
        "source", metavar="maildir:DIR|imaps://USER@HOST[:PORT]/FOLDER|smtp://HOST:PORT"
    )
    intake.add_argument(
        "--follow",
        action="store_true",
        help="keep reading until SIGTERM or SIGINT (Ctrl-C), one pass every --interval (IMAP:"
        " as soon as the server tells of new mail, where it offers IDLE; an smtp:// listener"
        " always runs until then)",
    )
    intake.add_argument(
        "--interval",
        type=float,
        default=DEFAULT_INTERVAL,
        metavar="SECONDS",
        help=f"between two passes with --follow (default: {DEFAULT_INTERVAL:g})",
    )
    intake.set_defaults(run=lambda args: _intake(args, context))


def source_of(text: str) -> Source | Listener:
    """The source ``text`` names (a listener is not bound yet: see ``opened``)."""
    make = next((make for start, make in _sources().items() if text.startswith(start)), None)
    if make is None:
        raise CommandError(
            f"unknown intake source {text!r}: expected maildir:DIR,"
            " imaps://USER@HOST[:PORT]/FOLDER or smtp://HOST:PORT"
        )
    try:
        return make(text)
    except SourceError as exc:
        raise CommandError(str(exc)) from None


def opened(source: Source | Listener, stop: threading.Event, follow: bool) -> Source | Listener:
    """``source``, a listener bound to its port, an IMAP mailbox logged in: a port taken, a
    refused login or an untrusted certificate is an error before anything starts."""
    from sendstatus_tui.engine.intake.imap import ImapSource

    if isinstance(source, ImapSource):
        source.stop, source.patient = stop, follow  # --follow waits out a lost server
    if isinstance(source, Listener | ImapSource):
        try:
            source.open()
        except SourceError as exc:
            raise CommandError(str(exc)) from None
    return source


def _intake(args: Any, context: Context) -> None:
    from sendstatus_tui.engine.intake.imap import ImapSource
    from sendstatus_tui.engine.intake.run import run_intake

    if args.interval <= 0:
        raise CommandError(
            f"--interval: expected a positive number of seconds, not {args.interval}"
        )
    source = source_of(args.source)
    store = context.store(args, Access.CHANGE)
    stop = threading.Event()
    opened(source, stop, args.follow)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr
    )
    if isinstance(source, Listener) or args.follow:
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda number, frame: stop.set())
        doing = (
            f"listening on {source.name}"
            if isinstance(source, Listener)
            else f"following {source.name}: a pass every {args.interval:g} s"
        )
        print(f"{doing}; SIGTERM or Ctrl-C stops after the message in hand", file=sys.stderr)
    try:
        tally = run_intake(store, source, follow=args.follow, interval=args.interval, stop=stop)
    except SourceError as exc:
        raise CommandError(str(exc)) from None
    finally:
        if isinstance(source, ImapSource):
            source.close()
    trouble = source.summary() if isinstance(source, ImapSource) else ""
    print(f"intake {source.name}: {tally.line()}" + (f"; {trouble}" if trouble else ""))
