"""What every command shares: the database it opens (and how), confirmations, and the one
resolver of the per-process settings (``--db``, ``--tz``, ``--smtp``, ``--rate`` and their
environment variables) against the settings stored in the database.

Each command module has ``register(commands, context)``: it adds its parsers to
``commands``, with ``context.common`` (the global options) as a parent, and its handlers
take the parsed ``args`` and this context."""

import argparse
import contextlib
import enum
import sys
from dataclasses import dataclass
from datetime import tzinfo
from typing import Any

from sqlmodel import Session

from sendstatus_tui import config
from sendstatus_tui.core.model import lifecycle, settings
from sendstatus_tui.core.model.states import STATE_WORDS, State
from sendstatus_tui.core.model.when import zone
from sendstatus_tui.core.store.store import Store, readable_by_others
from sendstatus_tui.errors import SendStatusError


class CommandError(SendStatusError):
    """Ends the command with ``error: <message>`` and exit status 1."""


class Access(enum.Enum):
    """How a command opens its database (core/store/store.py): commands that only read never
    create, migrate nor write it; those that change mailings migrate an existing one; init,
    mailing add, the dashboard and the engine also create a missing one; the dashboard as a
    pure client writes only what its operator asks for."""

    READ = {"create": False, "migrate": False, "read_only": True}
    CHANGE = {"create": False, "migrate": True}
    CREATE = {"create": True, "migrate": True}
    ATTACH = {"create": False, "migrate": False}


def mailing_id(text: str) -> int:
    """The argument parser's type for a mailing id."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a mailing id: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"not a mailing id: {text!r}")
    return value


@dataclass(frozen=True)
class Context:
    # the global options, accepted before and after any command
    common: argparse.ArgumentParser

    # --- the database ------------------------------------------------------------------

    @staticmethod
    def store(args: Any, access: Access, *, report: bool = True) -> Store:
        """The command's database, opened once and closed when the command ends (main.py).
        A database created or upgraded on the way is said on stderr when the command
        succeeds (``report``)."""
        if getattr(args, "store", None) is None:
            url = config.db_url(args.db)
            args.store = Store(url, **access.value)
            args.report_opening = report
            exposed = readable_by_others(url)
            if exposed is not None:  # once: the command opens its database once
                print(
                    f"warning: other users of this machine can read the database {exposed};"
                    f" `chmod 600 {exposed}` makes it yours alone",
                    file=sys.stderr,
                )
        store: Store = args.store
        return store

    @staticmethod
    def report_opening(args: Any) -> None:
        store = getattr(args, "store", None)
        if store is None or not args.report_opening:
            return
        args.report_opening = False  # once
        if store.created:
            print(f"created database {store.safe_url}", file=sys.stderr)
        elif store.upgraded_from:
            print(
                f"upgraded database {store.safe_url} from schema {store.upgraded_from}",
                file=sys.stderr,
            )

    @staticmethod
    def forget_new_database(args: Any) -> None:
        """A command that failed leaves no new database behind (nothing half-done)."""
        store = getattr(args, "store", None)
        if store is not None:
            with contextlib.suppress(SendStatusError, OSError):
                store.remove_if_unused()

    # --- the settings of this process, against the stored ones --------------------------

    @staticmethod
    def zone_name(args: Any) -> str | None:
        """The operator's zone name (None: the system's), checked."""
        name = config.zone_name(args.tz)
        zone(name)
        return name

    def zone(self, args: Any) -> tzinfo:
        return zone(self.zone_name(args))

    @staticmethod
    def rate(args: Any) -> float | None:
        """This process's engine's own cap (``--rate`` or its environment variable), under
        the contracted rate stored in the database, which every engine reads as it sends."""
        from sendstatus_tui.core.model.rates import parse_rate

        return parse_rate(config.rate(args.rate))

    def relay_url(self, args: Any) -> str | None:
        """``--smtp`` (or its environment variable), else the relay stored in the database,
        else None: the default maildir."""
        override = config.relay_url(args.smtp)
        if override:  # the database is not opened for it
            return override
        with self.store(args, Access.CREATE).read() as session:
            return settings.relay_in_use(session, override)

    @staticmethod
    def transport(args: Any) -> Any:
        """The transport of ``--smtp`` (or its environment variable), from its URL and the
        credentials (nothing connects yet); None: the engine sends through the relays stored
        in the database, each with its own credentials, read as they change."""
        from sendstatus_tui.engine.smtp.credentials import load_credentials
        from sendstatus_tui.engine.transports import transport_for

        credentials = load_credentials()  # a broken file or variable is refused either way
        override = config.relay_url(args.smtp)
        return transport_for(override, credentials) if override else None

    # --- confirmations -----------------------------------------------------------------

    @staticmethod
    def confirm(args: Any, question: str) -> None:
        if args.yes:
            return
        if not sys.stdin.isatty():
            raise CommandError(
                f"{question.rstrip('?')}: confirmation needed; pass --yes to confirm"
            )
        answer = input(f"{question} [y/N] ").strip().lower()
        if answer not in ("y", "yes"):
            raise CommandError("not confirmed; nothing changed")

    def confirm_sequential(self, args: Any, session: Session, what: str) -> None:
        """The reference page's warning: other sequential mailings are in progress or
        queued."""
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
        self.confirm(args, "enqueue it?")


def counted(number: int, noun: str) -> str:
    """``1 recipient``, ``2,000 recipients``, ``2 addresses``."""
    plural = "es" if noun.endswith("ss") else "s"
    return f"{number:,} {noun}{'' if number == 1 else plural}"
