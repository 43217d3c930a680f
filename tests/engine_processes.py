"""Helpers for tests that run `sendstatus engine` as real processes and judge the outcome
from what the relay received, the counters and the recipients in the database."""

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from sqlmodel import Session, func, select

from sendstatus_tui.core.model.models import EngineHeartbeat, EngineLease, Mailing, Recipient
from sendstatus_tui.core.store.store import lock_transitions
from sendstatus_tui.engine.headless import BEATS_PER_LEASE, LEASE_ENV

from .helpers import mailing, wait_until

# The lease the engine processes take in tests that wait on it (kill -9, SIGSTOP, a lock
# past the lease), through SENDSTATUS_LEASE_SECONDS (5 s by default): a takeover comes
# within seconds, and they wait that less. Tests of throughput keep the default: a beat
# delayed past a short lease on a busy machine pauses an engine's sending.
LEASE_SECONDS = 2.0
BEAT_SECONDS = LEASE_SECONDS / BEATS_PER_LEASE  # how often each engine beats and renews
# How soon after the leader died another engine leads: the lease runs out at most a lease
# after the dead one's last renewal; the next beat of a survivor (one beat later at most)
# takes it, and that beat's transaction has up to one more beat to commit (the engine's own
# margin: it sends only until a lease minus a beat after it asked).
TAKEOVER_SECONDS = LEASE_SECONDS + 2 * BEAT_SECONDS
# A lock another process holds past the lease: twice it (as 10 s was twice the default
# lease). Every engine's lease runs out under it, and nobody else can take the lease over.
LOCK_PAST_THE_LEASE_SECONDS = 2 * LEASE_SECONDS


def short_lease() -> dict[str, str]:
    """The environment of an engine process that takes the short lease."""
    return {**os.environ, LEASE_ENV: str(LEASE_SECONDS)}


def status_counts(store, mailing_id) -> dict[str, int]:
    with store.read() as session:
        rows = session.exec(
            select(Recipient.status, func.count())
            .where(Recipient.mailing_id == mailing_id)
            .group_by(Recipient.status)
        ).all()
    return dict(rows)


def failure_classes(store, mailing_id) -> dict[str, int]:
    with store.read() as session:
        rows = session.exec(
            select(Recipient.failure_class, func.count())
            .where(Recipient.mailing_id == mailing_id, Recipient.status == "failed")
            .group_by(Recipient.failure_class)
        ).all()
    return dict(rows)


def assert_books_balance(store, mailing_id) -> Mailing:
    """The counters equal the recipients by status, and never pass the total."""
    m = mailing(store, mailing_id)
    counts = status_counts(store, mailing_id)
    assert (m.sent, m.failed, m.deferred) == (
        counts.get("sent", 0),
        counts.get("failed", 0),
        counts.get("deferred", 0),
    ), (m, counts)
    assert 0 <= m.remaining <= m.total and m.sent + m.failed <= m.total
    return m


@dataclass
class Delivery:
    """What the relay received against what the books say."""

    copies: Counter
    resent_in_doubt: int

    @property
    def delivered(self) -> int:
        return sum(self.copies.values())

    @property
    def distinct(self) -> int:
        return len(self.copies)

    @property
    def duplicates(self) -> int:
        return self.delivered - self.distinct

    def __str__(self) -> str:
        return (
            f"delivered {self.delivered}, distinct {self.distinct},"
            f" counted in doubt {self.resent_in_doubt}"
        )


def stall_between_transactions(
    process: subprocess.Popen, db_url: str, holding_claims: bool = False
) -> None:
    """SIGSTOPs an engine at a moment when it holds none of the locks a takeover needs.
    Stopped holding one (SQLite's write lock; PostgreSQL's transitions lock or lease row),
    nobody could take over until it woke, which is a different fault from the one under
    test. With ``holding_claims``, also at a moment when it has recipients in flight: a
    busy machine may otherwise stop it between batches, with nothing to hand back."""
    for _ in range(40):
        process.send_signal(signal.SIGSTOP)
        time.sleep(0.05)
        if not _takeover_would_wait(db_url, process.pid) and (
            not holding_claims or _claims_in_flight(db_url, process.pid)
        ):
            return
        process.send_signal(signal.SIGCONT)
        time.sleep(0.1)
    raise AssertionError("the engine held a lock a takeover needs (or no claim) at every try")


def _claims_in_flight(db_url: str, pid: int) -> int:
    engine = sa.create_engine(db_url)
    try:
        with Session(engine) as session:
            claimant = session.exec(
                select(EngineHeartbeat.claimant).where(EngineHeartbeat.pid == pid)
            ).one()
            return session.exec(select(func.count()).where(Recipient.claimed_by == claimant)).one()
    finally:
        engine.dispose()


