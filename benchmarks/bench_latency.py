"""Speed to a relay far away: pipelining and connections that adapt.

    python benchmarks/bench_latency.py [--round-trips 0,10,40] [--sweep 4,8,16,32,64]
                                       [--seconds 3] [--adapt-seconds 15] [--smtp-sink PATH]

Postfix's ``smtp-sink`` (a C server that offers PIPELINING) listens on loopback; in front of
it, for each round trip above 0 ms, a delaying TCP proxy (tests/latency_proxy.py, in a
process of its own) adds half the round trip in each direction. For each round trip, side
by side in one run:

- fixed pools: the engine with ``?pool=N&adapt=off`` for each N of the sweep, with
  pipelining and with ``pipelining=off``, each next to the bound the latency allows at N
  connections: N / (4 round trips) one command at a time (MAIL, RCPT, DATA, the dot), and
  N / (1 round trip) pipelined (the next envelope rides with the previous dot);
- the defaults: the engine with a plain ``smtp://`` URL (adaptive, at most 64 connections,
  pipelining when offered), measured after ``--adapt-seconds`` of adapting; it prints the
  connections it settled on.

Each engine sends one mailing (a fresh SQLite file, the messages of bench_dispatch.py) and
is measured from the sink's counter over ``--seconds`` once it is sending. Printed, per
round trip: defaults / best fixed pool (the aim: 0.8 or better at 10 and 40 ms), and the
time per message with pipelining / without at the same N (the aim: 0.5 or less).
"""

import argparse
import logging
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_dispatch import new_mailing  # noqa: E402
from smtp_sink import SinkUnavailable, SmtpSink, find_smtp_sink  # noqa: E402

from sendstatus_tui.core.model import lifecycle
from sendstatus_tui.engine.engine import Engine
from sendstatus_tui.engine.settings import EngineSettings
from sendstatus_tui.engine.thread import EngineThread
from sendstatus_tui.engine.transports import transport_for


class Proxy:
    """tests/latency_proxy.py in a child process (not to share this process's CPU)."""

    def __init__(self, target_port: int, round_trip_ms: float):
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.latency_proxy", str(target_port), str(round_trip_ms)],
            cwd=Path(__file__).resolve().parent.parent,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        self.port = int(self.process.stdout.readline())

    def stop(self) -> None:
        self.process.kill()
        self.process.wait()


def measure(
    sink: SmtpSink, url: str, directory: Path, count: int, warm_seconds: float, seconds: float
) -> tuple[float, int]:
    """Messages a second the sink accepted from one engine; and its connections at the end."""
    store, _, mailing_id = new_mailing(directory, count)
    try:
        with store.write() as session:
            lifecycle.send_now(session, mailing_id)
        transport = transport_for(url)
        engine = Engine(store, transport, EngineSettings(batch_size=500))
        thread = EngineThread(engine).start()
        try:
            started = sink.accepted()
            deadline = time.monotonic() + 30
            while sink.accepted() == started:  # starting up: the lease, the relay check
                if time.monotonic() > deadline or not thread.alive:
                    raise SystemExit(f"{url}: nothing sent in 30 s ({thread.error!r})")
                time.sleep(0.05)
            time.sleep(warm_seconds)
            before, began = sink.accepted(), time.monotonic()
            time.sleep(seconds)
            rate = (sink.accepted() - before) / (time.monotonic() - began)
            connections = getattr(transport, "connections", 1)
        finally:
            thread.stop(30)
        if thread.error is not None:
            raise SystemExit(f"engine thread failed: {thread.error!r}")
        return rate, connections
    finally:
        store.dispose()


def bound(connections: int, round_trip_ms: float, pipelined: bool) -> float | None:
    if round_trip_ms <= 0:
        return None
    per_message = round_trip_ms / 1000 * (1 if pipelined else 4)
    return connections / per_message


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--round-trips", default="0,10,40", help="milliseconds, comma-separated")
    parser.add_argument("--sweep", default="4,8,16,32,64", help="fixed pool sizes")
    parser.add_argument("--seconds", type=float, default=3.0, help="measured, per run")
    parser.add_argument("--warm-seconds", type=float, default=1.0, help="before measuring")
    parser.add_argument("--adapt-seconds", type=float, default=15.0, help="the defaults adapt")
    parser.add_argument("--smtp-sink", help="path to Postfix's smtp-sink")
    parser.add_argument("--only-defaults", action="store_true", help="skip the fixed pools")
    parser.add_argument("--verbose", action="store_true", help="the engine's sizing decisions")
    args = parser.parse_args()
    if args.verbose:
        logging.basicConfig(level=logging.WARNING, format="    %(message)s")
        logging.getLogger("sendstatus.engine").setLevel(logging.INFO)
    round_trips = [float(x) for x in args.round_trips.split(",")]
    sweep = [int(x) for x in args.sweep.split(",")]
    try:
        binary, env = find_smtp_sink(args.smtp_sink)
    except SinkUnavailable as exc:
        raise SystemExit(f"no smtp-sink: {exc}") from None

    with tempfile.TemporaryDirectory(prefix="bench-latency-") as temp:
        work = Path(temp)
        sink = SmtpSink(binary, env, work)
        print(f"smtp-sink on 127.0.0.1:{sink.port}; {args.seconds:.0f} s measured per run")
        runs = 0
        try:
            for round_trip in round_trips:
                proxy = Proxy(sink.port, round_trip) if round_trip > 0 else None
                port = proxy.port if proxy else sink.port
                base = f"smtp://127.0.0.1:{port}?starttls=off"

                def run(
                    options: str, warm: float, expected_rate: float | None, base: str = base
                ) -> tuple:
                    nonlocal runs
                    runs += 1
                    seconds = warm + args.seconds + 5
                    count = int(min(200_000, max(2_000, (expected_rate or 5_000) * seconds)))
                    return measure(
                        sink, base + options, work / f"run{runs}", count, warm, args.seconds
                    )

                try:
                    print(f"\nround trip {round_trip:.0f} ms")
                    fixed: dict[tuple[int, bool], float] = {}
                    for connections in [] if args.only_defaults else sweep:
                        cells = []
                        for pipelined in (True, False):
                            limit = bound(connections, round_trip, pipelined)
                            options = f"&pool={connections}&adapt=off" + (
                                "" if pipelined else "&pipelining=off"
                            )
                            rate, _ = run(options, args.warm_seconds, limit)
                            fixed[connections, pipelined] = rate
                            shown = f"{limit:7,.0f}" if limit else "      –"
                            name = "pipelined" if pipelined else "one by one"
                            cells.append(f"{name} {rate:7,.0f} msg/s (bound {shown})")
                        ratio = fixed[connections, False] / fixed[connections, True]
                        print(
                            f"  pool={connections:<3} {cells[0]}   {cells[1]}"
                            f"   time/msg pipelined / one by one {ratio:.2f}"
                        )
                    rate, settled = run("", args.adapt_seconds, None)
                    print(
                        f"  defaults (adaptive, pipelining): {rate:7,.0f} msg/s with {settled}"
                        f" connections after {args.adapt_seconds:.0f} s"
                    )
                    if not fixed:
                        continue
                    best_n, best_pipelined = max(fixed, key=lambda key: fixed[key])
                    best = fixed[best_n, best_pipelined]
                    print(
                        f"  defaults / best fixed pool (pool={best_n},"
                        f" {'pipelined' if best_pipelined else 'one by one'}):"
                        f" {rate / best:.2f} (aim: 0.8 or better)"
                    )
                finally:
                    if proxy:
                        proxy.stop()
        finally:
            sink.stop()


if __name__ == "__main__":
    main()
