"""Scale-out: one mailing sent by 1, 2 and 4 engine processes, beside the bare loop in 1 and 2.

    python benchmarks/bench_scale.py [--recipients 100000] [--engines 1,2,4] [--bare 1,2]
                                     [--databases sqlite,postgresql] [--postgres URL]
                                     [--connections 4] [--claim-seconds 10]
                                     [--claim-batches 100,400] [--smtp-sink PATH]
                                     [--rate MSGS_PER_SECOND]

Everything goes to one Postfix ``smtp-sink`` on loopback (smtp_sink.py), whose counter of
accepted messages is the clock: a rate is the messages of a run over the time from its
first accepted message to its last.

- engines(K), per database: a fresh database (an SQLite file; on PostgreSQL a database
  created for the run on the server of ``--postgres`` and dropped after it) with one mailing
  of N personalised recipients (bench_dispatch.py's), K ``sendstatus engine`` processes on
  it (relay ``?starttls=off&pool=C&adapt=off``, no rate limit), and, once all K have told
  their heartbeat, the mailing is sent now (``lifecycle.send_now``, what ``sendstatus
  send-now`` does). Also shown: what each engine sent (their heartbeat rows) and, on
  PostgreSQL, the database's committed transactions a second during the run.
- bare(P): the same N messages rendered beforehand, split among P processes, each sending
  its share with C aiosmtplib connections in a MAIL / RCPT / DATA loop (bench_dispatch.py's
  first baseline). Timed from the start signal to the last message accepted.

With ``--rate R``, the engines' database stores the contracted rate R/s (``sendstatus
config set rate``) that all K engines share: each engines(K) run then shows its rate
against R (the aim: within 5 %, and never above).

Ratios: engines(K) / engine(1) against bare(2) / bare(1) (the engines scale as well as the
bare loop does when the first is at least 0.9 × the second), and engine(1) / bare(1).

Claim and record, on PostgreSQL: 4 processes, standing for 4 engines, each claim a batch
(``deliveries.claim``) and record it sent (``deliveries.record``) in a loop for
``--claim-seconds``, with no SMTP: the pairs of transactions a second the database
sustains. From that and an engine's measured rate, the engine machines one PostgreSQL can
feed at each batch size (the projection in docs/benchmarks.md). The database server shares this
machine's processors with the 4 processes: a floor, not a ceiling. So the processor time
of the backends serving those 4 (their process titles name the benchmark's database) is
also read, when the server runs on this machine: what a pair costs PostgreSQL itself, and
so what each core of a database machine of its own could sustain.
"""

import argparse
import asyncio
import multiprocessing
import os
import queue
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa

from sendstatus_tui.core.coordination import deliveries
from sendstatus_tui.core.importing.drafts import create_mailing
from sendstatus_tui.core.model import lifecycle, settings
from sendstatus_tui.core.model.models import EngineHeartbeat, Mailing
from sendstatus_tui.core.store.store import Store, StoreError
from sendstatus_tui.engine.settings import EngineSettings

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_dispatch import DRAFT, aiosmtplib_loop, prerendered, write_csv  # noqa: E402  (sibling)
from smtp_sink import SmtpSink, find_smtp_sink  # noqa: E402

DEFAULT_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


# --- databases ----------------------------------------------------------------------------


@contextmanager
def fresh_database(kind: str, workdir: Path, postgres: str, name: str) -> Iterator[str]:
    """The URL of an empty database of ``kind``, removed afterwards."""
    if kind == "sqlite":
        path = workdir / f"{name}.db"
        try:
            yield f"sqlite:///{path}"
        finally:
            for leftover in workdir.glob(f"{name}.db*"):
                leftover.unlink()
        return
    server = sa.make_url(postgres)
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    database = f"sendstatus_bench_scale_{name}_{uuid.uuid4().hex[:6]}"
    try:
        with admin.connect() as connection:
            connection.execute(sa.text(f'CREATE DATABASE "{database}"'))
    except sa.exc.SQLAlchemyError as exc:
        admin.dispose()
        raise SystemExit(
            f"cannot create a database on {server.render_as_string()}: {exc.__class__.__name__}"
            f" ({str(exc).splitlines()[0]}); --postgres URL names another server,"
            " --databases sqlite leaves PostgreSQL out"
        ) from None
    try:
        yield server.set(database=database).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
        admin.dispose()


