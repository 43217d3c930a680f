"""Routes: the speed after one relay dies, against the surviving relay alone; and the
speed of the fast domains beside a throttled one, against the fast domains alone.

    python benchmarks/bench_routes.py [--round-trip 20] [--warm-seconds 8]
                                      [--settle-seconds 12] [--seconds 5] [--smtp-sink PATH]
                                      [--part failover|domains|both] [--profile FILE]

Two Postfix ``smtp-sink`` servers on loopback, each behind a delaying TCP proxy (the round
trip, default 20 ms; tests/latency_proxy.py in a process of its own). Side by side in one
run, each with a fresh SQLite file and one mailing (the messages of bench_dispatch.py), an
engine that sends through the relays stored in the database (no --smtp):

- alone: the surviving relay is the only relay stored; measured after ``--warm-seconds``,
  once before the failover run and once after (the baseline is their mean: the machine's
  drift between runs is halved);
- failover: both relays stored, weight 1 each; after ``--warm-seconds`` the first relay's
  proxy is killed (its connections drop, new ones are refused), and the engine is measured
  ``--settle-seconds`` later, from the survivor's counter.

Printed: msg/s alone, with both relays before the kill, after the failover, and after the
failover / alone (the aim: 0.9 or better).

The domains part, through the survivor alone, side by side in one run as well:

- fast domains alone: the bench's recipients without gmail.com (five domains of six), no
  domain limits; measured after ``--warm-seconds``, before and after (their mean);
- beside a throttled domain: every recipient, with ``domain_limits`` gmail.com=20/s, and
  gmail.com throttled as a 421 4.7.28 reply does (coordination/domain_rate.py: its rate
  halved, to 10/s); the fast domains' msg/s is the sink's less gmail.com's (counted in the
  database over the same seconds).

Printed: both, and beside / alone (the aim: 0.9 or better).

``--profile FILE`` runs the domains part's two engines once each (fast domains alone, then
beside the throttled one) under cProfile instead, on the engine's thread and on its database
threads (a profiler sees its own thread only): prints each one's heaviest functions and
saves the statistics to FILE.alone and FILE.beside; and counts, over the whole beside run,
the claims, holds and records of the throttled domain's recipients.
"""

import argparse
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_dispatch import DRAFT, new_mailing, recipient_rows  # noqa: E402
from bench_latency import Proxy  # noqa: E402
from engine_profile import EngineProfile  # noqa: E402
from smtp_sink import SinkUnavailable, SmtpSink, find_smtp_sink  # noqa: E402

from sendstatus_tui.core.coordination import deliveries, domain_rate, held_back
from sendstatus_tui.core.importing.drafts import create_mailing
from sendstatus_tui.core.model import lifecycle, relays, settings
from sendstatus_tui.core.model.relays import RelayChange
from sendstatus_tui.core.store.store import Store
from sendstatus_tui.engine.engine import Engine
from sendstatus_tui.engine.settings import EngineSettings
from sendstatus_tui.engine.thread import EngineThread


def rate_over(sinks: list[SmtpSink], seconds: float) -> float:
    """Messages a second the sinks accepted together over ``seconds``."""
    before, began = sum(s.accepted() for s in sinks), time.monotonic()
    time.sleep(seconds)
    return (sum(s.accepted() for s in sinks) - before) / (time.monotonic() - began)


def sending(directory: Path, stored: dict[str, int], count: int) -> tuple[EngineThread, Store]:
    """An engine sending one mailing of ``count`` through ``stored`` (name: proxy port)."""
    store, _, mailing_id = new_mailing(directory, count)
    with store.write() as session:
        for name, port in stored.items():
            relays.add(session, name, RelayChange(url=f"smtp://127.0.0.1:{port}?starttls=off"))
        lifecycle.send_now(session, mailing_id)
    return EngineThread(Engine(store, None, EngineSettings(batch_size=500))).start(), store


def until_sending(sinks: list[SmtpSink], thread: EngineThread) -> None:
    deadline = time.monotonic() + 30
    while sum(s.accepted() for s in sinks) == 0:  # starting up: the lease, the relay check
        if time.monotonic() > deadline or not thread.alive:
            raise SystemExit(f"nothing sent in 30 s ({thread.error!r})")
        time.sleep(0.05)


def alone(directory: Path, sink: SmtpSink, port: int, args: argparse.Namespace) -> float:
    """msg/s of an engine whose only stored relay is the survivor, once warm."""
    thread, store = sending(directory, {"survivor": port}, args.count)
    try:
        until_sending([sink], thread)
        time.sleep(args.warm_seconds)
        return rate_over([sink], args.seconds)
    finally:
        thread.stop(60)
        store.dispose()


THROTTLED = "gmail.com"


