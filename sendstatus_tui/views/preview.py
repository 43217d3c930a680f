"""A message as one of its recipients gets it, for the eye: the headers a reader sees and
the text, personalised. Of a mailing (``p``) or of a new one before it is created (the
form), rendered by the engine's own code, so that the preview is what goes out."""

import json
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

from sqlmodel import Session

from sendstatus_tui.core.importing.drafts import MailingDraft, check_placeholders
from sendstatus_tui.core.importing.recipients import nth_row
from sendstatus_tui.core.model import settings, signing
from sendstatus_tui.core.model.addresses import InvalidAddress, checked_address
from sendstatus_tui.core.model.models import Mailing
from sendstatus_tui.core.reads import trial
from sendstatus_tui.engine.message import Template, render, template_of

SHOWN_HEADERS = ("From", "To", "Subject", "List-Unsubscribe", "List-Unsubscribe-Post")


@dataclass(frozen=True)
class Preview:
    number: int  # which recipient (1 = the first)
    email: str
    text: str  # the headers, a blank line, the body
    empty_fields: list[str]  # placeholders this recipient has no value for


def mailing_preview(session: Session, mailing: Mailing, number: int) -> Preview:
    """``mailing``'s message as its ``number``-th recipient gets it (NoSuchRecipient past
    the last)."""
    persona = trial.persona(session, mailing, str(number))
    template = template_of(mailing, persona.return_path, persona.key)
    message = render(template, persona.id, persona.email, persona.field_values)
    return Preview(number, persona.email, message_text(message), persona.empty_fields)


def draft_preview(session: Session, draft: MailingDraft, recipients: Path, number: int) -> Preview:
    """A new mailing's message as the ``number``-th recipient of its CSV will get it, with
    the database's unsubscribe defaults where the draft has none (as creating it takes
    them). DraftRefused for a placeholder the CSV has no column for."""
    email, names, values = nth_row(recipients, number)
    try:
        checked_address(email)
    except InvalidAddress as exc:  # shown, not raised: the import may be told to skip it
        not_one = f"{email!r}: {exc}\nThis row is no recipient: the import refuses it, or skips it."
        return Preview(number, email, not_one, [])
    unsubscribe_url = draft.unsubscribe_url or settings.read(session, "unsubscribe_url")
    check_placeholders(draft, ["email", *names], unsubscribe_url)
    template = Template(
        mailing_id=0,  # none yet: only the Message-ID and the unsubscribe token carry it
        subject=draft.subject,
        sender=draft.sender,
        text_body=draft.text_body,
        html_body=draft.html_body,
        field_names=tuple(names),
        unsubscribe_url=unsubscribe_url,
        unsubscribe_mailto=draft.unsubscribe_mailto or settings.read(session, "unsubscribe_mailto"),
        return_path=signing.return_path(session),
        unsubscribe_key=signing.signing_key(session),
    )
    message = render(template, 0, email, json.dumps(values, ensure_ascii=False) if names else None)
    used = trial.used_placeholders(draft.subject, draft.text_body, draft.html_body, unsubscribe_url)
    empty = sorted(n for n, v in zip(names, values, strict=True) if n in used and not v.strip())
    return Preview(number, email, message_text(message), empty)


def message_text(message: bytes) -> str:
    """The headers a reader sees, a blank line, then the text body (else the HTML's
    source, said so)."""
    parsed = message_from_bytes(message, policy=policy.default)
    assert isinstance(parsed, EmailMessage)  # policy.default parses into one
    lines = [f"{name}: {parsed[name]}" for name in SHOWN_HEADERS if parsed[name] is not None]
    body = parsed.get_body(preferencelist=("plain", "html"))
    if body is None:
        return "\n".join(lines)
    assert isinstance(body, EmailMessage)
    # the wire's CRLF line ends, read back, as lines
    content = "\n".join(body.get_content().splitlines()).rstrip("\n")
    if body.get_content_subtype() != "plain":
        content = "(no text body; the HTML body's source:)\n" + content
    return "\n".join([*lines, "", content])