def new_mailing(url: str, workdir: Path, count: int) -> int:
    """One parked mailing of ``count`` recipients (bench_dispatch's) in the database."""
    csv_path = workdir / "recipients.csv"
    write_csv(csv_path, count)
    store = Store(url)
    try:
        with store.write() as session:
            mailing, report = create_mailing(session, DRAFT, csv_path)
            mailing_id = mailing.id
    finally:
        store.dispose()
        csv_path.unlink()
    if report.imported != count:
        raise SystemExit(f"imported {report.imported} recipients, expected {count}")
    return mailing_id


def committed_transactions(store: Store) -> int | None:
    """PostgreSQL's count of transactions committed in this database (None on SQLite)."""
    if store.engine.dialect.name != "postgresql":
        return None
    with store.engine.connect() as connection:
        connection.execute(sa.text("SELECT pg_stat_clear_snapshot()"))
        return connection.execute(
            sa.text("SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()")
        ).scalar_one()


# --- where the processors went -------------------------------------------------------------


def machine_busy() -> tuple[float, float]:
    """(busy, all) processor seconds of the whole machine so far (/proc/stat)."""
    with open("/proc/stat") as stream:
        ticks = [int(value) for value in stream.readline().split()[1:]]
    idle = ticks[3] + ticks[4]  # idle and iowait
    clock = os.sysconf("SC_CLK_TCK")
    return (sum(ticks) - idle) / clock, sum(ticks) / clock


def process_cpu(pid: int) -> float:
    """Processor seconds of one process so far (user and system)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(") ")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def processors(sink: SmtpSink, notes: list[str]) -> Iterator[None]:
    """Notes how busy the machine's processors were while the block ran, and the share of
    one that the sink took: a sink near a whole processor is the limit, not the senders."""
    busy, total = machine_busy()
    sink_cpu = process_cpu(sink.process.pid)
    started = time.monotonic()
    yield
    seconds = time.monotonic() - started
    busy_after, total_after = machine_busy()
    notes.append(
        f"processors {100 * (busy_after - busy) / (total_after - total):.0f} % busy,"
        f" the sink {100 * (process_cpu(sink.process.pid) - sink_cpu) / seconds:.0f} % of one"
    )


# --- the sink as a clock ------------------------------------------------------------------


def wait_for_accepted(sink: SmtpSink, target: int, timeout: float, what: str) -> float:
    """The time.monotonic() at which the sink's counter reached ``target`` (polled)."""
    deadline = time.monotonic() + timeout
    while (accepted := sink.accepted()) < target:
        if time.monotonic() > deadline:
            raise SystemExit(f"{what}: the sink accepted {accepted:,}, waiting for {target:,}")
        time.sleep(0.01)
    return time.monotonic()


@dataclass
class Result:
    name: str
    messages: int
    seconds: float
    notes: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.messages / self.seconds


# --- engines ------------------------------------------------------------------------------


def start_engines(url: str, relay: str, count: int, workdir: Path) -> list[subprocess.Popen]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SENDSTATUS_")}
    env["SENDSTATUS_CREDENTIALS"] = str(workdir / "no-credentials.toml")
    command = [
        sys.executable,
        "-m",
        "sendstatus_tui.cli.main",
        "engine",
        "--db",
        url,
        "--smtp",
        relay,
    ]
    children = []
    for number in range(count):
        log = open(workdir / f"engine-{number}.log", "wb")  # noqa: SIM115  (the child's)
        children.append(subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT))
        log.close()
    return children


def stop_engines(children: list[subprocess.Popen]) -> None:
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    for child in children:
        try:
            child.wait(30)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def heartbeats(store: Store) -> list[EngineHeartbeat]:
    with store.read() as session:
        return list(session.exec(sa.select(EngineHeartbeat)).scalars())


