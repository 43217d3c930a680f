"""A one-click unsubscribe (RFC 8058) applied, in one transaction: the token names the
mailing and recipient (core/model/unsubscribe.py); the address is suppressed (reason
"one-click unsubscribe") and the mailing counts ``unsubscribed``, once per recipient however
often the link is posted (a row in the feedback table, whose ``report_key`` is unique).

A token nobody signed, or of a mailing or recipient that is gone, changes nothing; a test
send's token changes nothing either."""

import hashlib
from enum import StrEnum

import sqlalchemy as sa
from sqlmodel import Session

from sendstatus_tui.core.importing import suppression
from sendstatus_tui.core.model.models import Feedback, Mailing, Recipient, utc_now
from sendstatus_tui.core.model.unsubscribe import Token, read_token

REASON = "one-click unsubscribe"
KIND = "unsubscribe"  # its rows in the feedback table


class Unsubscribed(StrEnum):
    DONE = "unsubscribed"
    AGAIN = "already unsubscribed"
    TEST = "a test send's link: nobody unsubscribed"
    UNKNOWN = "unknown or forged token"


def check(key: bytes | None, text: str) -> Token | None:
    """The token in ``text`` if the database's key signed it (no database access)."""
    return None if key is None else read_token(key, text)


def exists(session: Session, token: Token) -> bool:
    """Whether the recipient a token names still exists, of that mailing."""
    recipient = session.get(Recipient, token.recipient_id)
    return recipient is not None and recipient.mailing_id == token.mailing_id


def unsubscribe(session: Session, token: Token) -> Unsubscribed:
    """Applies a checked token in the caller's transaction."""
    if not exists(session, token):
        return Unsubscribed.UNKNOWN
    if token.test:
        return Unsubscribed.TEST
    # the mailing's row first, as the engine and the intake take it
    mailing = session.get(Mailing, token.mailing_id, with_for_update=True, populate_existing=True)
    recipient = session.get(Recipient, token.recipient_id)
    if mailing is None or recipient is None:
        return Unsubscribed.UNKNOWN
    basis = hashlib.sha256(f"one-click\n{token.recipient_id}".encode()).hexdigest()
    row = Feedback(
        report_key=basis,
        mailing_id=token.mailing_id,
        recipient_id=token.recipient_id,
        kind=KIND,
        counted=True,
        matched_by="one-click",
        arrived_at=utc_now(),
    )
    try:
        with session.begin_nested():
            session.add(row)
            session.flush()
    except sa.exc.IntegrityError:  # posted before (or right now, by a second request)
        return Unsubscribed.AGAIN
    mailing.unsubscribed += 1
    mailing.updated_at = utc_now()
    session.add(mailing)
    suppression.add_entries(session, [(recipient.email, REASON)])
    return Unsubscribed.DONE
