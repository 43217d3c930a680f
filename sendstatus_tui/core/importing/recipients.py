"""Recipients from CSV: a header row with an ``email`` column; any other columns are
personalisation fields.

A file with invalid rows is refused as a whole (with line numbers and reasons) unless the
caller asks to skip them. Rows are read and checked a batch at a time, then written in
transactions the caller supplies: its own (everything in one, as tests and the demo do) or
a new short one per batch (a list of millions, written into a mailing that stays hidden
until it is complete; core/drafts.py).

Duplicates are found by the database once every row is in, so that memory does not grow
with the list: each row carries its mailbox key, and one sorted read of the mailing's keys
(a read transaction, which blocks no writer) names every row but the first of each
mailbox; those are deleted a batch at a time. A unique index would find them as they come,
but its random writes made a 10-million-row import four times slower (bench_import.py).
"""

import csv
import os
import stat
from collections import Counter
from collections.abc import Callable, Collection, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from itertools import chain
from json.encoder import encode_basestring as _json_string
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import sqlalchemy as sa
from sqlmodel import Session

from sendstatus_tui.core.model import unsubscribe
from sendstatus_tui.core.model.addresses import InvalidAddress, checked_address
from sendstatus_tui.core.model.models import Mailing, RecipientStatus, utc_now
from sendstatus_tui.core.store.driver import driver_cursor
from sendstatus_tui.errors import SendStatusError

if TYPE_CHECKING:
    from _csv import Reader as CsvReader  # the type csv.reader returns, named in typeshed only

EMAIL_COLUMN = "email"
# rows per INSERT statement; 900 parameters stay below the oldest SQLite limit (999)
_STATEMENT_ROWS = 300
# rows checked, then written in one transaction: about a tenth of a second of writing,
# so that a batch never holds the write lock for long, whatever the size of the list
_TRANSACTION_ROWS = 20_000
# rows reported in an error message; the count says how many more there are
MAX_REPORTED_ERRORS = 20

# every row of a mailbox after its first (in file order, which is id order)
_DUPLICATES = (
    "SELECT id FROM (SELECT id, row_number() OVER (PARTITION BY mailbox ORDER BY id) AS n"
    " FROM recipient WHERE mailing_id = :mailing_id) AS numbered WHERE n > 1"
)


class Transactions(Protocol):
    """Where the import writes (a Store: a new transaction each time; or OneTransaction)."""

    def write(self) -> AbstractContextManager[Session]: ...

    def read(self) -> AbstractContextManager[Session]: ...


@dataclass(frozen=True)
class OneTransaction:
    """Every write and read of an import in the caller's one transaction."""

    session: Session

    def write(self) -> AbstractContextManager[Session]:
        return nullcontext(self.session)

    def read(self) -> AbstractContextManager[Session]:
        return nullcontext(self.session)


# a checked row: (address in normal form, its mailbox key, field values as JSON or None)
_Row = tuple[str, str, str | None]


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
    field_names: list[str] = field(default_factory=list)  # personalisation, in CSV order

    def counted(self) -> str:
        """What was imported and what dropped: '2 recipients, 1 duplicate dropped'."""
        text = f"{self.imported:,} recipient{'s' if self.imported != 1 else ''}"
        if self.duplicates:
            text += f", {self.duplicates:,} duplicate{'s' if self.duplicates != 1 else ''} dropped"
        if self.suppressed:
            text += f", {self.suppressed:,} suppressed dropped"
        return text


def reported_rows(errors: list[RowError], at_most: int = MAX_REPORTED_ERRORS) -> list[str]:
    """The invalid rows as the command line and the form report them: the first
    ``at_most``, then how many more."""
    lines = [str(error) for error in errors[:at_most]]
    if len(errors) > at_most:
        lines.append(f"... and {len(errors) - at_most:,} more")
    return lines


class RecipientsRefused(SendStatusError, ValueError):
    """The file cannot be imported; ``errors`` lists the rows at fault, if any."""

    def __init__(self, message: str, errors: list[RowError] | None = None):
        super().__init__(message)
        self.errors = errors or []


