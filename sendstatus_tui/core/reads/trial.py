"""A test send's recipient: the mailing personalised as one of its recipients (the N-th, or
the one with an address), and the placeholders that recipient has no value for."""

import json
from dataclasses import dataclass

import sqlalchemy as sa
from sqlmodel import Session, col, select

from sendstatus_tui.core.importing.personalise import placeholders
from sendstatus_tui.core.model import signing
from sendstatus_tui.core.model.addresses import InvalidAddress, checked_address, normalize_address
from sendstatus_tui.core.model.models import Mailing, Recipient
from sendstatus_tui.core.model.verp import ReturnPath
from sendstatus_tui.errors import SendStatusError


class NoSuchRecipient(SendStatusError, LookupError):
    pass


class BadTestAddress(SendStatusError, ValueError):
    pass


def parse_test_addresses(text: str) -> list[str]:
    """The addresses of ``ADDR[,ADDR...]``, checked."""
    addresses = []
    for part in text.split(","):
        if not part.strip():
            continue
        try:
            addresses.append(normalize_address(part.strip()))
        except InvalidAddress as exc:
            raise BadTestAddress(f"{part.strip()!r}: {exc}") from None
    if not addresses:
        raise BadTestAddress("give at least one address to send the test to")
    return addresses


@dataclass(frozen=True)
class Persona:
    """The recipient a test is personalised as, and what it lacks."""

    id: int
    number: int | None  # its place among the mailing's recipients, when asked by number
    email: str
    field_values: str | None
    empty_fields: list[str]  # placeholders used by the message with no value for it
    # the envelope sender a test goes out with (the bare return path, never a recipient's
    # VERP address) and the key its unsubscribe token is signed with
    return_path: ReturnPath | None = None
    key: bytes | None = None


def persona(session: Session, mailing: Mailing, as_: str | None) -> Persona:
    """The recipient named by ``as_``: a number (1 = the first), an address, or None (the
    first)."""
    assert mailing.id is not None
    statement = select(Recipient).where(Recipient.mailing_id == mailing.id)
    number: int | None = None
    if as_ is None or as_.strip().isdigit():
        number = int(as_) if as_ is not None else 1
        if number < 1:
            raise NoSuchRecipient(f"--as {as_}: recipients are numbered from 1")
        found = session.exec(statement.order_by(col(Recipient.id)).offset(number - 1)).first()
        if found is None:
            raise NoSuchRecipient(
                f"mailing {mailing.id} has {mailing.total:,}"
                f" recipient{'' if mailing.total == 1 else 's'}, no number {number}"
            )
    else:
        try:
            address, key = checked_address(as_.strip())
        except InvalidAddress as exc:
            raise NoSuchRecipient(f"--as {as_!r}: {exc}") from None
        # any case, either form of the domain, as duplicates match
        spellings = {key, address.lower()}
        found = session.exec(
            statement.where(sa.func.lower(Recipient.email).in_(spellings)).order_by(
                col(Recipient.id)
            )
        ).first()
        if found is None:
            raise NoSuchRecipient(f"mailing {mailing.id} has no recipient {address}")
    assert found.id is not None
    return Persona(
        found.id,
        number,
        found.email,
        found.field_values,
        _empty_fields(mailing, found),
        signing.return_path(session),
        signing.signing_key(session),
    )


def used_placeholders(*texts: str | None) -> set[str]:
    """The fields the subject, the bodies and the unsubscribe URL refer to."""
    return set().union(*(placeholders(text) for text in texts))


def _empty_fields(mailing: Mailing, recipient: Recipient) -> list[str]:
    names = json.loads(mailing.field_names)
    values = json.loads(recipient.field_values) if recipient.field_values else []
    used = used_placeholders(
        mailing.subject, mailing.text_body, mailing.html_body, mailing.unsubscribe_url
    )
    return sorted(
        name
        for name, value in zip(names, values, strict=True)
        if name in used and not value.strip()
    )
