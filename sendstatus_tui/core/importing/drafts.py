"""A new mailing as an operator describes it, checked before anything is written."""

import json
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.headerregistry import AddressHeader, HeaderRegistry
from email.utils import formataddr
from pathlib import Path
from typing import TypeVar

import sqlalchemy as sa
from sqlmodel import Session, col, func, select

from sendstatus_tui.core.importing.personalise import placeholders
from sendstatus_tui.core.importing.recipients import ImportReport, OneTransaction, import_recipients
from sendstatus_tui.core.model import audit, relays, settings, unsubscribe, window
from sendstatus_tui.core.model.addresses import InvalidAddress, normalize_address, with_ascii_domain
from sendstatus_tui.core.model.models import Mailing, Recipient, utc_now
from sendstatus_tui.core.model.states import State
from sendstatus_tui.core.store.store import Store
from sendstatus_tui.errors import SendStatusError

DECIDED_LATER = "decided later"
# an import touches its hidden mailing at every batch (under a second apart): one untouched
# for this long lost its process, and ``remove_abandoned_imports`` removes it
ABANDONED_AFTER = timedelta(minutes=10)
_REMOVED_PER_TRANSACTION = 20_000


class DraftRefused(SendStatusError, ValueError):
    """A field of a new mailing is unusable; ``field`` names it (for forms)."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field


T = TypeVar("T")


@dataclass(frozen=True)
class MailingDraft:
    name: str
    subject: str
    sender: str
    text_body: str | None = None
    html_body: str | None = None
    # List-Unsubscribe; when absent, the database's defaults (``config set unsubscribe_url``)
    unsubscribe_url: str | None = None
    unsubscribe_mailto: str | None = None
    # its sending window as typed ("always": none); None: the database's default (``config
    # set window``); read in ``zone_name``, the zone it is planned in, unless it names one
    window: str | None = None
    zone_name: str | None = None
    # the relays it goes through, e.g. "main,backup"; None: every relay (core/model/relays.py)
    relays: str | None = None


def draft_from_files(
    name: str, subject: str, sender: str, text_path: Path | None, html_path: Path | None
) -> MailingDraft:
    """A draft whose bodies are read from UTF-8 files (either may be absent)."""
    return MailingDraft(
        name=name,
        subject=subject,
        sender=sender,
        text_body=read_body("text", text_path),
        html_body=read_body("html", html_path),
    )


def check_draft(draft: MailingDraft) -> MailingDraft:
    """The draft with its sender normalised; DraftRefused for the first bad field."""
    for field, value in (("name", draft.name), ("subject", draft.subject)):
        _single_line(field, value)
    sender = _checked_sender(draft.sender)
    if not (draft.text_body or draft.html_body):
        raise DraftRefused("body", NO_BODY)
    return MailingDraft(
        name=draft.name.strip(),
        subject=draft.subject.strip(),
        sender=sender,
        text_body=draft.text_body,
        html_body=draft.html_body,
        unsubscribe_url=_checked_setting("unsubscribe-url", draft.unsubscribe_url),
        unsubscribe_mailto=_checked_setting("unsubscribe-mailto", draft.unsubscribe_mailto),
        window=_checked_window(draft.window, draft.zone_name),
        relays=draft.relays,  # checked against the stored relays when it is created
    )


NO_BODY = "a text body, an HTML body or both are needed"


def _checked_sender(sender: str) -> str:
    _single_line("from", sender)
    display_name, address = _parse_sender(sender)
    try:
        # the domain in ASCII (IDNA): the From header and every relay take that form
        address = with_ascii_domain(normalize_address(address))
    except InvalidAddress as exc:
        raise DraftRefused("from", f"{address!r}: {exc}") from None
    return formataddr((display_name, address))


def draft_problems(
    name: str,
    subject: str,
    sender: str,
    text_path: Path | None,
    html_path: Path | None,
    unsubscribe_url: str | None = None,
    unsubscribe_mailto: str | None = None,
) -> dict[str, str]:
    """Every unusable field of a new mailing at once, by field (a form shows them all,
    where check_draft stops at the first)."""
    problems: dict[str, str] = {}
    bodies: list[str | None] = []
    checks: tuple[tuple[str, Callable[[], object]], ...] = (
        ("name", lambda: _single_line("name", name)),
        ("subject", lambda: _single_line("subject", subject)),
        ("from", lambda: _checked_sender(sender)),
        ("text", lambda: bodies.append(read_body("text", text_path))),
        ("html", lambda: bodies.append(read_body("html", html_path))),
        ("unsubscribe-url", lambda: _checked_setting("unsubscribe-url", unsubscribe_url)),
        ("unsubscribe-mailto", lambda: _checked_setting("unsubscribe-mailto", unsubscribe_mailto)),
    )
    for field, check in checks:
        try:
            check()
        except DraftRefused as refusal:
            problems[field] = str(refusal).removeprefix(f"{refusal.field}: ")
    if "text" not in problems and "html" not in problems and not any(bodies):
        problems["text"] = NO_BODY
    return problems


def _checked_window(text: str | None, zone_name: str | None) -> str | None:
    """The window as stored (naming its zone), ALWAYS, or None for the default."""
    if text is None:
        return None
    try:
        parsed = window.parse_window(text, zone_name)
    except SendStatusError as exc:
        raise DraftRefused("window", str(exc)) from None
    return window.ALWAYS if parsed is None else parsed.text


def _checked_setting(field: str, value: str | None) -> str | None:
    """An unsubscribe URL or address, checked as ``config set`` checks the defaults."""
    if value is None or not value.strip():
        return None
    try:
        return settings.KEYS[field.replace("-", "_")].check(value.strip())
    except SendStatusError as exc:
        raise DraftRefused(field, str(exc)) from None


def create_mailing(
    session: Session,
    draft: MailingDraft,
    recipients_csv: Path,
    *,
    skip_invalid: bool = False,
    actor: audit.Actor | None = None,
) -> tuple[Mailing, ImportReport]:
    """Creates a parked mailing with its recipients, inside the caller's transaction (which
    holds the write lock throughout: for lists of thousands; ``add_mailing`` for more)."""
    draft = check_draft(draft)
    mailing = _new_mailing(session, draft, importing=False)
    report = import_recipients(
        OneTransaction(session),
        _id(mailing),
        recipients_csv,
        skip_invalid=skip_invalid,
        header_fields=placeholders(draft.subject),
        check_fields=_placeholder_check(draft, mailing.unsubscribe_url),
    )
    _complete(session, mailing, report, actor)
    return mailing, report


def add_mailing(
    store: Store,
    draft: MailingDraft,
    recipients_csv: Path,
    *,
    skip_invalid: bool = False,
    actor: audit.Actor | None = None,
    then: Callable[[Session, Mailing], T],
    on_interrupt: Callable[[int], None] | None = None,
) -> tuple[Mailing, ImportReport, T]:
    """Creates a parked mailing with its recipients, for lists of any size: its recipients
    are written in short transactions (no write lock held long) into a mailing that no list
    shows until the last one. ``then(session, mailing)`` runs in the transaction that shows
    it (a send choice: the mailing appears planned), and its result is returned.

    On any error or interrupt what was written is removed (``on_interrupt`` is told how many
    recipients, before the removal of an interrupted import starts); after a crash,
    ``remove_abandoned_imports`` removes it."""
    draft = check_draft(draft)
    with store.write() as session:
        mailing = _new_mailing(session, draft, importing=True)
    mailing_id = _id(mailing)
    try:
        report = import_recipients(
            store,
            mailing_id,
            recipients_csv,
            skip_invalid=skip_invalid,
            header_fields=placeholders(draft.subject),
            check_fields=_placeholder_check(draft, mailing.unsubscribe_url),
        )
        with store.write() as session:
            session.add(mailing)
            _complete(session, mailing, report, actor)
            outcome = then(session, mailing)
    except BaseException as exc:
        # the error to report is the first one; a database that fails the removal too
        # leaves the mailing hidden, for remove_abandoned_imports
        with suppress(SendStatusError):
            if on_interrupt is not None and not isinstance(exc, Exception):
                on_interrupt(_written(store, mailing_id))
            remove_import(store, mailing_id)
        raise
    return mailing, report, outcome


def remove_import(store: Store, mailing_id: int) -> None:
    """Removes a hidden mailing and its recipients, in short transactions (a mailing
    whose import completed is left alone)."""
    while True:
        with store.write() as session:
            hidden = session.exec(
                select(Mailing.id).where(Mailing.id == mailing_id, col(Mailing.importing))
            ).first()
            if hidden is None:
                return
            batch = select(Recipient.id).where(Recipient.mailing_id == mailing_id)
            deleted = session.execute(
                sa.delete(Recipient).where(
                    col(Recipient.id).in_(batch.limit(_REMOVED_PER_TRANSACTION).scalar_subquery())
                )
            )
            if not deleted.rowcount:  # type: ignore[attr-defined]
                session.execute(sa.delete(Mailing).where(col(Mailing.id) == mailing_id))
                return


def remove_abandoned_imports(store: Store, now: datetime | None = None) -> list[int]:
    """Removes the hidden mailings whose import stopped without cleaning up (the process was
    killed) long ago; returns their ids. A live import touches its mailing at each batch."""
    cutoff = (now or utc_now()) - ABANDONED_AFTER
    with store.read() as session:
        abandoned = session.exec(
            select(Mailing.id).where(col(Mailing.importing), col(Mailing.updated_at) < cutoff)
        ).all()
    for mailing_id in abandoned:
        assert mailing_id is not None  # read from the table
        remove_import(store, mailing_id)
    return [mailing_id for mailing_id in abandoned if mailing_id is not None]


def _new_mailing(session: Session, draft: MailingDraft, *, importing: bool) -> Mailing:
    mailing = Mailing(
        id=audit.unused_mailing_id(session),
        name=draft.name,
        subject=draft.subject,
        sender=draft.sender,
        text_body=draft.text_body,
        html_body=draft.html_body,
        state=State.STANDBY,
        state_reason=DECIDED_LATER,
        unsubscribe_url=draft.unsubscribe_url or settings.read(session, "unsubscribe_url"),
        unsubscribe_mailto=draft.unsubscribe_mailto or settings.read(session, "unsubscribe_mailto"),
        window=_window_of(session, draft),
        importing=importing,
        relays=None if draft.relays is None else _checked_relays(session, draft.relays),
    )
    session.add(mailing)
    session.flush()
    return mailing


def _window_of(session: Session, draft: MailingDraft) -> str | None:
    """The new mailing's window: the draft's, else the database's default (copied: a later
    change of the default leaves it as it is)."""
    if draft.window == window.ALWAYS:
        return None
    return draft.window or settings.read(session, "window")


def _checked_relays(session: Session, text: str) -> str:
    try:
        return relays.checked_names(session, text)
    except relays.RelaySettingError as exc:
        raise DraftRefused("relay", str(exc)) from None


def _complete(
    session: Session, mailing: Mailing, report: ImportReport, actor: audit.Actor | None
) -> None:
    mailing.field_names = json.dumps(report.field_names, ensure_ascii=False)
    mailing.total = report.imported
    mailing.importing = False
    mailing.updated_at = utc_now()
    session.flush()
    audit.record(session, audit.Change.CREATED, mailing, _count(mailing.total), actor=actor)


def _written(store: Store, mailing_id: int) -> int:
    with store.read() as session:
        statement = (
            select(func.count()).select_from(Recipient).where(Recipient.mailing_id == mailing_id)
        )
        return session.exec(statement).one()


def _id(mailing: Mailing) -> int:
    assert mailing.id is not None, "flushed: the database gave it an id"
    return mailing.id


def _placeholder_check(
    draft: MailingDraft, unsubscribe_url: str | None
) -> Callable[[list[str]], None]:
    return lambda field_names: check_placeholders(draft, ["email", *field_names], unsubscribe_url)


def _count(recipients: int) -> str:
    return f"{recipients:,} recipient{'' if recipients == 1 else 's'}"


def check_placeholders(draft: MailingDraft, fields: list[str], unsubscribe_url: str | None) -> None:
    """Every ``{field}`` the message uses must be a column of the CSV (or ``email``); the
    unsubscribe URL may also use ``{unsubscribe_token}``, which sendstatus signs."""
    for part, text, known in (
        ("subject", draft.subject, fields),
        ("text", draft.text_body, fields),
        ("html", draft.html_body, fields),
        ("unsubscribe-url", unsubscribe_url, [*fields, unsubscribe.PLACEHOLDER]),
    ):
        unknown = sorted(placeholders(text) - set(known))
        if unknown:
            names = ", ".join("{" + name + "}" for name in unknown)
            raise DraftRefused(
                part, f"{names} is not a column of the recipients CSV (it has: {', '.join(fields)})"
            )


def read_body(field: str, path: Path | None) -> str | None:
    """A message body from a UTF-8 file."""
    if path is None:
        return None
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DraftRefused(field, f"{path}: no such file") from None
    except IsADirectoryError:
        raise DraftRefused(field, f"{path}: is a directory") from None
    except UnicodeDecodeError:
        raise DraftRefused(field, f"{path}: not UTF-8 text") from None
    except OSError as exc:
        raise DraftRefused(field, f"{path}: cannot read it ({exc.strerror or exc})") from None


def _parse_sender(text: str) -> tuple[str, str]:
    """(display name, address) of a From value like ``Shop <news@shop.example>``."""
    header = HeaderRegistry()("From", text)
    assert isinstance(header, AddressHeader)  # the registry's class for From is one
    if len(header.addresses) != 1 or header.defects:
        reason = str(header.defects[0]) if header.defects else "give exactly one address"
        raise DraftRefused("from", f"not a sender address: {text!r} ({reason})")
    sender = header.addresses[0]
    return sender.display_name, sender.addr_spec


def _single_line(field: str, value: str) -> None:
    # a CR or LF in a header value would let it smuggle in headers of its own
    if "\r" in value or "\n" in value:
        raise DraftRefused(field, "must be a single line (no line breaks)")
    if not value.strip():
        raise DraftRefused(field, "must not be empty")