def _takeover_would_wait(db_url: str, pid: int) -> bool:
    if db_url.startswith("sqlite"):
        probe = sqlite3.connect(db_url.removeprefix("sqlite:///"), timeout=0)
        try:
            probe.execute("BEGIN IMMEDIATE")
            probe.rollback()
            return False
        except sqlite3.OperationalError:  # database is locked
            return True
        finally:
            probe.close()
    # PostgreSQL: what a takeover must lock (the transitions lock, the lease row, the
    # engine rows) is free
    engine = sa.create_engine(db_url)
    try:
        with Session(engine) as session, session.begin():
            session.execute(sa.text("SET LOCAL lock_timeout = '100ms'"))
            lock_transitions(session)
            session.exec(select(EngineLease).with_for_update()).all()
            # a rescue clears the claimant of a silent engine: its row must be free too
            session.exec(select(EngineHeartbeat).with_for_update()).all()
            # and it hands back the stopped engine's claims and counts them on their
            # mailings: stopped while recording a batch, it holds those rows locked
            session.exec(select(Mailing.id).with_for_update()).all()
            claimant = select(EngineHeartbeat.claimant).where(EngineHeartbeat.pid == pid)
            claimed = select(Recipient.id).where(Recipient.claimed_by == claimant.scalar_subquery())
            session.exec(claimed.with_for_update()).all()
        return False
    except sa.exc.OperationalError:  # lock timeout: the stopped engine holds one of them
        return True
    finally:
        engine.dispose()


def hold_write_lock(db_url: str, seconds: float, taken: threading.Event | None = None) -> None:
    """Holds the database's write lock for ``seconds``, as a big import does; sets ``taken``
    once it holds it."""
    engine = sa.create_engine(db_url)
    with engine.connect() as connection:
        if engine.dialect.name == "sqlite":
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            connection.begin()
            connection.exec_driver_sql("LOCK TABLE recipient IN EXCLUSIVE MODE")
        if taken is not None:
            taken.set()
        time.sleep(seconds)  # the fault itself: a writer that keeps the lock this long
        connection.exec_driver_sql("COMMIT")
    engine.dispose()


# the lines of each engine's log a failed test shows
LOG_LINES_SHOWN = 40


class EngineProcesses:
    """Starts `sendstatus engine` processes; each logs to a file of its own."""

    def __init__(self, db_url: str, relay_url: str, log_dir: Path):
        self.db_url, self.relay_url, self.log_dir = db_url, relay_url, log_dir
        self.started: list[tuple[subprocess.Popen, Path]] = []

    def start(
        self,
        *options: str,
        relay_url: str | None = None,
        lease: bool = False,
        stored_relays: bool = False,
    ) -> subprocess.Popen:
        """An engine with ``options``; with ``lease``, it takes the short lease; with
        ``stored_relays``, it sends through the relays stored in the database (no --smtp)."""
        log_path = self.log_dir / f"engine-{len(self.started) + 1}.log"
        relay = [] if stored_relays else ["--smtp", relay_url or self.relay_url]
        process = subprocess.Popen(
            [sys.executable, "-m", "sendstatus_tui.cli.main", "engine", "--db", self.db_url,
             *relay, *options],
            stderr=log_path.open("w"),
            env=short_lease() if lease else None,
        )  # fmt: skip
        self.started.append((process, log_path))
        return process

    def log(self, process: subprocess.Popen) -> str:
        return next(path for p, path in self.started if p is process).read_text()

    def took_over(self, process: subprocess.Popen) -> bool:
        """Whether the engine has held the lease (not merely seen another hold it)."""
        return "holds the lease (generation" in self.log(process)

    def stop_all(self) -> None:
        """Stops every engine, then prints the end of each one's log: pytest shows it
        under a failed test (captured output of its teardown), and only there."""
        for process, _ in self.started:
            if process.poll() is None:
                workers = list(children_of(process.pid))  # of a supervisor (engine --workers)
                process.send_signal(signal.SIGCONT)  # a stalled one must be able to die
                process.kill()
                # a killed supervisor's workers get SIGTERM and finish their batches: they
                # must be gone before the test's database is dropped under them
                wait_until(
                    lambda workers=workers: not any(map(alive, workers)),
                    30,
                    "the workers of a killed supervisor to stop",
                    0.05,
                )
            process.wait()
        for process, path in self.started:
            print(f"--- {path.name}, exit status {process.returncode}, its last lines:")
            print("\n".join(path.read_text(errors="replace").splitlines()[-LOG_LINES_SHOWN:]))


def children_of(parent: int) -> dict[int, str]:
    """The live processes whose parent is ``parent``, with their command lines."""
    found = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            # "pid (command) state ppid ...": the command may hold spaces, not ")"
            state, ppid = stat.read_text().rpartition(")")[2].split()[:2]
            command = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:  # the process ended meanwhile
            continue
        if int(ppid) == parent and state != "Z":
            found[int(stat.parent.name)] = command
    return found


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"


def registered_engines(store) -> list[EngineHeartbeat]:
    """The engine rows that name a claimant: engines ready to send."""
    with store.read() as session:
        rows = session.exec(select(EngineHeartbeat)).all()
    return [row for row in rows if row.claimant]


def start_engines(engines, store, count: int, *options: str, lease: bool = False) -> list:
    """``count`` engines with ``options``, once all are ready; with ``lease``, they take the
    short lease."""
    processes = [engines.start(*options, lease=lease) for _ in range(count)]
    wait_until(lambda: len(registered_engines(store)) == count, 20, f"{count} engines registered")
    return processes
