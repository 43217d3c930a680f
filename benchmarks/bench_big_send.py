"""A big list at send time: from ``send-now`` to the first message a relay accepts, and the
engine's memory while it sends, for lists of several sizes side by side.

    python benchmarks/bench_big_send.py [--sizes 1000000,10000000] [--seconds 5]
                                        [--repeats 3] [--smtp-sink PATH]

For each size, a fresh SQLite file holds one parked mailing of that many recipients: one
created with ``create_mailing`` from a one-row CSV (so that the mailing is the import's),
then the other recipients written by one SQL statement (in the form the import writes
them: address, mailbox key, field values; the import's own speed is bench_import.py's).
Then, with ``sendstatus engine`` running in its own process and sending to Postfix's
``smtp-sink`` on loopback (benchmarks/smtp_sink.py):

- send-now -> first message: the time from the commit of ``lifecycle.send_now`` (what
  ``sendstatus send-now ID`` does) to the first message the sink counts. Aim: under 1 s.
  ``--repeats`` times on the same list: stop (its recipients go back to pending), send now
  again.
- the engine's memory: its resident set once it is up and idle, and its peak (VmHWM) after
  sending for ``--seconds``. Aim: under 150 MB.

The first size is the baseline; the ratios of the others to it say what the list's size
costs. The machine may be shared: compare sizes within one run.
"""

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from smtp_sink import SmtpSink, find_smtp_sink  # noqa: E402
from sqlmodel import select  # noqa: E402

from sendstatus_tui.core.importing.drafts import MailingDraft, create_mailing
from sendstatus_tui.core.model import lifecycle
from sendstatus_tui.core.model.models import EngineHeartbeat
from sendstatus_tui.core.model.states import State
from sendstatus_tui.core.store.store import Store

DRAFT = MailingDraft(
    name="Big list",
    subject="Hello {first_name}",
    sender="Shop <news@shop.example.org>",
    text_body="Hello {first_name},\n\nour news of the week.\n",
    unsubscribe_url="https://shop.example.org/unsubscribe?u={email}",
)
FIRST_MESSAGE_AIM_S, ENGINE_RSS_AIM_MB = 1.0, 150
_WAIT = 120.0  # seconds, for things that should take far less


def build(directory: Path, size: int) -> tuple[Store, int]:
    """A fresh SQLite file with one parked mailing of ``size`` recipients."""
    directory.mkdir(parents=True)
    csv = directory / "one.csv"
    csv.write_text("email,first_name\nperson0@example.com,Person 0\n", encoding="utf-8")
    store = Store(f"sqlite:///{directory / 'sendstatus.db'}")
    with store.write() as session:
        mailing, _ = create_mailing(session, DRAFT, csv)
        mailing_id = mailing.id
        assert mailing_id is not None
        # the others, in one statement: a recursive counter, the rows the import would write
        session.connection().exec_driver_sql(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)"
            " INSERT INTO recipient (mailing_id, email, mailbox, field_values, status, attempts)"
            " SELECT ?, 'person' || i || '@example.com', 'person' || i || '@example.com',"
            " '[\"Person ' || i || '\"]', 'pending', 0 FROM n",
            (size - 1, mailing_id),
        )
        mailing.total = size
        session.add(mailing)
    with store.engine.connect() as connection:
        connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    return store, mailing_id


