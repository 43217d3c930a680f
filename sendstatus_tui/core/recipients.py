"""Recipients from CSV: a header row with an ``email`` column; any other columns are
personalisation fields.

A file with invalid rows is refused as a whole (with line numbers and reasons) unless the
caller asks to skip them. Rows are written inside the caller's transaction, so a refused
file leaves nothing behind.
"""

import csv
import json
import os
import stat
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import chain
from json.encoder import encode_basestring as _json_string
from pathlib import Path
from typing import TYPE_CHECKING

from sqlmodel import Session

from ..errors import SendStatusError
from . import suppression
from .addresses import InvalidAddress, checked_address
from .models import Mailing, RecipientStatus

if TYPE_CHECKING:
    from _csv import Reader as CsvReader  # the type csv.reader returns, named in typeshed only

EMAIL_COLUMN = "email"
# rows per INSERT statement; 800 parameters stay below the oldest SQLite limit (999)
_BATCH_ROWS = 400
# inserts a batch of (email, field values as JSON or None)
_Insert = Callable[[list[tuple[str, str | None]]], None]
# rows reported in an error message; the count says how many more there are
MAX_REPORTED_ERRORS = 20


@dataclass(frozen=True)
class RowError:
    line: int
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}"


@dataclass
class ImportReport:
    imported: int = 0
    duplicates: int = 0
    suppressed: int = 0  # on the suppression list: dropped
    skipped: list[RowError] = field(default_factory=list)

    def counted(self) -> str:
        """What was imported and what dropped: '2 recipients, 1 duplicate dropped'."""
        text = f"{self.imported:,} recipient{'s' if self.imported != 1 else ''}"
        if self.duplicates:
            text += f", {self.duplicates:,} duplicate{'s' if self.duplicates != 1 else ''} dropped"
        if self.suppressed:
            text += f", {self.suppressed:,} suppressed dropped"
        return text


class RecipientsRefused(SendStatusError, ValueError):
    """The file cannot be imported; ``errors`` lists the rows at fault, if any."""

    def __init__(self, message: str, errors: list[RowError] | None = None):
        super().__init__(message)
        self.errors = errors or []


def import_recipients(
    session: Session,
    mailing: Mailing,
    path: Path,
    *,
    skip_invalid: bool = False,
    header_fields: Collection[str] = (),
) -> ImportReport:
    """Adds the recipients in ``path`` to ``mailing`` (which must already have an id).

    ``header_fields`` are the columns a header (the subject) uses: a line break in one of
    them is a row error here, not a failed message at send time."""
    assert mailing.id is not None, "import_recipients needs a mailing with an id"
    report = ImportReport()
    suppressed = suppression.all_keys(session)
    try:
        if stat.S_ISCHR(os.stat(path).st_mode):  # /dev/zero would be read for ever
            raise RecipientsRefused(f"{path}: a device, not a CSV file")
        with open(path, encoding="utf-8-sig", newline="") as stream:
            reader = csv.reader(stream, strict=True)
            field_names, email_index = _header(reader, path)
            in_headers = [(i, name) for i, name in enumerate(field_names) if name in header_fields]
            with _inserter(session, mailing.id) as insert:
                width = len(field_names) + 1
                _import_rows(
                    reader, path, width, email_index, in_headers, suppressed, insert, report
                )
    except FileNotFoundError:
        raise RecipientsRefused(f"{path}: no such file") from None
    except IsADirectoryError:
        raise RecipientsRefused(f"{path}: is a directory, not a CSV file") from None
    except UnicodeDecodeError as exc:
        raise RecipientsRefused(
            f"{path}: not UTF-8 text (bad byte at offset {exc.start}); save it as UTF-8"
        ) from None
    except OSError as exc:  # unreadable: permissions, a device, /proc/1/mem...
        raise RecipientsRefused(f"{path}: cannot read it ({exc.strerror or exc})") from None
    if report.skipped and not skip_invalid:
        count = len(report.skipped)
        raise RecipientsRefused(
            f"{path}: {count} invalid row{'s' if count > 1 else ''}, nothing imported"
            f" (--skip-invalid imports the {report.imported} valid ones)",
            report.skipped,
        )
    if report.imported == 0 and report.suppressed:
        raise RecipientsRefused(
            f"{path}: no recipients left: all {report.suppressed:,} valid ones are on the"
            " suppression list"
        )
    if report.imported == 0:
        raise RecipientsRefused(f"{path}: no valid recipients")
    mailing.field_names = json.dumps(field_names, ensure_ascii=False)
    mailing.total += report.imported
    session.add(mailing)
    session.flush()
    return report


