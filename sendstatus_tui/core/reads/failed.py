"""Failed recipients, listed by class (``sendstatus failed``); putting them back to pending
(``sendstatus retry``) is in model/retry.py."""

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache

import sqlalchemy as sa
from sqlmodel import Session, col

from sendstatus_tui.core.model.models import Recipient, RecipientStatus
from sendstatus_tui.core.model.retry import CLASSES, STORED_CLASS
from sendstatus_tui.errors import SendStatusError

# the first reply code in the reply kept ("gave up after 3 attempts: 451 4.7.1 ..." too)
_CODE = re.compile(r"(?<![\w.])([245]\d\d)(?=[ -]|$)")


class FailedError(SendStatusError, ValueError):
    pass


@dataclass(frozen=True)
class FailedRecipient:
    email: str
    fields: dict[str, str]
    failure_class: str
    code: int | None  # the relay's reply code, when the reply starts with one
    reply: str | None

    def as_json(self) -> dict[str, object]:
        return {
            "email": self.email,
            "class": self.failure_class,
            "code": self.code,
            "reply": self.reply,
            "fields": self.fields,
        }


def classes_named(name: str | None, all_means: tuple[str, ...]) -> tuple[str, ...]:
    """The classes a ``--class`` value names: one of them, or ``all`` (or None): ``all_means``."""
    if name is None or name == "all":
        return all_means
    if name not in CLASSES:
        raise FailedError(f"unknown class {name!r}: expected one of {', '.join(CLASSES)}, all")
    return (name,)


def failed_recipients(
    session: Session,
    mailing_id: int,
    field_names: list[str],
    classes: tuple[str, ...],
    limit: int | None = None,
) -> Iterator[FailedRecipient]:
    """The (first ``limit``) failed recipients of ``classes`` in id order, read as they are
    used: a million of them never sit in memory at once (a server-side cursor on
    PostgreSQL)."""
    statement = (
        sa.select(
            col(Recipient.email),
            col(Recipient.field_values),
            STORED_CLASS,
            col(Recipient.last_reply),
        )
        .where(
            col(Recipient.mailing_id) == mailing_id,
            col(Recipient.status) == RecipientStatus.FAILED,
            STORED_CLASS.in_(classes),
        )
        .order_by(col(Recipient.id))
        .limit(limit)
    )
    rows = session.execute(statement.execution_options(yield_per=2000))
    decode = json.JSONDecoder().decode  # json.loads makes a decoder per call
    for email, values, failure_class, reply in rows:
        fields = dict(zip(field_names, decode(values), strict=True)) if values else {}
        yield FailedRecipient(email, fields, failure_class, reply_code(reply), reply)


@lru_cache(maxsize=1024)  # a relay says the same few things to many recipients
def reply_code(reply: str | None) -> int | None:
    """The SMTP reply code a kept reply carries, if any."""
    found = _CODE.search(reply) if reply else None
    return int(found[1]) if found else None