def engines_run(kind: str, engines: int, args, sink: SmtpSink, workdir: Path) -> Result:
    name = f"engines({engines}) {kind}"
    relay = f"{sink.url}?starttls=off&pool={args.connections}&adapt=off"
    count = args.recipients
    notes: list[str] = []
    with fresh_database(kind, workdir, args.postgres, f"engines{engines}") as url:
        mailing_id = new_mailing(url, workdir, count)
        store = Store(url)
        if args.rate:
            with store.write() as session:
                settings.write(session, "rate", f"{args.rate}/s")
        children = start_engines(url, relay, engines, workdir)
        try:
            deadline = time.monotonic() + 60
            while len(heartbeats(store)) < engines:
                dead = [c for c in children if c.poll() is not None]
                if dead or time.monotonic() > deadline:
                    logs = (workdir / "engine-0.log").read_text(errors="replace")
                    raise SystemExit(f"the engines did not start:\n{logs}")
                time.sleep(0.05)
            accepted_before = sink.accepted()
            with store.write() as session:
                lifecycle.send_now(session, mailing_id)
            first = wait_for_accepted(sink, accepted_before + 1, 60, f"{name}: first message")
            commits_first = committed_transactions(store)
            with processors(sink, notes):
                last = wait_for_accepted(sink, accepted_before + count, count / 50, name)
            commits_last = committed_transactions(store)
            while (mailing := mailing_row(store, mailing_id)).state != "completed":
                if time.monotonic() - last > 60:
                    raise SystemExit(f"{name}: not completed ({mailing.sent:,} counted sent)")
                time.sleep(0.05)
            time.sleep(1.5)  # a heartbeat (every lease renewal) to tell each engine's count
            sent_by = sorted((beat.sent for beat in heartbeats(store)), reverse=True)
        finally:
            stop_engines(children)
            store.dispose()
    if mailing.sent != count:
        raise SystemExit(f"{name}: {mailing.sent:,} counted sent of {count:,}")
    result = Result(name, count - 1, last - first, notes)  # the first message starts the clock
    result.notes.append("sent by each engine: " + ", ".join(f"{n:,}" for n in sent_by))
    if args.rate:
        result.notes.append(f"{result.rate / args.rate:.3f} × the stored rate {args.rate:,}/s")
    if commits_first is not None and commits_last is not None:
        result.notes.append(
            f"PostgreSQL: {(commits_last - commits_first) / (last - first):,.0f}"
            " transactions committed a second"
        )
    return result


def mailing_row(store: Store, mailing_id: int) -> Mailing:
    with store.read() as session:
        mailing = session.get(Mailing, mailing_id)
    assert mailing is not None
    return mailing


# --- bare loop in processes ---------------------------------------------------------------


def _bare_process(port, first, last, connections, ready, start) -> None:
    """Renders recipients first..last, says it is ready, and sends them once told to."""
    sender, messages = prerendered(last, first)

    async def send_all() -> None:
        pending = iter(messages)

        await asyncio.gather(*(aiosmtplib_loop(port, sender, pending) for _ in range(connections)))

    ready.put(len(messages))
    start.wait()
    asyncio.run(send_all())


