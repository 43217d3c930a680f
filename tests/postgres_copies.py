"""Test databases on the PostgreSQL server, copied, emptied and dropped ahead of the tests.

CREATE DATABASE ... TEMPLATE and DROP DATABASE took a third of a second of the setup and
teardown of each of some 400 tests, most of it the server writing files. A thread of
their own makes the next copies while a test runs, and empties the used ones behind it
for the next tests (postgres_recycling.py), or drops those it cannot empty."""

import contextlib
import queue
import threading
import uuid
from collections.abc import Iterator

import sqlalchemy as sa

from sendstatus_tui.core.store.store import Store

from .helpers import new_signing_key
from .postgres_recycling import Template, empty

# copies kept ready: one for the next test, one for a test that takes two databases
READY_AHEAD = 2
# a copy that takes longer than this to come is a server in trouble: the test fails
TAKE_TIMEOUT_SECONDS = 60


class PostgresCopies:
    """Copies of ``template`` on ``server``, each with a signing key of its own (as the
    first command on a new database makes one)."""

    def __init__(self, server: str, template: str):
        self.server, self.template = server, template
        self._blank = Template.read(_dsn(database_url(server, template)))
        self._ready: queue.Queue[str | BaseException] = queue.Queue()
        self._given_back: queue.Queue[str] = queue.Queue()
        self._emptied: list[str] = []  # given back and emptied, for the next takers
        self._to_drop: queue.Queue[str] = queue.Queue()
        self._wanted = threading.Semaphore(READY_AHEAD)  # copies to make
        self._work = threading.Event()  # something to make or drop
        self._closing = False
        self._thread = threading.Thread(target=self._run, name="postgres-copies", daemon=True)
        self._work.set()
        self._thread.start()

    def take(self) -> str:
        """The URL of a fresh copy, yours to use (give it back when done)."""
        self._wanted.release()  # one more to make in its place
        self._work.set()
        made = self._ready.get(timeout=TAKE_TIMEOUT_SECONDS)
        if isinstance(made, BaseException):
            raise made
        return database_url(self.server, made)

    def give_back(self, url: str) -> None:
        """The database at ``url`` is emptied for another test, or dropped (engine
        processes a failed test left on it included), on the thread."""
        self._given_back.put(sa.engine.make_url(url).database or "")
        self._work.set()

    def close(self) -> None:
        """Drops every copy, used or not, once the thread has stopped."""
        self._closing = True
        self._work.set()
        self._thread.join()
        while not self._ready.empty():
            made = self._ready.get()
            if isinstance(made, str):
                self._to_drop.put(made)
        for name in [*self._emptied, *_drain(self._given_back)]:
            self._to_drop.put(name)
        self._drop_all()

    def _run(self) -> None:
        while not self._closing:
            self._work.wait()
            self._work.clear()
            for name in _drain(self._given_back):
                self._empty_or_drop(name)
            self._drop_all()
            while not self._closing and self._wanted.acquire(blocking=False):
                try:
                    self._ready.put(self._emptied.pop() if self._emptied else self._copy())
                except Exception as exc:  # noqa: BLE001  handed to the test that takes it
                    self._ready.put(exc)

    def _copy(self) -> str:
        name = create_database(self.server, template=self.template)
        _sign_anew(database_url(self.server, name))
        return name

    def _empty_or_drop(self, name: str) -> None:
        url = database_url(self.server, name)
        try:
            emptied = empty(_dsn(url), self._blank)
        except Exception:  # noqa: BLE001  whatever the test left that stops it: dropped
            emptied = False
        if emptied:
            _sign_anew(url)
            self._emptied.append(name)
        else:
            self._to_drop.put(name)

    def _drop_all(self) -> None:
        while not self._to_drop.empty():
            drop_database(self.server, self._to_drop.get())


def _sign_anew(url: str) -> None:
    store = Store(url)
    new_signing_key(store)
    store.dispose()


def _drain(names: "queue.Queue[str]") -> list[str]:
    drained = []
    while not names.empty():
        drained.append(names.get())
    return drained


def _dsn(url: str) -> str:
    """A SQLAlchemy URL as psycopg takes it."""
    return sa.engine.make_url(url).set(drivername="postgresql").render_as_string(False)


def create_database(server: str, prefix: str = "sendstatus_test", template: str = "") -> str:
    """A new database on ``server`` (a copy of ``template``, else empty); its name."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    copied = f" TEMPLATE {template}" if template else ""
    with admin(server) as connection:
        connection.exec_driver_sql(f"CREATE DATABASE {name}{copied}")
    return name


def drop_database(server: str, name: str) -> None:
    """Drops it, with the connections of any engine process a failed test left on it."""
    with admin(server) as connection:
        connection.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@contextlib.contextmanager
def admin(server: str) -> Iterator[sa.Connection]:
    """A connection to the server's own database, outside any transaction (CREATE DATABASE
    runs in none)."""
    engine = sa.create_engine(server, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as connection:
            yield connection
    finally:
        engine.dispose()


def database_url(server: str, name: str) -> str:
    return sa.engine.make_url(server).set(database=name).render_as_string(hide_password=False)
