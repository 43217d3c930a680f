"""A new mailing as an operator describes it, checked before anything is written."""

import json
from dataclasses import dataclass
from email.headerregistry import AddressHeader, HeaderRegistry
from email.utils import formataddr
from pathlib import Path

from sqlmodel import Session

from ..errors import SendStatusError
from . import audit, settings
from .addresses import InvalidAddress, normalize_address, with_ascii_domain
from .models import Mailing
from .personalise import placeholders
from .recipients import ImportReport, import_recipients
from .states import State

DECIDED_LATER = "decided later"


class DraftRefused(SendStatusError, ValueError):
    """A field of a new mailing is unusable; ``field`` names it (for forms)."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field


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
    name: str, subject: str, sender: str, text_path: Path | None, html_path: Path | None
) -> dict[str, str]:
    """Every unusable field of a new mailing at once, by field (a form shows them all,
    where check_draft stops at the first)."""
    problems: dict[str, str] = {}
    bodies: list[str | None] = []
    checks = (
        ("name", lambda: _single_line("name", name)),
        ("subject", lambda: _single_line("subject", subject)),
        ("from", lambda: _checked_sender(sender)),
        ("text", lambda: bodies.append(read_body("text", text_path))),
        ("html", lambda: bodies.append(read_body("html", html_path))),
    )
    for field, check in checks:
        try:
            check()
        except DraftRefused as refusal:
            problems[field] = str(refusal).removeprefix(f"{refusal.field}: ")
    if "text" not in problems and "html" not in problems and not any(bodies):
        problems["text"] = NO_BODY
    return problems


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
    """Creates a parked mailing with its recipients, inside the caller's transaction."""
    draft = check_draft(draft)
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
    )
    session.add(mailing)
    session.flush()
    report = import_recipients(
        session,
        mailing,
        recipients_csv,
        skip_invalid=skip_invalid,
        header_fields=placeholders(draft.subject),
    )
    _check_placeholders(draft, ["email", *json.loads(mailing.field_names)], mailing.unsubscribe_url)
    audit.record(session, audit.Change.CREATED, mailing, _count(mailing.total), actor=actor)
    return mailing, report


def _count(recipients: int) -> str:
    return f"{recipients:,} recipient{'' if recipients == 1 else 's'}"


def _check_placeholders(
    draft: MailingDraft, fields: list[str], unsubscribe_url: str | None
) -> None:
    """Every ``{field}`` the message uses must be a column of the CSV (or ``email``)."""
    for part, text in (
        ("subject", draft.subject),
        ("text", draft.text_body),
        ("html", draft.html_body),
        ("unsubscribe-url", unsubscribe_url),
    ):
        unknown = sorted(placeholders(text) - set(fields))
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
