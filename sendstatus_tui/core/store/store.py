"""The store: database engine set-up, migrations on open, and transactions.

How a command may open its database (``Store(url, create=..., migrate=..., read_only=...)``):
commands that only read never create, migrate nor write it (a missing file is an error, an
old schema too), and open SQLite read-only (``mode=ro``) and PostgreSQL in read-only
transactions, so that they also work on a file they may not write.

SQLite (the embedded default) runs in WAL mode with a long busy timeout, and every write
transaction takes the write lock at BEGIN (BEGIN IMMEDIATE): a transaction that first reads
and later writes can then never fail half-way with "database is locked" when a dashboard and
an engine in two processes write at once; it waits its turn at BEGIN instead.
PostgreSQL goes through the same code; there, state transitions take a transaction-level
advisory lock (``lock_transitions``).
"""

import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.pool import ConnectionPoolEntry
from sqlmodel import Session

from sendstatus_tui import config
from sendstatus_tui.core.store.locks import advisory_lock
from sendstatus_tui.core.store.migrate import (
    HEAD_REVISION,
    SchemaNotCurrent,
    current_revision,
    upgrade_to_head,
)
from sendstatus_tui.core.store.writer_queue import writer_queue
from sendstatus_tui.errors import SendStatusError, mask_url

# how long a writer waits for the SQLite write lock before giving up
SQLITE_BUSY_TIMEOUT_MS = 60_000
# a PostgreSQL connection used this recently is taken from the pool without a ping (one
# round trip less per transaction of an engine at work); one idle longer is pinged first
PING_AFTER_IDLE_SECONDS = 2.0
_TRANSITIONS_LOCK = 0x5E4D5741  # any constant shared by every sendstatus process
# the databases sendstatus runs on, with the URL form an operator gives
_SUPPORTED = {"sqlite": "sqlite:///FILE", "postgresql": "postgresql+psycopg://USER@HOST/DB"}
# what SQLite says of a file that is not a database or was damaged
_SQLITE_DAMAGED = {"file is not a database", "database disk image is malformed"}


class StoreError(SendStatusError):
    """The database cannot be opened or used (bad URL, unreachable server, ...)."""


class DatabaseMissing(StoreError):
    """The SQLite file does not exist, and the command may not create it."""

    def __init__(self, path: Path):
        super().__init__(f"no database at {path}")


class Store:
    """One database: an SQLAlchemy engine plus transactions shaped for our writers.

    ``create``: a missing SQLite file is created (else DatabaseMissing). ``migrate``: the
    schema is brought to the newest revision (else an outdated one is SchemaNotCurrent).
    ``read_only``: nothing can be written through this store, by the driver's own guard.
    ``created`` and ``upgraded_from`` say what opening did, for the command to report.
    """

    def __init__(
        self, url: str, *, create: bool = True, migrate: bool = True, read_only: bool = False
    ):
        assert not (read_only and (create or migrate)), "a read-only store changes nothing"
        self.url = url
        self.created = False
        self.upgraded_from: str | None = None
        path = _sqlite_path(url)
        self.engine = _create_engine(url, read_only=read_only)  # checks the URL
        # this process's writers of the file take their turns in order (writer_queue.py)
        self._writers = writer_queue(path) if path is not None else None
        # the folders made for a new file: removed with it (remove_if_unused)
        self._new_folders: list[Path] = []
        if path is not None and not path.exists():
            if not create:
                raise DatabaseMissing(path)
            self._new_folders = _make_private_file(path, url)
            self.created = True
        try:
            self._open(migrate)
        except BaseException:
            if path is not None and self.created:  # nothing half-made stays
                self.dispose()
                _remove_files(path)
                _remove_folders(self._new_folders)
            raise

    def _open(self, migrate: bool) -> None:
        with self._explained("cannot open database"):
            if migrate:
                before = upgrade_to_head(self.engine, f"database {self.safe_url}")
                self.created = self.created or before is None
                if before not in (None, HEAD_REVISION):
                    self.upgraded_from = before
            else:
                revision = current_revision(self.engine)
                if revision != HEAD_REVISION:
                    self.engine.dispose()
                    raise SchemaNotCurrent(f"database {self.safe_url}", revision)

    @property
    def safe_url(self) -> str:
        """The URL without its password, for messages and logs."""
        return mask_url(self.url)

    @contextmanager
    def write(self, ahead: bool = False) -> Iterator[Session]:
        """A write transaction, committed on success and rolled back on any error.
        ``ahead``: an operator's action, which on SQLite goes before the engine's writes
        waiting in this process (writer_queue.py)."""
        with (
            self._turn_to_write(ahead),
            self._explained("cannot write to database"),
            self.engine.connect() as connection,
        ):
            connection.execution_options(sqlite_begin="IMMEDIATE")
            with Session(bind=connection, expire_on_commit=False) as session, session.begin():
                session.connection()  # BEGIN now, not at the first statement
                with _closed_if_interrupted(connection):
                    yield session

    @contextmanager
    def _turn_to_write(self, ahead: bool) -> Iterator[None]:
        if self._writers is None:  # PostgreSQL queues its writers itself
            yield
            return
        try:
            self._writers.take(SQLITE_BUSY_TIMEOUT_MS / 1000, ahead)
        except TimeoutError:
            waited = SQLITE_BUSY_TIMEOUT_MS // 1000
            raise StoreError(
                f"cannot write to database {self.safe_url}: database is locked"
                f" (this process's other writers held it for {waited} s)"
            ) from None
        try:
            yield
        finally:
            self._writers.release()

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A read-only transaction (never blocks writers in WAL mode)."""
        with (
            self._explained("cannot read database"),
            Session(self.engine, expire_on_commit=False) as session,
            session.begin(),
            _closed_if_interrupted(session.connection()),
        ):
            yield session

    def dispose(self) -> None:
        self.engine.dispose()

    def remove_if_unused(self) -> bool:
        """Removes the SQLite file this store created if no mailing was ever put in it (a
        command that created it, then failed, leaves nothing behind); says if it did."""
        path = _sqlite_path(self.url)
        if not self.created or path is None:
            return False
        with self.engine.connect() as connection:
            used = connection.exec_driver_sql("SELECT count(*) FROM mailing").scalar()
        if used:
            return False
        self.dispose()
        _remove_files(path)
        _remove_folders(self._new_folders)
        return True

    @contextmanager
    def _explained(self, doing: str) -> Iterator[None]:
        """Turns the driver's errors (full disk, corrupt or read-only file, server gone) into
        a StoreError of one line; the driver's exception stays attached as its cause."""
        try:
            yield
        except sa.exc.DBAPIError as exc:
            raise StoreError(f"{doing} {self.safe_url}: {self._why(exc.orig)}") from exc
        except self.engine.dialect.loaded_dbapi.Error as exc:  # from code that uses the driver
            raise StoreError(f"{doing} {self.safe_url}: {self._why(exc)}") from exc

    def _why(self, exc: BaseException | None) -> str:
        reason = _reason(exc)
        path = _sqlite_path(self.url)
        # SQLite cannot say why it could not open a file it may read: its WAL files
        if path and "unable to open" in reason and not os.access(path.parent, os.W_OK):
            return f"{reason} (its directory is read-only: commands that only read work)"
        return reason


