"""The suppression list: addresses never to be mailed (``sendstatus suppress``).

An address is kept under its mailbox key, the key duplicates are found by (any case, the
domain in Unicode or ASCII form): whoever asked never to be mailed is not mailed under
another spelling. Suppressed addresses are dropped when a list is imported, and skipped
when their turn comes for those suppressed after the import (see deliveries.claim).
"""

import csv
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, col, select

from sendstatus_tui.core.model.addresses import InvalidAddress, checked_address
from sendstatus_tui.core.model.models import Suppression, utc_now
from sendstatus_tui.core.store.driver import driver_cursor
from sendstatus_tui.errors import SendStatusError

_BATCH = 400  # keys per IN (...) query


class SuppressionError(SendStatusError, ValueError):
    pass


@dataclass
class Added:
    added: int = 0
    already: int = 0  # on the list before
    invalid: list[str] = field(default_factory=list)  # "line N: why" or "'addr': why"


def mailbox_key(address: str) -> str:
    """The key under which ``address`` is (or would be) on the list."""
    return checked_address(address)[1]


def add(session: Session, addresses: Iterable[str], reason: str | None = None) -> Added:
    """Puts the addresses on the list (those already on it stay as they are)."""
    return add_entries(session, ((address, reason) for address in addresses))


def add_entries(session: Session, pairs: Iterable[tuple[str, str | None]]) -> Added:
    """Puts (address, reason) pairs on the list (those already on it stay as they are)."""
    result = Added()
    wanted: dict[str, tuple[str, str | None]] = {}
    for text, reason in pairs:
        try:
            address, key = checked_address(text.strip())
        except InvalidAddress as exc:
            result.invalid.append(f"{text!r}: {exc}")
            continue
        if key in wanted:
            result.already += 1
        else:
            wanted[key] = (address, reason)
    present = among(session, wanted)
    result.already += len(present)
    now = utc_now()
    new = [
        {"mailbox": key, "address": address, "reason": reason, "created_at": now}
        for key, (address, reason) in wanted.items()
        if key not in present
    ]
    for start in range(0, len(new), _BATCH):
        session.execute(sa.insert(Suppression), new[start : start + _BATCH])
    result.added = len(new)
    return result


def add_uncounted(session: Session, pairs: Iterable[tuple[str, str | None]]) -> None:
    """Puts (address, reason) pairs on the list as ``add_entries`` does (the invalid ones
    left out), without telling how many were new: one statement per _BATCH, with no read
    before it (the intake suppresses a batch of bounces at once)."""
    wanted: dict[str, tuple[str, str | None]] = {}
    for text, reason in pairs:
        try:
            address, key = checked_address(text.strip())
        except InvalidAddress:
            continue
        wanted.setdefault(key, (address, reason))  # the first of two spellings, as add_entries
    now = utc_now()
    rows = [
        {"mailbox": key, "address": address, "reason": reason, "created_at": now}
        for key, (address, reason) in wanted.items()
    ]
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    # those on the list before stay as they are
    statement = insert(Suppression).on_conflict_do_nothing(index_elements=["mailbox"])
    for start in range(0, len(rows), _BATCH):
        session.execute(statement, rows[start : start + _BATCH])


def remove(session: Session, addresses: Iterable[str]) -> tuple[int, list[str]]:
    """Takes the addresses off the list: (how many were on it, the invalid ones)."""
    keys, invalid = [], []
    for text in addresses:
        try:
            keys.append(mailbox_key(text.strip()))
        except InvalidAddress as exc:
            invalid.append(f"{text!r}: {exc}")
    removed = 0
    for start in range(0, len(keys), _BATCH):
        chunk = keys[start : start + _BATCH]
        removed += len(among(session, chunk))
        session.execute(sa.delete(Suppression).where(col(Suppression.mailbox).in_(chunk)))
    return removed, invalid


def among(session: Session, keys: Iterable[str]) -> set[str]:
    """Those of the mailbox ``keys`` that are on the list."""
    keys = list(keys)
    found: set[str] = set()
    # straight to the driver: the engine asks on every claim, and SQLAlchemy's compiling
    # of a few hundred parameters cost more than the query; what the session holds is
    # written first, as a query through the session would (autoflush)
    session.flush()
    cursor, mark = driver_cursor(session)
    try:
        for start in range(0, len(keys), _BATCH):
            chunk = keys[start : start + _BATCH]
            cursor.execute(
                f"SELECT mailbox FROM {Suppression.__tablename__}"
                f" WHERE mailbox IN ({', '.join([mark] * len(chunk))})",
                chunk,
            )
            found.update(row[0] for row in cursor.fetchall())
    finally:
        cursor.close()
    return found


def entries(session: Session) -> Iterator[Suppression]:
    """The list in address order, read as it is written out (not held in memory)."""
    statement = select(Suppression).order_by(col(Suppression.address))
    yield from session.exec(statement.execution_options(yield_per=1000))


def count(session: Session) -> int:
    return session.exec(select(sa.func.count()).select_from(Suppression)).one()


def read_file(path: Path) -> tuple[list[tuple[str, str | None]], list[str]]:
    """(address, reason) pairs from a file, and its invalid lines: a CSV with an ``email``
    column (and maybe ``reason``), as ``export`` writes, or one address per line."""
    try:
        with open(path, encoding="utf-8-sig", newline="") as stream:
            lines = stream.read().splitlines()
    except FileNotFoundError:
        raise SuppressionError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise SuppressionError(f"{path}: is a directory, not a file of addresses") from None
    except UnicodeDecodeError:
        raise SuppressionError(f"{path}: not UTF-8 text; save it as UTF-8") from None
    except OSError as exc:
        raise SuppressionError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    first = next((line for line in lines if line.strip()), "")
    header = [name.strip().lower() for name in next(csv.reader([first]), [])]
    if "email" not in header:
        return [(line.strip(), None) for line in lines if line.strip()], []
    rows: list[tuple[str, str | None]] = []
    invalid: list[str] = []
    start = lines.index(first) + 1  # lines before the data rows
    reader = csv.reader(lines[start:])
    email_at = header.index("email")
    reason_at = header.index("reason") if "reason" in header else None
    try:
        for row in reader:
            if not row:
                continue
            if len(row) != len(header):
                line = start + reader.line_num
                invalid.append(f"line {line}: {len(row)} fields, the header has {len(header)}")
                continue
            reason = (row[reason_at] or None) if reason_at is not None else None
            rows.append((row[email_at], reason))
    except csv.Error as exc:
        raise SuppressionError(f"{path}: malformed CSV ({exc})") from None
    return rows, invalid