def process_memory_mb(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM (the peak) of a process, in MB."""
    figures = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            figures[name] = int(value.split()[0]) / 1024
    return figures


def start_engine(directory: Path, store: Store, sink: SmtpSink) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SENDSTATUS_")}
    env["SENDSTATUS_CREDENTIALS"] = str(directory / "no-credentials.toml")
    command = [sys.executable, "-m", "sendstatus_tui.cli.main", "engine", "--db", store.url]
    command += ["--smtp", f"{sink.url}?starttls=off"]
    log = open(directory / "engine.log", "wb")  # noqa: SIM115  the child holds it
    engine = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + _WAIT
    while True:  # up: it wrote its heartbeat, and leads
        with store.read() as session:
            if session.exec(select(EngineHeartbeat).where(EngineHeartbeat.pid == engine.pid)).all():
                return engine
        if engine.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"the engine did not start:\n{(directory / 'engine.log').read_text()}")
        time.sleep(0.05)


def first_message_after_send_now(store: Store, mailing_id: int, sink: SmtpSink) -> float:
    accepted = sink.accepted()
    with store.write() as session:
        lifecycle.send_now(session, mailing_id)
    committed = time.perf_counter()
    deadline = time.monotonic() + _WAIT
    while sink.accepted() <= accepted:
        if time.monotonic() > deadline:
            raise SystemExit("no message reached the sink")
        time.sleep(0.001)
    return time.perf_counter() - committed


def measure(directory: Path, size: int, args, binary, sink_env) -> dict:
    began = time.perf_counter()
    store, mailing_id = build(directory, size)
    print(f"  {size:,} recipients built in {time.perf_counter() - began:.1f} s", flush=True)
    sink = SmtpSink(binary, sink_env, directory)
    engine = None
    try:
        engine = start_engine(directory, store, sink)
        time.sleep(1.0)  # settled: its first reconciles done
        idle = process_memory_mb(engine.pid)["VmRSS"]
        delays = []
        for repeat in range(args.repeats):
            if repeat:
                with store.write() as session:
                    if lifecycle.get(session, mailing_id).state == State.COMPLETED:
                        break  # a list too small to measure again: all sent already
                    lifecycle.stop(session, mailing_id)
                time.sleep(0.5)  # the engine hands back what it claimed
            delays.append(first_message_after_send_now(store, mailing_id, sink))
            time.sleep(args.seconds if repeat == args.repeats - 1 else 0.5)
        memory = process_memory_mb(engine.pid)
        sent = sink.accepted()
    finally:
        if engine is not None:
            engine.send_signal(signal.SIGTERM)
            try:
                engine.wait(60)
            except subprocess.TimeoutExpired:
                engine.kill()
                engine.wait()
        sink.stop()
        store.dispose()
    return {
        "size": size,
        "first": delays,
        "idle_mb": idle,
        "rss_mb": memory["VmRSS"],
        "peak_mb": memory["VmHWM"],
        "sent": sent,
    }


def report(results: list[dict]) -> None:
    base = results[0]
    width = 34
    print()
    print(f"{'':<{width}}" + "".join(f"{r['size']:>16,}" for r in results) + f"{'aim':>10}")

    def line(label: str, value, aim: str = "", fmt: str = "{:>16.3f}") -> None:
        print(f"{label:<{width}}" + "".join(fmt.format(value(r)) for r in results) + f"{aim:>10}")

    line("send-now -> first message (s)", lambda r: statistics.median(r["first"]), "< 1 s")
    line("  worst of the repeats (s)", lambda r: max(r["first"]))
    line(
        "  ratio to the baseline",
        lambda r: statistics.median(r["first"]) / statistics.median(base["first"]),
        fmt="{:>16.2f}",
    )
    line("engine RSS idle (MB)", lambda r: r["idle_mb"], fmt="{:>16.0f}")
    line("engine peak RSS, sending (MB)", lambda r: r["peak_mb"], "< 150", fmt="{:>16.0f}")
    line("  ratio to the baseline", lambda r: r["peak_mb"] / base["peak_mb"], fmt="{:>16.2f}")
    line("messages the sink accepted", lambda r: r["sent"], fmt="{:>16,}")
    for r in results:
        first, peak = max(r["first"]), r["peak_mb"]
        verdict = [
            f"first message {'meets' if first < FIRST_MESSAGE_AIM_S else 'misses'} the 1 s aim",
            f"engine memory {'meets' if peak < ENGINE_RSS_AIM_MB else 'misses'} the 150 MB aim",
        ]
        print(f"{r['size']:,}: " + "; ".join(verdict))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000000,10000000", help="list sizes, baseline first")
    parser.add_argument("--seconds", type=float, default=5.0, help="sending, before the peak")
    parser.add_argument("--repeats", type=int, default=3, help="send-now measurements per size")
    parser.add_argument("--smtp-sink", metavar="PATH", help="an smtp-sink binary to use")
    args = parser.parse_args()
    binary, sink_env = find_smtp_sink(args.smtp_sink)
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-big-send-") as temporary:
        for size in (int(text) for text in args.sizes.split(",")):
            print(f"list of {size:,}:", flush=True)
            results.append(measure(Path(temporary) / str(size), size, args, binary, sink_env))
    report(results)


if __name__ == "__main__":
    main()
