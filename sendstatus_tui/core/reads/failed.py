"""Failed recipients, listed by class (``sendstatus failed``); putting them back to pending
(``sendstatus retry``) is in model/retry.py."""

import csv
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

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
        yield FailedRecipient(email, fields, failure_class, code_in_reply(reply), reply)


@lru_cache(maxsize=1024)  # a relay says the same few things to many recipients
def code_in_reply(reply: str | None) -> int | None:
    """The SMTP reply code a kept reply carries, if any."""
    found = _CODE.search(reply) if reply else None
    return int(found[1]) if found else None


def write_failed_csv(path: Path, names: list[str], rows: Iterable[FailedRecipient]) -> int:
    """A recipients CSV of the failed ones (which ``mailing add`` takes back): their fields,
    plus why they failed; returns how many it wrote."""
    # the extra columns take a name the file does not have already
    class_column = next(n for n in ("class", "failed_class", "failure_class_") if n not in names)
    reply_column = next(n for n in ("reply", "failed_reply", "failure_reply_") if n not in names)
    written = 0
    try:
        with open(path, "w", encoding="utf-8", newline="") as stream:
            writer = csv.writer(stream)
            writer.writerow(["email", *names, class_column, reply_column])
            for row in rows:
                fields = [row.fields.get(name, "") for name in names]
                cells = [*fields, row.failure_class, row.reply or ""]
                writer.writerow([row.email, *map(defused, cells)])  # the address as it is
                written += 1
    except OSError as exc:
        raise FailedError(f"{path}: cannot write it ({exc.strerror or exc})") from None
    return written


# what makes a spreadsheet read a cell as a formula (OWASP: CSV injection)
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def defused(cell: str) -> str:
    """A cell a spreadsheet shows as text: one that would start a formula gets a leading
    single quote. Never applied to an address, which stays as it is (one may begin so)."""
    return f"'{cell}" if cell.startswith(_FORMULA_STARTS) else cell
