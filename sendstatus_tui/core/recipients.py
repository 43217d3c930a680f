"""Recipients from CSV: a header row with an ``email`` column; any other columns are
personalisation fields.

A file with invalid rows is refused as a whole (with line numbers and reasons) unless the
caller asks to skip them. Rows are written inside the caller's transaction, so a refused
file leaves nothing behind.
"""

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from sqlmodel import Session

from .addresses import InvalidAddress, normalize_address
from .models import Mailing, RecipientStatus

EMAIL_COLUMN = "email"
_BATCH_ROWS = 20_000
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
    skipped: list[RowError] = field(default_factory=list)


class RecipientsRefused(ValueError):
    """The file cannot be imported; ``errors`` lists the rows at fault, if any."""

    def __init__(self, message: str, errors: list[RowError] | None = None):
        super().__init__(message)
        self.errors = errors or []


def import_recipients(
    session: Session, mailing: Mailing, path: Path, *, skip_invalid: bool = False
) -> ImportReport:
    """Adds the recipients in ``path`` to ``mailing`` (which must already have an id)."""
    report = ImportReport()
    try:
        with open(path, encoding="utf-8-sig", newline="") as stream:
            field_names, rows = _read(stream, path)
            insert = _inserter(session)
            batch: list[tuple] = []
            for values in _valid_rows(rows, field_names, report):
                batch.append((mailing.id, *values, RecipientStatus.PENDING, 0))
                if len(batch) >= _BATCH_ROWS:
                    insert(batch)
                    batch.clear()
            insert(batch)
    except FileNotFoundError:
        raise RecipientsRefused(f"{path}: no such file") from None
    except IsADirectoryError:
        raise RecipientsRefused(f"{path}: is a directory, not a CSV file") from None
    except UnicodeDecodeError as exc:
        raise RecipientsRefused(
            f"{path}: not UTF-8 text (bad byte at offset {exc.start}); save it as UTF-8"
        ) from None
    if report.skipped and not skip_invalid:
        count = len(report.skipped)
        raise RecipientsRefused(
            f"{path}: {count} invalid row{'s' if count > 1 else ''}, nothing imported"
            f" (--skip-invalid imports the {report.imported} valid ones)",
            report.skipped,
        )
    if report.imported == 0:
        raise RecipientsRefused(f"{path}: no valid recipients")
    mailing.field_names = json.dumps(field_names)
    mailing.total += report.imported
    session.add(mailing)
    session.flush()
    return report


def _read(stream, path: Path) -> tuple[list[str], Iterator[tuple[int, list[str]]]]:
    """The personalisation field names, and the data rows with their line numbers."""
    reader = csv.reader(stream, strict=True)
    try:
        header = next(reader, None)
    except csv.Error as exc:
        raise RecipientsRefused(f"{path}: line 1: malformed CSV ({exc})") from None
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
    # email goes first: (email, other values...)
    order = [email_index] + [i for i in range(len(names)) if i != email_index]

    def rows() -> Iterator[tuple[int, list[str]]]:
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                # the reader cannot resynchronise after a broken quote: refuse the file
                raise RecipientsRefused(
                    f"{path}: line {reader.line_num}: malformed CSV ({exc})"
                ) from None
            if not row:
                continue  # blank line
            if len(row) != len(names):
                yield reader.line_num, [None, f"{len(row)} fields, the header has {len(names)}"]
                continue
            yield reader.line_num, [row[i] for i in order]

    return [names[i] for i in order[1:]], rows()


def _valid_rows(rows, field_names: list[str], report: ImportReport) -> Iterator[tuple]:
    """(email, field values as JSON or None) for each valid, first-seen address."""
    seen: set[str] = set()
    has_fields = bool(field_names)
    for line, row in rows:
        email = row[0]
        if email is None:
            report.skipped.append(RowError(line, row[1]))
            continue
        email = email.strip()
        if not email:
            report.skipped.append(RowError(line, "empty email"))
            continue
        try:
            address = normalize_address(email)
        except InvalidAddress as exc:
            report.skipped.append(RowError(line, f"{email!r}: {exc}"))
            continue
        # one message per mailbox: addresses differing only in case are the same person
        key = address.lower()
        if key in seen:
            report.duplicates += 1
            continue
        seen.add(key)
        report.imported += 1
        yield address, (json.dumps(row[1:], ensure_ascii=False) if has_fields else None)


def _inserter(session: Session):
    """Inserts rows straight through the driver's executemany: a million ORM objects would
    cost minutes."""
    connection = session.connection()
    marker = "?" if connection.dialect.paramstyle == "qmark" else "%s"
    statement = (
        "INSERT INTO recipient (mailing_id, email, field_values, status, attempts)"
        f" VALUES ({', '.join([marker] * 5)})"
    )

    def insert(batch: list[tuple]) -> None:
        if batch:
            connection.exec_driver_sql(statement, batch)

    return insert
