"""One truth per transition, one lock order, logs that tell what happened: several engine
processes against a real relay on loopback and a real database.

- every mailing is completed once, however many engines race to complete it;
- an operator's stop and retry raced against completion never leave a completed mailing
  with recipients pending;
- four engines on PostgreSQL never deadlock, log no error, and the leader keeps its lease;
- a table locked for twice the lease (any of them) slows bookkeeping only: nobody loses
  the lease or its claims;
- a hand-back whose commit fails is logged once, when it has committed.

Judged from what the relay received, the counters, the recipients, the audit trail and
the engines' logs (design: docs/guides/several-engines.md, "Locks, in one order").
"""

import re
import signal
import threading
import time
from collections import Counter

import pytest
import sqlalchemy as sa
from sqlmodel import select

from sendstatus_tui.core.coordination import lease
from sendstatus_tui.core.model import lifecycle, settings
from sendstatus_tui.core.model.audit import Change
from sendstatus_tui.core.model.models import AuditEntry, Mailing
from sendstatus_tui.core.model.states import TransitionRefused

from .engine_processes import (
    LOCK_PAST_THE_LEASE_SECONDS,
    Delivery,
    EngineProcesses,
    assert_books_balance,
    registered_engines,
    stall_between_transactions,
    start_engines,
    status_counts,
)
from .helpers import mailing, wait_until
from .smtp_relay import RelayScript

RESCUED = "were in flight with an engine gone silent"
WORKS_AGAIN = "the database works again"


@pytest.fixture
def engines(db_url, relay, tmp_path):
    processes = EngineProcesses(db_url, relay.url, tmp_path)
    yield processes
    processes.stop_all()


def postgresql_only(db_url: str) -> None:
    if not db_url.startswith("postgresql"):
        pytest.skip("a PostgreSQL lock mode or trigger")


def store_rate(store, rate: str | None) -> None:
    with store.write() as session:
        settings.write(session, "rate", rate)


def actions(store, mailing_id: int) -> list[str]:
    """The mailing's audit trail, oldest first."""
    with store.read() as session:
        return list(
            session.exec(
                select(AuditEntry.action)
                .where(AuditEntry.mailing_id == mailing_id)
                .order_by(AuditEntry.id)  # type: ignore[arg-type]
            ).all()
        )


def completions(store, mailing_id: int) -> int:
    return actions(store, mailing_id).count(Change.COMPLETED)


def all_completed(store, ids: list[int]) -> bool:
    with store.read() as session:
        states = session.exec(select(Mailing.state).where(Mailing.id.in_(ids))).all()  # type: ignore[union-attr]
    return len(states) == len(ids) and all(state == "completed" for state in states)


def lines(log: str, text: str) -> list[str]:
    return [line for line in log.splitlines() if text in line]


# --- one truth per transition ------------------------------------------------------------

# completed mailings with recipients not final, or counters that do not add up
_COMPLETED_NOT_DONE = """
SELECT m.id, (SELECT count(*) FROM recipient r WHERE r.mailing_id = m.id
              AND r.status NOT IN ('sent', 'failed', 'suppressed')) AS not_final
FROM mailing m WHERE m.state = 'completed'
AND (m.total - m.sent - m.failed - m.suppressed <> 0
     OR EXISTS (SELECT 1 FROM recipient r WHERE r.mailing_id = m.id
                AND r.status NOT IN ('sent', 'failed', 'suppressed')))
"""


@pytest.mark.slow  # engine processes racing, locked and failing: serially
def test_many_small_mailings_on_four_engines_complete_once_each(
    store, make_mailing, engines, relay
):
    """16 small mailings sent at once by 4 engines: each completes exactly once (one
    "completed" in its audit trail), with its books balanced and everyone sent once."""
    ids = [make_mailing(recipients=25) for _ in range(16)]
    start_engines(engines, store, 4)
    for mailing_id in ids:
        with store.write() as session:
            lifecycle.send_now(session, mailing_id)

    wait_until(lambda: all_completed(store, ids), 90, "every mailing completed", 0.1)
    time.sleep(1.0)  # a late second completion would come within a claim's round
    counted = {mailing_id: completions(store, mailing_id) for mailing_id in ids}
    print(f"completions per mailing: {sorted(Counter(counted.values()).items())}")
    assert set(counted.values()) == {1}, counted
    for mailing_id in ids:
        done = assert_books_balance(store, mailing_id)
        assert (done.sent, done.resent_in_doubt) == (25, 0)
    copies = relay.copies()
    assert len(copies) == 25 and set(copies.values()) == {16}  # each mailing once each