def may_write(url: str) -> bool:
    """Whether this process may write the SQLite file (and its WAL files beside it) of
    ``url``; other databases say so only when written to."""
    path = _sqlite_path(url)
    if path is None or not path.exists():
        return True
    return os.access(path, os.W_OK) and os.access(path.parent, os.W_OK)


def lock_transitions(session: Session) -> None:
    """Serialises state transitions (and so the queue) until the transaction ends.

    On SQLite, BEGIN IMMEDIATE already does; PostgreSQL needs an explicit lock, because two
    READ COMMITTED transactions would otherwise renumber the queue from stale reads. It is
    taken first, before any row lock (the lock order: core/store/locks.py).
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(advisory_lock(_TRANSITIONS_LOCK))


def _sqlite_path(url: str) -> Path | None:
    """The file of an SQLite URL (None for other databases, memory, or a broken URL)."""
    try:
        parsed = sa.engine.make_url(url)
    except (sa.exc.ArgumentError, ValueError):
        return None
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    if parsed.username or parsed.password or parsed.host:  # no file: the driver refuses it
        return None
    return Path(parsed.database).expanduser()


def _make_private_file(path: Path, url: str) -> list[Path]:
    """Creates the empty file of a new SQLite database, readable by its owner only (0600;
    SQLite gives its WAL and SHM files the same mode), in folders it makes 0700; the
    folders it made, deepest first."""
    made = [f for f in (path.parent, *path.parent.parents) if not f.exists()]
    try:
        make_private_folder(path.parent)
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except OSError as exc:
        _remove_folders(made)
        raise StoreError(f"cannot open database {mask_url(url)}: {exc}") from None
    return made


def make_private_folder(folder: Path) -> None:
    """Makes ``folder`` and its missing parents, each readable by its owner only (0700)."""
    for missing in reversed([f for f in (folder, *folder.parents) if not f.exists()]):
        missing.mkdir(mode=0o700, exist_ok=True)


def readable_by_others(url: str) -> Path | None:
    """The existing SQLite file of ``url`` if its group or other users may read it."""
    path = _sqlite_path(url)
    try:
        exposed = path is not None and bool(path.stat().st_mode & 0o044)
    except OSError:
        return None
    return path if exposed else None


def _remove_files(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        path.with_name(path.name + suffix).unlink(missing_ok=True)


def _remove_folders(folders: list[Path]) -> None:
    """Removes the folders this process made, deepest first, those still empty."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:  # no longer empty, or gone: left as they are
            return


