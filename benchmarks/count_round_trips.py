"""Database round trips per batch: the engine's claim transaction (its claimant checked,
the mailing read, the contracted rate read, a batch claimed) and its record transaction
(the batch recorded sent), counted on SQLite and PostgreSQL.

A round trip is a statement the driver sends (executemany counted once), a pre-ping, a
BEGIN, a COMMIT; with psycopg's pipeline mode, the statements of one pipeline count once
(one sync; checked against libpq's trace). On SQLite only SQLAlchemy's statements are
counted (not those sent to the driver's cursors directly): there is no server to go to.

    python benchmarks/count_round_trips.py [--batches N] [--batch B] [--databases ...]
"""

import argparse
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from sendstatus_tui.core.coordination import deliveries, heartbeats, shared_rate
from sendstatus_tui.core.model import lifecycle
from sendstatus_tui.core.model.models import EngineHeartbeat, utc_now
from sendstatus_tui.core.store.store import Store

sys.path.insert(0, str(Path(__file__).parent))
from bench_scale import fresh_database, new_mailing  # noqa: E402  (sibling)

ENGINE = "count-round-trips"
CLAIMANT = f"{ENGINE}#1"


def count(url: str, batches: int, batch: int, workdir: Path) -> Counter[str]:
    mailing_id = new_mailing(url, workdir, batches * batch + batch)
    store = Store(url)
    now = utc_now()
    with store.write() as session:
        session.add(
            EngineHeartbeat(
                id=ENGINE,
                host="here",
                pid=1,
                role="leader",
                started_at=now,
                heartbeat_at=now,
                claimant=CLAIMANT,
            )
        )
        lifecycle.send_now(session, mailing_id)
    seen: Counter[str] = Counter()
    counting = [False]
    _count_driver_calls(store, seen, counting)
    counting[0] = True
    for _ in range(batches):
        with store.write() as session:
            heartbeats.check_claimant(session, ENGINE, CLAIMANT)
            deliveries.mailing(session, mailing_id)
            shared_rate.contracted(session)
            claimed = deliveries.claim(session, mailing_id, batch, claimant=CLAIMANT)
        assert claimed
        outcomes = [deliveries.Outcome(r, deliveries.SENT, reply="250 2.0.0 Ok") for r in claimed]
        with store.write() as session:
            recorded = deliveries.record(session, mailing_id, outcomes, claimant=CLAIMANT)
        assert recorded.written == len(claimed)
    counting[0] = False
    store.dispose()
    return seen


def _count_driver_calls(store: Store, seen: Counter[str], counting: list[bool]) -> None:
    """Counts what goes to the server: on PostgreSQL, psycopg's statements (and its own
    BEGIN), outside a pipeline one each, and one per pipeline; on SQLite, SQLAlchemy's
    statements (the driver's own cursors are left out there: no server to go to)."""
    dialect = store.engine.dialect
    ping = dialect.do_ping

    def counted_ping(connection: Any) -> bool:
        if counting[0]:
            seen["pings"] += 1
        return ping(connection)

    dialect.do_ping = counted_ping  # type: ignore[method-assign]

    @sa.event.listens_for(store.engine, "commit")
    def _commit(*_args: Any) -> None:
        if counting[0]:
            seen["commits"] += 1

    if dialect.name != "postgresql":

        @sa.event.listens_for(store.engine, "before_cursor_execute")
        def _statement(*_args: Any) -> None:
            if counting[0]:
                seen["statements"] += 1

        return
    import psycopg

    def counted(method: Any, kind: str) -> Any:
        def call(cursor: Any, *args: Any, **kwargs: Any) -> Any:
            connection = cursor.connection
            if counting[0] and connection._pipeline is None:
                idle = connection.pgconn.transaction_status == psycopg.pq.TransactionStatus.IDLE
                if idle and not connection.autocommit:
                    seen["begins"] += 1
                seen[kind] += 1
            return method(cursor, *args, **kwargs)

        return call

    psycopg.Cursor.execute = counted(psycopg.Cursor.execute, "statements")  # type: ignore[method-assign]
    psycopg.Cursor.executemany = counted(psycopg.Cursor.executemany, "statements")  # type: ignore[method-assign]
    enter = psycopg.Connection.pipeline

    def pipeline(connection: Any) -> Any:
        if counting[0] and connection._pipeline is None:
            seen["pipelines"] += 1
            # psycopg syncs after a BEGIN it sends in a pipeline: a round trip of its own
            idle = connection.pgconn.transaction_status == psycopg.pq.TransactionStatus.IDLE
            if idle and not connection.autocommit:
                seen["begins"] += 1
        return enter(connection)

    psycopg.Connection.pipeline = pipeline  # type: ignore[method-assign]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument(
        "--postgres", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        for kind in args.databases.split(","):
            with fresh_database(kind, Path(folder), args.postgres, "round_trips") as url:
                seen = count(url, args.batches, args.batch, Path(folder))
            total = sum(seen.values())
            parts = ", ".join(f"{k} {v / args.batches:.1f}" for k, v in sorted(seen.items()))
            print(f"{kind}: {total / args.batches:.1f} round trips per batch ({parts})")


if __name__ == "__main__":
    main()
