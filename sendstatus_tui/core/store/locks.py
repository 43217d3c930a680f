"""Locks: the one order every transaction takes them in, fresh rows under them, and
PostgreSQL advisory locks scoped to the schema the database lives in.

The lock order
--------------
A transaction that takes several of these takes them in this order, never back up it
(skipping any it does not need); it is what keeps several engines and operators from
deadlocking on PostgreSQL (on SQLite, BEGIN IMMEDIATE makes every write transaction
the only one, and the order costs nothing):

1. the transitions lock (``store.lock_transitions``): first, in every transaction that
   may change a mailing's state or read the lease to act as the leader
   (``lease.check`` takes it itself);
2. the ``engine_lease`` row: ``FOR KEY SHARE`` by the leader's writes (``lease.check``),
   ``FOR NO KEY UPDATE`` by a renewal, ``FOR UPDATE`` by a takeover or a release, which
   so wait for the old leader's writes under way and for nothing else;
3. ``engine_heartbeat`` rows, the engine's own first: ``FOR KEY SHARE`` by a claim or a
   sender's step (``heartbeats.check_claimant``), ``FOR NO KEY UPDATE`` by a beat,
   ``FOR UPDATE`` by a rescue clearing a silent engine's claimant (which so waits for
   that engine's claim under way);
4. ``recipient`` rows (claims skip the locked ones instead of waiting);
5. ``mailing`` rows, after their recipients, in id order: counters change with the
   recipients they count (a transition that locks a mailing first touches only
   recipients no engine holds: failed ones on a retry, none in flight on a delete);
6. anything else (the shared rate's row, settings, suppression list, errors, audit),
   each only at the end of a transaction.

A beat (2, 3) and a claim (3, 4, 5, 6) never take the transitions lock: a table locked for
long then slows the bookkeeping it blocks, never the lease nor the heartbeats.

Fresh rows under a lock
-----------------------
A row read ``FOR UPDATE`` (or any locking read) is refreshed from what the database
returned, also when the session already holds an older copy of it: SQLAlchemy would
otherwise keep the copy it read before the lock (its identity map), and a transition
would decide, and write counters, from a row another engine or an operator has
changed since. ``fresh_under_lock`` is installed on every session.
"""

from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.orm import ORMExecuteState
from sqlmodel import Session


def advisory_lock(kind: int) -> sa.Select[Any]:
    """The transaction lock ``kind`` for this schema: sendstatus databases that live in
    different schemas of one server do not wait for each other."""
    return sa.select(
        sa.func.pg_advisory_xact_lock(kind, sa.func.hashtext(sa.func.current_schema()))
    )


@event.listens_for(Session, "do_orm_execute")
def fresh_under_lock(state: ORMExecuteState) -> None:
    """A locking read (``with_for_update``, also through ``session.get``) overwrites the
    session's copies of the rows it locks with what the database returned."""
    if state.is_select and getattr(state.statement, "_for_update_arg", None) is not None:
        state.update_execution_options(populate_existing=True)