def _create_engine(url: str, *, read_only: bool) -> sa.Engine:
    if "://" not in url and not set("@:") & set(url):  # a file's path, it seems
        as_url = config.sqlite_url(Path(url).expanduser().resolve())
        raise StoreError(f"unusable database URL {url!r}: a file is given as {as_url}")
    try:
        dialect = sa.engine.make_url(url).get_backend_name()
    except (sa.exc.ArgumentError, ValueError) as exc:
        raise StoreError(f"unusable database URL {mask_url(url)}: {_reason(exc)}") from None
    if dialect not in _SUPPORTED:
        raise StoreError(
            f"unsupported database URL {mask_url(url)}: expected {' or '.join(_SUPPORTED.values())}"
        )
    if dialect == "sqlite" and "?" in url:  # SQLAlchemy would read the rest as options
        raise StoreError(
            f"unusable database URL {mask_url(url)}: an SQLite URL takes no options after"
            " '?'; in a file name, write '?' as %3F (and '%' as %25)"
        )
    try:
        return _configured_engine(url, read_only)
    except (sa.exc.ArgumentError, sa.exc.NoSuchModuleError, ImportError, ValueError) as exc:
        raise StoreError(f"unusable database URL {mask_url(url)}: {_reason(exc)}") from None


def _configured_engine(url: str, read_only: bool) -> sa.Engine:
    if not url.startswith("sqlite"):
        if read_only:  # the server refuses every write of a read-only transaction
            parsed = sa.engine.make_url(url)
            options = f"{parsed.query.get('options', '')} -c default_transaction_read_only=on"
            read_only_url = parsed.update_query_dict({"options": options.strip()})
            return _pinged_when_idle(sa.create_engine(read_only_url))
        return _pinged_when_idle(sa.create_engine(url))
    path = _sqlite_path(url)
    timeout = SQLITE_BUSY_TIMEOUT_MS / 1000
    if path is not None and read_only:
        engine = sa.create_engine("sqlite://", creator=lambda: _read_only_sqlite(path, timeout))
    elif path is not None:  # the very file this store names (~ expanded, as everywhere)
        file_url = sa.engine.make_url(url).set(database=str(path))
        engine = sa.create_engine(file_url, connect_args={"timeout": timeout})
    else:
        engine = sa.create_engine(url, connect_args={"timeout": timeout})

    @event.listens_for(engine, "connect")
    def _configure(dbapi_connection: sqlite3.Connection, _record: ConnectionPoolEntry) -> None:
        # let SQLAlchemy's begin event below emit BEGIN, instead of pysqlite's own handling
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        if not read_only:  # WAL is kept in the file: a reader finds it there
            cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection: sa.Connection) -> None:
        mode = connection.get_execution_options().get("sqlite_begin", "DEFERRED")
        connection.exec_driver_sql(f"BEGIN {mode}")

    return engine


def _pinged_when_idle(engine: sa.Engine) -> sa.Engine:
    """Pings a connection taken from the pool, as ``pool_pre_ping`` does, unless it was
    connected or handed back less than PING_AFTER_IDLE_SECONDS ago. One that does not answer
    is replaced with a new one (the pool tries again); one that died unseen within that
    time fails its transaction instead, which the caller retries as any lost connection."""

    @event.listens_for(engine, "connect")
    @event.listens_for(engine, "checkin")
    def _used(_dbapi_connection: object, record: ConnectionPoolEntry) -> None:
        record.info["used_at"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _ping(dbapi_connection: object, record: ConnectionPoolEntry, _proxy: object) -> None:
        used_at = record.info.get("used_at")
        if used_at is not None and time.monotonic() - used_at < PING_AFTER_IDLE_SECONDS:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)  # type: ignore[arg-type]
        except engine.dialect.loaded_dbapi.Error as exc:
            raise sa.exc.DisconnectionError(f"no answer to a ping: {_reason(exc)}") from exc
        record.info["used_at"] = time.monotonic()

    return engine


def _read_only_sqlite(path: Path, timeout: float) -> sqlite3.Connection:
    """A connection that cannot write the file. A WAL database whose directory we may not
    write (no -shm file can be created there) opens only as immutable: then no writer can
    be at work on it either, since a writer needs that file too."""
    uri = f"file:{quote(str(path.resolve()))}"

    def connect(parameters: str) -> sqlite3.Connection:
        # the pool hands connections from thread to thread, as for a writable file
        return sqlite3.connect(
            f"{uri}?{parameters}", uri=True, timeout=timeout, check_same_thread=False
        )

    connection = connect("mode=ro")
    try:
        connection.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.OperationalError as exc:
        connection.close()
        if "unable to open" not in str(exc):
            raise
        connection = connect("mode=ro&immutable=1")
    return connection


def _reason(exc: BaseException | None) -> str:
    """The driver's message on one line; a damaged SQLite file is called corrupt."""
    reason = " ".join(str(exc).split())
    if reason in _SQLITE_DAMAGED:
        return f"the database file is corrupt ({reason})"
    return reason


@contextmanager
def _closed_if_interrupted(connection: sa.Connection) -> Iterator[None]:
    """Ctrl-C or SIGTERM may land while the driver waits for the server, and leave the
    connection mid-command: it is closed rather than rolled back (the server rolls the
    transaction back), so that the interrupt, not a failed rollback, is what the caller
    sees, and the pool never hands that connection out again."""
    try:
        yield
    except BaseException as exc:
        if not isinstance(exc, Exception):
            connection.invalidate()
        raise
