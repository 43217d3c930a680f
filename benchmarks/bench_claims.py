"""A claim's time when most of a mailing's recipients wait deferred for later (a throttled
domain's, say), against the same claim on a mailing of the same size with none deferred,
in the same database, the claims of the two interleaved: a ratio near 1 says a claim does
not read the deferred recipients it does not take.

Both claims are timed: the plain one (``deliveries.claim``) and the one that holds back
recipients for their domain's turn (``held_back.claim``, taking all here).

    python benchmarks/bench_claims.py [--recipients 300000] [--deferred 0.5] [--claims 30]
        [--batch 100] [--databases sqlite,postgresql] [--postgres URL]
"""

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import sqlalchemy as sa
from sqlmodel import Session

from sendstatus_tui.core.coordination import deliveries, held_back
from sendstatus_tui.core.model import lifecycle
from sendstatus_tui.core.model.models import Mailing, utc_now
from sendstatus_tui.core.store.store import Store

sys.path.insert(0, str(Path(__file__).parent))
from bench_scale import DEFAULT_POSTGRES, fresh_database, new_mailing  # noqa: E402  (sibling)

Claim = Callable[[Session, int, int, str], int]

CLAIMS: dict[str, Claim] = {
    "claim": lambda session, mailing_id, batch, claimant: len(
        deliveries.claim(session, mailing_id, batch, claimant=claimant)
    ),
    "claim holding back": lambda session, mailing_id, batch, claimant: len(
        held_back.claim(session, mailing_id, batch, lambda _: None, claimant=claimant).going
    ),
}


def sending(store: Store, mailing_id: int, deferred: int) -> None:
    """Sends the mailing, its first ``deferred`` recipients deferred for an hour."""
    with store.write() as session:
        if deferred:
            to_driver = deliveries.datetime_to_driver(session)
            session.execute(
                sa.text(
                    "UPDATE recipient SET status = 'deferred', next_attempt_at = :later"
                    " WHERE id IN (SELECT id FROM recipient WHERE mailing_id = :m"
                    " ORDER BY id LIMIT :n)"
                ),
                {
                    "later": to_driver(utc_now() + timedelta(hours=1)),
                    "m": mailing_id,
                    "n": deferred,
                },
            )
            session.get_one(Mailing, mailing_id).deferred = deferred
        lifecycle.send_now(session, mailing_id)
        lifecycle.mark_prepared(session, mailing_id)


def settled(store: Store) -> None:
    """On PostgreSQL, the recipients' old row versions vacuumed, as autovacuum would after
    a bulk update: else the claims walk their dead index entries, not what is measured."""
    if store.engine.dialect.name == "postgresql":
        with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
            c.execute(sa.text("VACUUM ANALYZE recipient"))


def timed_claims(store: Store, mailings: dict[str, int], claim: Claim, args) -> dict[str, float]:
    """The median seconds of a claim on each mailing, the mailings' claims interleaved."""
    seconds: dict[str, list[float]] = {name: [] for name in mailings}
    for round_ in range(args.claims):
        for name, mailing_id in mailings.items():
            started = time.perf_counter()
            with store.write() as session:
                claimed = claim(session, mailing_id, args.batch, f"bench#{round_}")
            seconds[name].append(time.perf_counter() - started)
            if claimed != args.batch:
                raise SystemExit(f"{name}: claimed {claimed}, not {args.batch}: more recipients?")
    return {name: statistics.median(values) for name, values in seconds.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipients", type=int, default=300_000, help="per mailing")
    parser.add_argument("--deferred", type=float, default=0.5, help="the share deferred")
    parser.add_argument("--claims", type=int, default=30, help="per mailing and kind")
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--postgres", default=DEFAULT_POSTGRES)
    args = parser.parse_args()
    deferred = int(args.recipients * args.deferred)
    print(f"{args.recipients:,} recipients a mailing, {deferred:,} of one deferred for later")
    with tempfile.TemporaryDirectory() as folder:
        for kind in args.databases.split(","):
            with fresh_database(kind, Path(folder), args.postgres, "claims") as url:
                store = Store(url)
                mailings = {
                    "none deferred": new_mailing(url, Path(folder), args.recipients),
                    "deferred": new_mailing(url, Path(folder), args.recipients),
                }
                sending(store, mailings["none deferred"], 0)
                sending(store, mailings["deferred"], deferred)
                settled(store)
                for claim_name, claim in CLAIMS.items():
                    median = timed_claims(store, mailings, claim, args)
                    print(
                        f"{kind}, {claim_name}: {median['deferred'] * 1000:.1f} ms with the"
                        f" deferred, {median['none deferred'] * 1000:.1f} ms without:"
                        f" ratio {median['deferred'] / median['none deferred']:.2f}"
                    )
                store.dispose()


if __name__ == "__main__":
    main()