def bare_run(processes: int, args, sink: SmtpSink) -> Result:
    context = multiprocessing.get_context("spawn")
    ready, start = context.Queue(), context.Event()
    count = args.recipients
    bounds = [count * k // processes for k in range(processes + 1)]
    children = [
        context.Process(
            target=_bare_process,
            args=(sink.port, bounds[k] + 1, bounds[k + 1], args.connections, ready, start),
        )
        for k in range(processes)
    ]
    for child in children:
        child.start()
    try:
        if sum(ready.get(timeout=600) for _ in children) != count:
            raise SystemExit("bare: the processes did not render every message")
        accepted_before = sink.accepted()
        notes: list[str] = []
        with processors(sink, notes):
            started = time.monotonic()
            start.set()
            last = wait_for_accepted(
                sink, accepted_before + count, count / 50, f"bare({processes})"
            )
        for child in children:
            child.join(30)
    finally:
        for child in children:
            if child.is_alive():
                child.kill()
                child.join()
    if any(child.exitcode for child in children):
        raise SystemExit(f"bare({processes}): a process failed")
    return Result(f"bare({processes})", count, last - started, notes)


# --- claim and record on PostgreSQL -------------------------------------------------------


def backends_cpu_seconds(database: str) -> float | None:
    """Processor time of the PostgreSQL backends serving ``database`` on this machine (their
    process title names it; other work on the same server is left out); None when this
    machine shows no PostgreSQL process."""
    seconds, found = 0.0, False
    for process in Path("/proc").glob("[0-9]*"):
        try:
            title = (process / "cmdline").read_bytes()
            if not title.startswith(b"postgres"):
                continue
            found = True
            if f" {database} ".encode() in title:
                seconds += process_cpu(int(process.name))
        except (OSError, ValueError):
            continue  # gone meanwhile
    return seconds if found else None


def _claiming_process(url, mailing_id, batch, seconds, ready, start, done, release) -> None:
    """Claims a batch and records it sent, again and again for ``seconds``; puts on
    ``done`` how many pairs it did, the outcomes they wrote, and the transactions the
    database refused (a deadlock, say: counted, and the loop goes on)."""
    store = Store(url, migrate=False)
    claimant = f"bench-scale:{os.getpid()}#1"
    ready.put(True)
    start.wait()
    ends, pairs, written, refused = time.monotonic() + seconds, 0, 0, 0
    while time.monotonic() < ends:
        try:
            with store.write() as session:
                claimed = deliveries.claim(session, mailing_id, batch, claimant=claimant)
            if not claimed:
                break
            outcomes = [
                deliveries.Outcome(r, deliveries.SENT, reply="250 2.0.0 Ok") for r in claimed
            ]
            with store.write() as session:
                recorded = deliveries.record(session, mailing_id, outcomes, claimant=claimant)
        except StoreError:
            refused += 1
            continue
        written += recorded.written
        pairs += 1
    done.put((pairs, written, refused))
    release.wait()  # its backend's processor time is read before the connection goes
    store.dispose()


@dataclass
class Claims:
    per_second: float  # claim-and-record pairs
    pairs: int
    written: int  # outcomes (short of batch × pairs when claims collided)
    refused: int  # transactions the database refused
    server_cpu: float | None  # PostgreSQL's processor seconds a pair


def claims_run(batch: int, args, workdir: Path, processes: int = 4) -> Claims:
    """Claim-and-record pairs a second that PostgreSQL sustains with ``processes`` at it."""
    # a mailing of --recipients: the processes stop when it runs out, if it does before
    # --claim-seconds (the rate is then over the time it lasted)
    count = args.recipients
    with fresh_database("postgresql", workdir, args.postgres, f"claims{batch}") as url:
        mailing_id = new_mailing(url, workdir, count)
        context = multiprocessing.get_context("spawn")
        ready, start, done = context.Queue(), context.Event(), context.Queue()
        release = context.Event()
        database = sa.make_url(url).database or ""
        children = [
            context.Process(
                target=_claiming_process,
                args=(url, mailing_id, batch, args.claim_seconds, ready, start, done, release),
            )
            for _ in range(processes)
        ]
        for child in children:
            child.start()
        try:
            for _ in children:
                ready.get(timeout=60)
            cpu_before = backends_cpu_seconds(database)
            started = time.monotonic()
            start.set()
            counts = []
            while len(counts) < len(children):
                try:
                    counts.append(done.get(timeout=1))
                except queue.Empty:
                    if any(c.exitcode for c in children):
                        raise SystemExit(f"claims, batch {batch}: a process failed") from None
            seconds = time.monotonic() - started
            cpu_after = backends_cpu_seconds(database)
        finally:
            release.set()
            for child in children:
                child.join(10)
                if child.is_alive():
                    child.kill()
                    child.join()
    if any(child.exitcode for child in children):
        raise SystemExit(f"claims, batch {batch}: a process failed (its error is above)")
    pairs, written, refused = (sum(column) for column in zip(*counts, strict=True))
    server_cpu = None
    if cpu_before is not None and cpu_after is not None and pairs:
        server_cpu = (cpu_after - cpu_before) / pairs
    return Claims(pairs / seconds, pairs, written, refused, server_cpu)


# --- main ---------------------------------------------------------------------------------


def _numbers(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipients", type=int, default=100_000)
    parser.add_argument("--engines", type=_numbers, default=[1, 2, 4], metavar="K,K,...")
    parser.add_argument("--bare", type=_numbers, default=[1, 2], metavar="P,P,...")
    parser.add_argument(
        "--databases",
        type=lambda text: text.split(","),
        default=["sqlite", "postgresql"],
        metavar="sqlite,postgresql",
    )
    parser.add_argument(
        "--postgres",
        default=DEFAULT_POSTGRES,
        metavar="URL",
        help="a PostgreSQL server where the benchmark may create and drop databases"
        f" (default {DEFAULT_POSTGRES})",
    )
    parser.add_argument("--connections", type=int, default=4, help="per engine or process")
    parser.add_argument("--claim-seconds", type=float, default=10.0)
    parser.add_argument("--claim-batches", type=_numbers, default=[100, 400], metavar="B,B,...")
    parser.add_argument("--smtp-sink", metavar="PATH", help="an smtp-sink binary to use")
    parser.add_argument(
        "--rate",
        type=float,
        metavar="MSGS_PER_SECOND",
        help="the contracted rate stored for the engines' database, shared by them all",
    )
    args = parser.parse_args()
    unknown = set(args.databases) - {"sqlite", "postgresql"}
    if unknown:
        parser.error(f"unknown database kinds: {', '.join(sorted(unknown))}")
    if not args.bare or not args.engines:
        parser.error("--bare and --engines need one number at least")

    binary, env = find_smtp_sink(args.smtp_sink)
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as temporary:
        workdir = Path(temporary)
        sink = SmtpSink(binary, env, workdir)
        print(
            f"smtp-sink on 127.0.0.1:{sink.port}; {os.cpu_count()} processors;"
            f" {args.recipients:,} recipients a run, {args.connections} connections per"
            f" engine or bare process; engine batch size {EngineSettings.batch_size}"
        )
        try:
            report(args, sink, workdir)
        finally:
            sink.stop()


def report(args, sink: SmtpSink, workdir: Path) -> None:
    results: dict[str, Result] = {}

    def show(result: Result) -> None:
        results[result.name] = result
        print(f"  {result.name:<22} {result.rate:7,.0f} msg/s  ({result.seconds:6.2f} s)", end="")
        print("".join(f"; {note}" for note in result.notes), flush=True)

    # interleaved, so that a machine busy for a while does not favour one side
    for processes in args.bare[:1]:
        show(bare_run(processes, args, sink))
    for kind in args.databases:
        for engines in args.engines:
            show(engines_run(kind, engines, args, sink, workdir))
        for processes in args.bare[1:] if kind == args.databases[0] else []:
            show(bare_run(processes, args, sink))
    for processes in args.bare[:1]:  # again at the end: how much the machine drifted
        again = bare_run(processes, args, sink)
        again.name += " again"
        show(again)

    bare = {p: results[f"bare({p})"].rate for p in args.bare}
    bare[args.bare[0]] = statistics.mean([bare[args.bare[0]], again.rate])
    print("ratios:")
    if 1 in bare and 2 in bare:
        bare_scaling = bare[2] / bare[1]
        print(f"  bare(2) / bare(1): {bare_scaling:.2f}")
    else:
        bare_scaling = None
    for kind in args.databases:
        one = results.get(f"engines(1) {kind}")
        if one is None:
            continue
        if 1 in bare:
            print(f"  engine(1) / bare(1), {kind}: {one.rate / bare[1]:.2f}")
        for engines in args.engines:
            if engines == 1:
                continue
            many = results[f"engines({engines}) {kind}"]
            line = f"  engines({engines}) / engine(1), {kind}: {many.rate / one.rate:.2f}"
            if engines == 2 and bare_scaling:
                ratio = (many.rate / one.rate) / bare_scaling
                line += f"; against bare(2) / bare(1): {ratio:.2f} (aim: 0.9 or better)"
            print(line)

    if "postgresql" in args.databases and args.claim_batches:
        claims(args, workdir, results)


def claims(args, workdir: Path, results: dict[str, Result]) -> None:
    print(f"claim and record on PostgreSQL, 4 processes, {args.claim_seconds:.0f} s each:")
    # an engine machine like this one: the best the engines did on it on PostgreSQL
    on_postgres = [r for name, r in results.items() if name.endswith(" postgresql")]
    machine = max(on_postgres, key=lambda r: r.rate, default=None)
    for batch in args.claim_batches:
        found = claims_run(batch, args, workdir)
        line = f"  batch {batch}: {found.per_second:,.0f} claim-and-record pairs a second"
        line += f" ({found.per_second * batch:,.0f} recipients a second"
        if found.written != found.pairs * batch:
            line += f"; {found.pairs * batch - found.written:,} outcomes dropped: claims collided"
        if found.refused:
            line += f"; {found.refused:,} transactions refused (deadlocks)"
        line += ")"
        if found.server_cpu is not None:
            line += (
                f"; PostgreSQL's processor time: {found.server_cpu * 1000:.2f} ms a pair,"
                f" so {1 / found.server_cpu:,.0f} pairs a second per core of its own"
            )
        print(line, flush=True)
        if machine is not None:
            needed = machine.rate / batch
            print(
                f"    a machine like this one sending {machine.rate:,.0f} msg/s"
                f" ({machine.name}) needs {needed:.1f} pairs a second: as measured here"
                f" (PostgreSQL sharing these {os.cpu_count()} processors) one PostgreSQL"
                f" feeds {found.per_second / needed:.1f} such machines",
                end="",
            )
            if found.server_cpu is not None:
                print(
                    "; by its processor time, each core of a PostgreSQL machine of its own"
                    f" feeds {1 / found.server_cpu / needed:.1f}",
                    end="",
                )
            print(flush=True)


if __name__ == "__main__":
    main()