def domains_mailing(directory: Path, count: int, with_throttled: bool) -> tuple[Store, int]:
    """A fresh SQLite file with a mailing of the bench's recipients (without gmail.com's
    unless ``with_throttled``), sending through ``--smtp``-less stored relays later."""
    directory.mkdir(parents=True)
    csv_path = directory / "recipients.csv"
    with open(csv_path, "w", encoding="utf-8") as stream:
        stream.write("email,first_name,city\n")
        for row in recipient_rows(count):
            if with_throttled or not row[0].endswith(f"@{THROTTLED}"):
                stream.write(",".join(row) + "\n")
    store = Store(f"sqlite:///{directory / 'sendstatus.db'}")
    with store.write() as session:
        mailing, _ = create_mailing(session, DRAFT, csv_path)
        mailing_id = mailing.id
    csv_path.unlink()
    return store, mailing_id


class Profiling(EngineProfile):
    """The engine profiled, and the claims and outcomes of the throttled domain's recipients
    counted."""

    def __init__(self) -> None:
        super().__init__()
        self.claims: Counter[int] = Counter()  # throttled recipient id -> times claimed
        self.outcomes: Counter[str] = Counter()  # the throttled domain's, by status
        self.other_outcomes: Counter[str] = Counter()
        self.claim_calls = self.record_calls = 0

    def install(self) -> Callable[[], None]:
        """Also patches the engine's claims and records; returns the undoing."""
        undo_profile = super().install()
        claim, claim_sendable, record = deliveries.claim, held_back.claim, deliveries.record
        profiling = self

        def count_claimed(batch: list[deliveries.Claimed]) -> None:
            for claimed in batch:
                if claimed.email.endswith(f"@{THROTTLED}"):
                    profiling.claims[claimed.id] += 1

        def counted_claim(*args: Any, **kwargs: Any) -> list[deliveries.Claimed]:
            batch = claim(*args, **kwargs)
            profiling.claim_calls += 1
            count_claimed(batch)
            return batch

        def counted_claim_sendable(*args: Any, **kwargs: Any) -> held_back.Sendable:
            sendable = claim_sendable(*args, **kwargs)
            profiling.claim_calls += 1
            count_claimed([*sendable.going, *(o.recipient for o in sendable.held)])
            # held back by the claim: the throttled domain's (the others are never held)
            profiling.outcomes["held at claim"] += len(sendable.held)
            return sendable

        def counted_record(session: Any, mailing_id: int, outcomes: Any, **kwargs: Any) -> Any:
            profiling.record_calls += 1
            for o in outcomes:
                mine = o.recipient.email.endswith(f"@{THROTTLED}")
                (profiling.outcomes if mine else profiling.other_outcomes)[o.status] += 1
            return record(session, mailing_id, outcomes, **kwargs)

        deliveries.claim, deliveries.record = counted_claim, counted_record
        held_back.claim = counted_claim_sendable

        def undo() -> None:
            deliveries.claim, deliveries.record = claim, record
            held_back.claim = claim_sendable
            undo_profile()

        return undo

    def report(self, path: str, heaviest: int = 25, cumulative: int = 40) -> None:
        super().report(path, heaviest, cumulative)
        print(f"claims: {self.claim_calls:,}; records: {self.record_calls:,}")
        print(f"  other domains' outcomes: {dict(self.other_outcomes)}")
        if self.claims:
            times = Counter(self.claims.values())
            print(
                f"  {THROTTLED}: {len(self.claims):,} recipients claimed,"
                f" {sum(self.claims.values()):,} claims; outcomes {dict(self.outcomes)};"
                f" claimed n times: {dict(sorted(times.items()))}"
            )


def sent_to(store: Store, domain: str) -> int:
    with store.read() as session:
        return session.execute(
            sa.text("SELECT count(*) FROM recipient WHERE status = 'sent' AND email LIKE :pattern"),
            {"pattern": f"%@{domain}"},
        ).scalar_one()


def fast_domains_rate(
    directory: Path,
    sink: SmtpSink,
    port: int,
    args: argparse.Namespace,
    with_throttled: bool,
    profiling: Profiling | None = None,
) -> tuple[float, float]:
    """(msg/s of the fast domains, msg/s of the throttled one) once warm: alone, or beside
    gmail.com throttled from 20/s to 10/s."""
    store, mailing_id = domains_mailing(directory, args.count, with_throttled)
    with store.write() as session:
        relays.add(session, "survivor", RelayChange(url=f"smtp://127.0.0.1:{port}?starttls=off"))
        if with_throttled:
            settings.write(session, "domain_limits", f"{THROTTLED},googlemail.com=20/s")
            # as the engine notes a 421 4.7.28 for a gmail.com recipient
            domain_rate.throttle(session, THROTTLED, THROTTLED, "4.7.28", 20.0)
        lifecycle.send_now(session, mailing_id)
    engine = Engine(store, None, EngineSettings(batch_size=500))
    thread = (profiling.thread_class() if profiling else EngineThread)(engine).start()
    try:
        until_sending([sink], thread)
        time.sleep(args.warm_seconds)
        throttled_before, began = sent_to(store, THROTTLED), time.monotonic()
        total = rate_over([sink], args.seconds)
        throttled = (sent_to(store, THROTTLED) - throttled_before) / (time.monotonic() - began)
        return total - throttled, throttled
    finally:
        thread.stop(60)
        store.dispose()