def import_recipients(
    transactions: Transactions,
    mailing_id: int,
    path: Path,
    *,
    skip_invalid: bool = False,
    header_fields: Collection[str] = (),
    check_fields: Callable[[list[str]], None] | None = None,
) -> ImportReport:
    """Adds the recipients in ``path`` to the mailing ``mailing_id``, a batch in each
    ``transactions.write()``; the caller sets the mailing's total and field names from the
    report.
    RecipientsRefused leaves behind what earlier batches wrote: the caller removes it.

    ``header_fields`` are the columns a header (the subject) uses: a line break in one of
    them is a row error here, not a failed message at send time. ``check_fields`` sees the
    field names as soon as the header is read (before any row is written)."""
    report = ImportReport()
    try:
        if stat.S_ISCHR(os.stat(path).st_mode):  # /dev/zero would be read for ever
            raise RecipientsRefused(f"{path}: a device, not a CSV file")
        with open(path, encoding="utf-8-sig", newline="") as stream:
            reader = csv.reader(stream, strict=True)
            field_names, email_index = _header(reader, path)
            if check_fields is not None:
                check_fields(field_names)
            report.field_names = field_names
            in_headers = [(i, name) for i, name in enumerate(field_names) if name in header_fields]
            writer = _BatchWriter(transactions, mailing_id, report)
            for batch in _checked_rows(
                reader, path, len(field_names) + 1, email_index, in_headers, report
            ):
                writer.write(batch)
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
    _drop_duplicates(transactions, mailing_id, report)
    if report.skipped and not skip_invalid:
        count = len(report.skipped)
        offer = (
            f"--skip-invalid imports the {report.imported} valid"
            f" one{'s' if report.imported > 1 else ''}"
            if report.imported
            else "no row is valid: there is nothing to import"
        )
        raise RecipientsRefused(
            f"{path}: {count} invalid row{'s' if count > 1 else ''}, nothing imported ({offer})",
            report.skipped,
        )
    if report.imported == 0 and report.suppressed:
        raise RecipientsRefused(
            f"{path}: no recipients left: all {report.suppressed:,} valid ones are on the"
            " suppression list"
        )
    if report.imported == 0:
        raise RecipientsRefused(f"{path}: no valid recipients")
    return report


def nth_row(path: Path, number: int) -> tuple[str, list[str], list[str]]:
    """The address and the fields (names, values) of the ``number``-th recipient of a CSV
    (1 = the first row after the header; blank lines are not rows), read as the import
    reads it, the rest of the file left unread: a preview before anything is imported."""
    try:
        with open(path, encoding="utf-8-sig", newline="") as stream:
            reader = csv.reader(stream, strict=True)
            field_names, email_index = _header(reader, path)
            rows = (row for row in reader if row)
            row = next((row for index, row in enumerate(rows, 1) if index == number), None)
    except csv.Error as exc:
        raise RecipientsRefused(f"{path}: malformed CSV ({exc})") from None
    except UnicodeDecodeError as exc:
        raise RecipientsRefused(
            f"{path}: not UTF-8 text (bad byte at offset {exc.start})"
        ) from None
    except OSError as exc:
        raise RecipientsRefused(f"{path}: cannot read it ({exc.strerror or exc})") from None
    if row is None:
        raise RecipientsRefused(f"{path}: has no recipient number {number:,}")
    if len(row) != len(field_names) + 1:
        raise RecipientsRefused(
            f"{path}: recipient {number:,} has {len(row)} fields, the header has"
            f" {len(field_names) + 1}"
        )
    email = row.pop(email_index).strip()
    return email, field_names, row


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
    if unsubscribe.PLACEHOLDER in lowered:
        raise RecipientsRefused(
            f"{path}: the column name {unsubscribe.PLACEHOLDER!r} is reserved: sendstatus signs"
            " that token itself; rename the column"
        )
    repeated = sorted(name for name, times in Counter(lowered).items() if times > 1)
    if repeated:
        raise RecipientsRefused(f"{path}: repeated columns in the header: {', '.join(repeated)}")
    email_index = lowered.index(EMAIL_COLUMN)
    return names[:email_index] + names[email_index + 1 :], email_index


def _checked_rows(
    reader: "CsvReader",
    path: Path,
    width: int,
    email_index: int,
    in_headers: list[tuple[int, str]],
    report: ImportReport,
) -> Iterator[list[_Row]]:
    """The valid data rows, in batches of ``_TRANSACTION_ROWS``; the invalid ones go into
    ``report``. ``in_headers``: (index in the row without its email, name) of the fields a
    header uses.

    This loop runs once per recipient, millions of times for a large list: it stays in one
    frame, with no per-row generators or helpers beyond the address check.
    """
    skipped = report.skipped
    has_fields = width > 1
    batch: list[_Row] = []
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
            # what json.dumps(row, ensure_ascii=False) gives for a list of strings, at a
            # fifth of the cost (json.dumps builds a new encoder for each call)
            values = f"[{', '.join(map(_json_string, row))}]" if has_fields else None
            batch.append((address, key, values))
            if len(batch) == _TRANSACTION_ROWS:
                yield batch
                batch = []
    except csv.Error as exc:
        # the reader cannot resynchronise after a broken quote: refuse the file
        raise RecipientsRefused(f"{path}: line {reader.line_num}: malformed CSV ({exc})") from None
    if batch:
        yield batch