@pytest.mark.slow  # engine processes racing, locked and failing: serially
def test_stop_and_retry_raced_against_completion_never_complete_with_pending(
    store, make_mailing, engines, relays
):
    """An operator stops each mailing the moment its last recipient is recorded, and puts
    its refused recipient back with `retry`, while 3 engines race to complete it: a
    completed mailing never has a recipient pending, and each sending ends in one
    completion at most."""
    refused = "person0@example.com"
    # refused by policy (5.7.1): an unknown user (5.1.1) would be suppressed at the first
    # refusal (suppress_unknown_users), and not tried again after the retry
    relay = relays(RelayScript(rcpt_replies={refused: ["550 5.7.1 refused by policy"] * 1000}))
    engines.relay_url = relay.url
    ids = [make_mailing(recipients=12) for _ in range(6)]
    start_engines(engines, store, 3)
    violations: list[str] = []
    watching = threading.Event()
    watching.set()

    def watch():  # one statement: one snapshot, also under READ COMMITTED
        while watching.is_set():
            with store.read() as session:
                found = session.execute(sa.text(_COMPLETED_NOT_DONE)).all()
            violations.extend(f"mailing {id_}: completed, {n} not final" for id_, n in found)
            time.sleep(0.01)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    races = Counter()
    for _ in range(3):
        for mailing_id in ids:
            with store.write() as session:
                lifecycle.send_now(session, mailing_id)
        for mailing_id in ids:
            wait_until(lambda m=mailing_id: mailing(store, m).remaining == 0, 30, "recorded", 0.002)
            try:
                with store.write() as session:
                    lifecycle.stop(session, mailing_id)
                races["stopped before completion"] += 1
            except TransitionRefused:
                races["completed before the stop"] += 1
            with store.write() as session:
                assert lifecycle.retry(session, mailing_id, ("5xx",)) == 1
    time.sleep(1.5)  # an engine's late completion would come within a claim's round
    watching.clear()
    watcher.join()
    print(f"races: {dict(races)}; violations: {violations[:5]}")
    assert violations == []
    for mailing_id in ids:
        parked = assert_books_balance(store, mailing_id)
        assert parked.state == "standby" and parked.remaining == 1, parked
        assert status_counts(store, mailing_id).get("pending") == 1
        trail = [a for a in actions(store, mailing_id) if a in (Change.SEND_NOW, Change.COMPLETED)]
        assert "completed,completed" not in ",".join(trail), trail  # one truth per sending


# --- one lock order ----------------------------------------------------------------------


@pytest.mark.slow  # engine processes racing, locked and failing: serially
def test_four_engines_on_postgresql_never_deadlock(store, make_mailing, engines, relay, db_url):
    """4 engines send 4 immediate and 4 sequential mailings: no deadlock, no ERROR line in
    any log, and the first leader leads throughout (one generation of the lease)."""
    postgresql_only(db_url)
    store_rate(store, "2000/s")
    immediate = [make_mailing(recipients=400) for _ in range(4)]
    sequential = [make_mailing(recipients=150) for _ in range(4)]
    processes = start_engines(engines, store, 4)
    for mailing_id in immediate:
        with store.write() as session:
            lifecycle.send_now(session, mailing_id)
    for mailing_id in sequential:
        with store.write() as session:
            lifecycle.enqueue(session, mailing_id)

    wait_until(lambda: all_completed(store, immediate + sequential), 120, "completion", 0.2)
    with store.read() as session:
        held = lease.current(session)
    logs = [engines.log(process) for process in processes]
    deadlocks = sum(len(lines(log, "deadlock detected")) for log in logs)
    errors = [line for log in logs for line in lines(log, " ERROR ")]
    print(f"deadlock lines: {deadlocks}; ERROR lines: {len(errors)}; {errors[:3]}")
    assert deadlocks == 0
    assert errors == []
    assert held.generation == 1
    assert sum(len(lines(log, "holds the lease")) for log in logs) == 1
    assert not any("lost the lease" in log for log in logs)
    for mailing_id in immediate + sequential:
        assert completions(store, mailing_id) == 1
        assert assert_books_balance(store, mailing_id).resent_in_doubt == 0
    assert max(relay.copies().values()) == 8