def domains_part(work: Path, sink: SmtpSink, port: int, args: argparse.Namespace) -> None:
    alone_before, _ = fast_domains_rate(work / "fast-1", sink, port, args, False)
    print(f"  fast domains alone:            {alone_before:7,.0f} msg/s")
    beside, slow = fast_domains_rate(work / "beside", sink, port, args, True)
    print(
        f"  fast domains beside {THROTTLED}:  {beside:7,.0f} msg/s"
        f" ({THROTTLED} throttled to 10/s: {slow:.1f} msg/s)"
    )
    alone_after, _ = fast_domains_rate(work / "fast-2", sink, port, args, False)
    print(f"  fast domains alone:            {alone_after:7,.0f} msg/s (again, after)")
    baseline = (alone_before + alone_after) / 2  # the machine's drift, halved
    print(f"  beside a throttled / alone:    {beside / baseline:.2f} (aim: 0.9 or better)")


def profile_domains(work: Path, sink: SmtpSink, port: int, args: argparse.Namespace) -> None:
    for name, with_throttled in (("alone", False), ("beside", True)):
        profiling = Profiling()
        undo = profiling.install()
        try:
            fast, slow = fast_domains_rate(work / name, sink, port, args, with_throttled, profiling)
        finally:
            undo()
        print(f"fast domains {name}, under cProfile: {fast:,.0f} msg/s ({slow:.1f} {THROTTLED})")
        profiling.report(f"{args.profile}.{name}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--round-trip", type=float, default=20.0, help="milliseconds")
    parser.add_argument("--warm-seconds", type=float, default=8.0, help="before measuring")
    # the survivor's pool, sized for half the messages, grows to take them all meanwhile
    parser.add_argument("--settle-seconds", type=float, default=12.0, help="after the kill")
    parser.add_argument("--seconds", type=float, default=5.0, help="measured, per figure")
    parser.add_argument("--count", type=int, default=100_000, help="recipients per mailing")
    parser.add_argument("--smtp-sink", help="path to Postfix's smtp-sink")
    parser.add_argument("--part", choices=("failover", "domains", "both"), default="both")
    parser.add_argument("--profile", metavar="FILE", help="profile the domains part's engines")
    args = parser.parse_args()
    try:
        binary, env = find_smtp_sink(args.smtp_sink)
    except SinkUnavailable as exc:
        raise SystemExit(f"no smtp-sink: {exc}") from None
    with tempfile.TemporaryDirectory(prefix="bench-routes-") as temp:
        work = Path(temp)
        (work / "a").mkdir()
        (work / "b").mkdir()
        doomed_sink = SmtpSink(binary, env, work / "a")
        survivor_sink = SmtpSink(binary, env, work / "b")
        survivor = Proxy(survivor_sink.port, args.round_trip)
        print(f"two smtp-sinks, each behind a {args.round_trip:.0f} ms proxy")
        try:
            if args.profile:
                profile_domains(work, survivor_sink, survivor.port, args)
                return
            if args.part != "failover":
                print("limits per recipient domain, through one relay:")
                domains_part(work, survivor_sink, survivor.port, args)
            if args.part == "domains":
                return
            alone_before = alone(work / "alone-1", survivor_sink, survivor.port, args)
            print(f"  the surviving relay alone:     {alone_before:7,.0f} msg/s")

            doomed = Proxy(doomed_sink.port, args.round_trip)
            both = [doomed_sink, survivor_sink]
            stored = {"doomed": doomed.port, "survivor": survivor.port}
            thread, store = sending(work / "failover", stored, args.count)
            try:
                until_sending(both, thread)
                time.sleep(args.warm_seconds)
                before = rate_over(both, args.seconds)
                doomed.stop()  # its connections drop; new ones are refused
                killed_at = time.monotonic()
                time.sleep(args.settle_seconds)
                after = rate_over(both, args.seconds)
                moved = time.monotonic() - killed_at
            finally:
                thread.stop(60)
                store.dispose()
            print(f"  both relays, before the kill:  {before:7,.0f} msg/s")
            print(
                f"  after the failover:            {after:7,.0f} msg/s"
                f" (measured {args.settle_seconds:.0f} to {moved:.0f} s after the kill)"
            )
            alone_after = alone(work / "alone-2", survivor_sink, survivor.port, args)
            print(f"  the surviving relay alone:     {alone_after:7,.0f} msg/s (again, after)")
            baseline = (alone_before + alone_after) / 2  # the machine's drift, halved
            print(f"  after the failover / alone:    {after / baseline:.2f} (aim: 0.9 or better)")
        finally:
            survivor.stop()
            doomed_sink.stop()
            survivor_sink.stop()


if __name__ == "__main__":
    main()