def _line_break_in(values: list[str], fields: list[tuple[int, str]]) -> str | None:
    """The first of ``fields`` (index, name) whose value has a line break: in a header it
    would smuggle in headers of its own."""
    for index, name in fields:
        if "\r" in values[index] or "\n" in values[index]:
            return name
    return None


class _BatchWriter:
    """Writes batches of checked rows, each in its own ``transactions.write()``, dropping
    those on the suppression list.

    It goes straight to the driver, bypassing the ORM (a million ORM objects would cost
    minutes) and SQLAlchemy's parameter handling, and puts many rows in one INSERT: on
    SQLite that takes half the time of executemany, which runs the statement once per row.
    """

    def __init__(self, transactions: Transactions, mailing_id: int, report: ImportReport):
        self._transactions = transactions
        self._mailing_id = mailing_id
        self._report = report
        # the suppressed mailboxes met so far, never inserted: their repeats are counted
        # as duplicates (they stay few: only those of the list on the suppression list)
        self._suppressed_seen: set[str] = set()
        self._statements: dict[int, str] = {}  # by number of rows

    def write(self, rows: list[_Row]) -> None:
        with self._transactions.write() as session:
            cursor, marker = driver_cursor(session)
            try:
                rows = self._without_suppressed(cursor, marker, rows)
                for start in range(0, len(rows), _STATEMENT_ROWS):
                    chunk = rows[start : start + _STATEMENT_ROWS]
                    statement = self._statement(len(chunk), marker)
                    cursor.execute(statement, list(chain.from_iterable(chunk)))
            finally:
                cursor.close()
            _touch(session, self._mailing_id)
        self._report.imported += len(rows)

    def _without_suppressed(self, cursor: Any, marker: str, rows: list[_Row]) -> list[_Row]:
        listed: set[str] = set()
        keys = list({key for _, key, _ in rows})
        # straight to the driver too: SQLAlchemy's compiler costs more than the lookup
        for start in range(0, len(keys), _STATEMENT_ROWS):
            chunk = keys[start : start + _STATEMENT_ROWS]
            markers = ", ".join([marker] * len(chunk))
            cursor.execute(f"SELECT mailbox FROM suppression WHERE mailbox IN ({markers})", chunk)
            listed.update(key for (key,) in cursor.fetchall())
        if not listed:
            return rows
        kept = []
        for row in rows:
            key = row[1]
            if key not in listed:
                kept.append(row)
            elif key in self._suppressed_seen:
                self._report.duplicates += 1
            else:
                self._suppressed_seen.add(key)
                self._report.suppressed += 1
        return kept

    def _statement(self, count: int, marker: str) -> str:
        if count not in self._statements:
            # the values shared by every row are ours, not the file's: written into the
            # statement, they leave three parameters to bind per row
            one_row = (
                f"({int(self._mailing_id)}, {marker}, {marker}, {marker},"
                f" '{RecipientStatus.PENDING}', 0)"
            )
            self._statements[count] = (
                "INSERT INTO recipient (mailing_id, email, mailbox, field_values, status,"
                f" attempts) VALUES {', '.join([one_row] * count)}"
            )
        return self._statements[count]


def _drop_duplicates(transactions: Transactions, mailing_id: int, report: ImportReport) -> None:
    """Deletes every recipient of the mailing but the first of each mailbox, a batch of
    them in each write transaction, as one read streams their ids (sorted by the database,
    which spills to disk what does not fit in its memory)."""
    with transactions.read() as reading:
        duplicates = reading.execute(
            sa.text(_DUPLICATES).execution_options(stream_results=True),
            {"mailing_id": mailing_id},
        )
        while ids := [id_ for (id_,) in duplicates.fetchmany(_TRANSACTION_ROWS)]:
            with transactions.write() as session:
                cursor, marker = driver_cursor(session)
                try:
                    for start in range(0, len(ids), _STATEMENT_ROWS):
                        chunk = ids[start : start + _STATEMENT_ROWS]
                        markers = ", ".join([marker] * len(chunk))
                        cursor.execute(f"DELETE FROM recipient WHERE id IN ({markers})", chunk)
                finally:
                    cursor.close()
                _touch(session, mailing_id)
            report.imported -= len(ids)
            report.duplicates += len(ids)


def _touch(session: Session, mailing_id: int) -> None:
    """The import's heartbeat: a hidden mailing left untouched for long was abandoned."""
    session.execute(
        sa.update(Mailing)
        .where(Mailing.id == mailing_id)  # type: ignore[arg-type]
        .values(updated_at=utc_now())
    )