def lock_table(db_url: str, table: str, seconds: float) -> None:
    engine = sa.create_engine(db_url)
    with engine.connect() as connection:
        connection.begin()
        connection.exec_driver_sql(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
        time.sleep(seconds)
        connection.exec_driver_sql("COMMIT")
    engine.dispose()


@pytest.mark.idle  # waits out a lock on under half a core and counts (docs/maintenance.md)
@pytest.mark.parametrize("table", ["engine_lease", "engine", "mailing", "recipient"])
def test_a_table_locked_twice_the_lease_slows_only_bookkeeping(
    store, make_mailing, engines, relay, db_url, table
):
    """Any table the engines use locked ACCESS EXCLUSIVE for twice the lease: no engine
    loses the lease or its claims for it, nothing deadlocks, and the mailing completes with
    nobody sent twice.

    3000 recipients at 600/s: 600 sent before the lock, and some 2000 left after it,
    seconds of beats and claims under the same lease."""
    postgresql_only(db_url)
    store_rate(store, "600/s")
    mailing_id = make_mailing(recipients=3000)
    processes = start_engines(engines, store, 2, lease=True)
    with store.write() as session:
        lifecycle.send_now(session, mailing_id)
    wait_until(lambda: mailing(store, mailing_id).sent >= 600, 30, "sending under way")
    with store.read() as session:
        before = lease.current(session)
        holder, generation = before.holder, before.generation

    lock_table(db_url, table, LOCK_PAST_THE_LEASE_SECONDS)

    wait_until(lambda: mailing(store, mailing_id).state == "completed", 90, "completion", 0.1)
    done = assert_books_balance(store, mailing_id)
    with store.read() as session:
        after = lease.current(session)
    logs = [engines.log(process) for process in processes]
    print(f"{table} locked: lease generation {generation} -> {after.generation}")
    assert (after.holder, after.generation) == (holder, generation)
    assert (done.sent, done.resent_in_doubt) == (3000, 0)
    assert max(relay.copies().values()) == 1
    for log in logs:
        assert "lost the lease" not in log
        assert "handed its claims back" not in log
        assert "deadlock detected" not in log


# --- logs tell what happened -------------------------------------------------------------

_REFUSE_HAND_BACKS = """
CREATE TABLE hand_back_fault (armed boolean NOT NULL);
INSERT INTO hand_back_fault VALUES (true);
CREATE FUNCTION refuse_hand_back() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF (SELECT armed FROM hand_back_fault) THEN
    RAISE EXCEPTION 'hand-back refused at commit (test fault)';
  END IF;
  RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER refuse_hand_back AFTER UPDATE ON recipient
  DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
  WHEN (OLD.status = 'in_flight' AND NEW.status = 'pending')
  EXECUTE FUNCTION refuse_hand_back();
"""


def run_sql(db_url: str, sql: str) -> None:
    engine = sa.create_engine(db_url)
    with engine.begin() as connection:
        connection.exec_driver_sql(sql)
    engine.dispose()


@pytest.mark.idle  # mostly waits, under half a core (docs/maintenance.md)
def test_a_hand_back_whose_commit_fails_is_logged_once_after_it_commits(
    store, make_mailing, engines, relay, db_url
):
    """A sender stalls past its heartbeat while every hand-back fails at commit (a
    deferred trigger): the leader logs no hand-back and no recovery while it fails, then,
    once it commits, one hand-back of the count it committed and one recovery."""
    postgresql_only(db_url)
    store_rate(store, "300/s")
    mailing_id = make_mailing(recipients=3000)
    leader = engines.start()
    wait_until(lambda: engines.took_over(leader), what="the first engine leading")
    sender = engines.start()
    wait_until(lambda: len(registered_engines(store)) == 2, 20, "two engines registered")
    with store.write() as session:
        lifecycle.send_now(session, mailing_id)
    wait_until(lambda: all(r.sent > 50 for r in registered_engines(store)), 20, "both sending")

    armed_at = len(engines.log(leader))  # what the leader logged before: not this fault's
    run_sql(db_url, _REFUSE_HAND_BACKS)
    stall_between_transactions(sender, db_url, holding_claims=True)
    wait_until(lambda: "hand-back refused at commit" in engines.log(leader), 20, "a failing commit")
    time.sleep(3.0)  # a few more rounds of the rescue, each failing
    failing = engines.log(leader)[armed_at:]
    run_sql(db_url, "UPDATE hand_back_fault SET armed = false")
    wait_until(lambda: lines(engines.log(leader), RESCUED), 20, "the hand-back committed")
    time.sleep(2.0)  # rounds after it: nothing more to hand back, nor to log
    sender.send_signal(signal.SIGCONT)

    wait_until(lambda: mailing(store, mailing_id).state == "completed", 90, "completion", 0.1)
    done = assert_books_balance(store, mailing_id)
    log = engines.log(leader)[armed_at:]
    rescued = lines(log, RESCUED)
    print(
        f"while failing: {len(lines(failing, RESCUED))} hand-back and"
        f" {len(lines(failing, WORKS_AGAIN))} recovery lines; after: {len(rescued)} and"
        f" {len(lines(log, WORKS_AGAIN))}"
    )
    assert lines(failing, RESCUED) == [] and lines(failing, WORKS_AGAIN) == []
    assert len(rescued) == 1
    assert len(lines(log, WORKS_AGAIN)) == 1
    count = int(re.search(r"mailing \d+: (\d+) recipients", rescued[0]).group(1))
    assert count > 0 and done.resent_in_doubt == count
    assert Delivery(relay.copies(), done.resent_in_doubt).duplicates <= done.resent_in_doubt
    assert set(relay.copies()) == {f"person{i}@example.com" for i in range(3000)}