def _header(reader: "CsvReader", path: Path) -> tuple[list[str], int]:
    """The personalisation field names (in CSV order) and the index of the email column."""
    try:
        # blank lines before the header are skipped, as they are between rows
        header = next((row for row in reader if row), None)
    except csv.Error as exc:
        raise RecipientsRefused(f"{path}: line {reader.line_num}: malformed CSV ({exc})") from None
    if not header:
        raise RecipientsRefused(f"{path}: empty file; expected a header row with an 'email' column")
    names = [name.strip() for name in header]
    lowered = [name.lower() for name in names]
    if EMAIL_COLUMN not in lowered:
        raise RecipientsRefused(f"{path}: no 'email' column in the header row ({', '.join(names)})")
    repeated = sorted({name for name in lowered if lowered.count(name) > 1})
    if repeated:
        raise RecipientsRefused(f"{path}: repeated columns in the header: {', '.join(repeated)}")
    email_index = lowered.index(EMAIL_COLUMN)
    return names[:email_index] + names[email_index + 1 :], email_index


def _import_rows(
    reader: "CsvReader",
    path: Path,
    width: int,
    email_index: int,
    in_headers: list[tuple[int, str]],
    suppressed: set[str],
    insert: _Insert,
    report: ImportReport,
) -> None:
    """Validates, deduplicates and inserts the data rows; the rest goes into ``report``.
    ``in_headers``: (index in the row without its email, name) of the fields a header uses;
    ``suppressed``: the mailbox keys on the suppression list, dropped.

    This loop runs once per recipient, a million times for a large list: it stays in one
    frame, with no per-row generators or helpers beyond the address check.
    """
    seen: set[str] = set()  # mailbox keys of the addresses imported so far
    skipped = report.skipped
    has_fields = width > 1
    batch: list[tuple[str, str | None]] = []
    try:
        for row in reader:
            if len(row) != width:
                if row:  # else a blank line
                    message = f"{len(row)} fields, the header has {width}"
                    skipped.append(RowError(reader.line_num, message))
                continue
            email = row.pop(email_index).strip()  # row: the field values, in CSV order
            if not email:
                skipped.append(RowError(reader.line_num, "empty email"))
                continue
            if in_headers and (broken := _line_break_in(row, in_headers)):
                message = f"a line break in {broken!r}, which the subject uses"
                skipped.append(RowError(reader.line_num, message))
                continue
            try:
                address, key = checked_address(email)
            except InvalidAddress as exc:
                skipped.append(RowError(reader.line_num, f"{email!r}: {exc}"))
                continue
            # one message per mailbox: addresses differing only in case, or in the form of
            # their domain (münchen.de, xn--mnchen-3ya.de), are the same person
            if key in seen:
                report.duplicates += 1
                continue
            seen.add(key)
            if key in suppressed:
                report.suppressed += 1
                continue
            # what json.dumps(row, ensure_ascii=False) gives for a list of strings, at a
            # fifth of the cost (json.dumps builds a new encoder for each call)
            values = f"[{', '.join(map(_json_string, row))}]" if has_fields else None
            batch.append((address, values))
            if len(batch) == _BATCH_ROWS:
                insert(batch)
                batch = []
    except csv.Error as exc:
        # the reader cannot resynchronise after a broken quote: refuse the file
        raise RecipientsRefused(f"{path}: line {reader.line_num}: malformed CSV ({exc})") from None
    insert(batch)
    report.imported = len(seen) - report.suppressed


def _line_break_in(values: list[str], fields: list[tuple[int, str]]) -> str | None:
    """The first of ``fields`` (index, name) whose value has a line break: in a header it
    would smuggle in headers of its own."""
    for index, name in fields:
        if "\r" in values[index] or "\n" in values[index]:
            return name
    return None


@contextmanager
def _inserter(session: Session, mailing_id: int) -> Iterator[_Insert]:
    """A function inserting (email, field values) rows in the session's transaction.

    It goes straight to the driver, bypassing the ORM (a million ORM objects would cost
    minutes) and SQLAlchemy's parameter handling, and puts a batch in one INSERT: on
    SQLite that takes half the time of executemany, which runs the statement once per row.
    """
    connection = session.connection()
    marker = "?" if connection.dialect.paramstyle == "qmark" else "%s"
    # the values shared by every row are ours, not the file's: written into the statement,
    # they leave two parameters to bind per row
    one_row = f"({int(mailing_id)}, {marker}, {marker}, '{RecipientStatus.PENDING}', 0)"
    head = "INSERT INTO recipient (mailing_id, email, field_values, status, attempts) VALUES "

    def values(count: int) -> str:
        return ", ".join([one_row] * count)

    full_batch = head + values(_BATCH_ROWS)
    cursor = connection.connection.cursor()

    def insert(rows: list[tuple[str, str | None]]) -> None:
        if rows:
            statement = full_batch if len(rows) == _BATCH_ROWS else head + values(len(rows))
            cursor.execute(statement, list(chain.from_iterable(rows)))

    try:
        yield insert
    finally:
        cursor.close()
