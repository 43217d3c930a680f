"""Sending speed: the engine against a bare aiosmtplib loop, both to Postfix's smtp-sink.

    python benchmarks/bench_dispatch.py [--messages 20000] [--connections 4] [--rounds 3]
                                        [--no-one-by-one]
                                        [--startup-recipients 1000000] [--startup-seconds 30]
                                        [--startup-tries 3] [--batch-size B]
                                        [--smtp-sink PATH] [--profile FILE]
                                        [--metrics-overhead] [--uvloop]
                                        [--against COMMIT]

Postfix's ``smtp-sink`` (a C server that discards what it accepts) listens on loopback; it
is fetched with ``apt-get download postfix`` when the machine has none (see smtp_sink.py).

Throughput, in interleaved rounds (the order alternates from round to round):

- engine: a fresh SQLite file, one mailing of N personalised recipients (subject, text and
  HTML bodies use two CSV fields), ``send_now``, then the real ``Engine`` (no rate limit,
  the default batch size) on its ``EngineThread`` with
  ``smtp://127.0.0.1:PORT?starttls=off&pool=C&adapt=off``. Timed from starting the thread to the
  mailing's ``finished_at``: lease, preparation, claiming, rendering, sending and recording
  every outcome, all included.
- engine, one by one: the same with ``pipelining=off`` in the relay URL (``--no-one-by-one``
  leaves it out): pipelining must not be slower on loopback, where a round trip costs
  next to nothing.
- smtp-source: Postfix's own C client, from the same package as the sink, with as many
  sessions as the engine has connections, the same number of messages and their mean size
  (``-d``: each session keeps its connection, as the engine's pool does). Timed from its
  start to its exit; its processor time is the child's. Issue 22's aim: engine /
  smtp-source 0.45 or better.
- bare: the same N messages rendered beforehand with the engine's ``render``, then C
  coroutines, each with its own aiosmtplib connection, doing MAIL / RCPT / DATA in a loop
  over a shared iterator. Timed from connecting to the last message accepted.

Each prints messages per second; the figure is the ratio engine / bare per round and its
median (the aim is 0.8 or better). Both are bound by one Python thread's CPU, so each round
also shows this process's CPU time per message: on a busy machine, where wall-clock rates
swing by tens of percent, the CPU ratio (bare / engine) is the steadier figure.

Starting up, in a separate phase (``--startup-recipients 0`` skips it): a mailing of M
recipients is imported from a generated CSV with ``create_mailing``; ``sendstatus engine``
runs in a child process (so that neither the import nor this script counts toward its
memory) and, once it holds the lease and idles, the mailing is sent now. Measured: from
``send_now`` to the state ``sending``, to the first message the sink accepted (the sink's
counter: the figure), and to the mailing's ``sent`` counter first going up (the engine's
bookkeeping). The engine notices ``send_now`` at its next reconcile (every 0.25 s), so this
is tried ``--startup-tries`` times (the mailing is stopped and handed back in between).
Then, while it keeps sending for ``--startup-seconds``: its rate at that scale and its
resident memory (VmRSS sampled; VmHWM, its peak, up to its exit).

``--metrics-overhead`` compares instead the engine's CPU per message with its Prometheus
metrics counted and without (issue 21's aim: less than 3 % more), in interleaved rounds;
since rounds swing by more than 3 % on a shared machine, it then times the metrics' own
work alone: one more run records every call the engine made to its metrics, and these are
replayed into fresh metrics in a tight loop (per message, against the off rounds' CPU).
``--uvloop`` compares the engine's CPU per message on asyncio's event loop and on uvloop's
(not a dependency: ``pip install uvloop`` first), the same way.

``--profile FILE`` runs one engine round under cProfile instead (on the engine's thread and
its database threads, merged: benchmarks/engine_profile.py), prints the heaviest functions
and saves the statistics to FILE.

``--against COMMIT`` compares the engine with the engine of a git commit instead: that
commit is checked out into a temporary ``git worktree``, and each engine round runs in a
child process of its own that imports the package from this checkout or from that one
(PYTHONPATH), with the same mailing, relay and settings. Rounds alternate which goes
first. Printed per round: each side's rate and processor time per message (of the child
process, while it sent); the figure is the median of ours / theirs in processor time per
message (e.g. 1.03: sending costs 3 % more than at COMMIT).
"""

import argparse
import asyncio
import contextlib
import gc
import json
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import aiosmtplib
import sqlalchemy as sa

from sendstatus_tui.core.importing.drafts import MailingDraft, check_draft, create_mailing
from sendstatus_tui.core.model import lifecycle
from sendstatus_tui.core.model.models import EngineLease, Mailing, Recipient, utc_now
from sendstatus_tui.core.model.relay_url import SmtpSettings, parse_relay_url
from sendstatus_tui.core.store.store import Store
from sendstatus_tui.engine.engine import Engine
from sendstatus_tui.engine.message import Template, render
from sendstatus_tui.engine.settings import EngineSettings
from sendstatus_tui.engine.smtp.connection import open_connection
from sendstatus_tui.engine.thread import EngineThread
from sendstatus_tui.engine.transports import transport_for

sys.path.insert(0, str(Path(__file__).resolve().parent))
from smtp_sink import (  # noqa: E402  (a sibling script module)
    SmtpSink,
    find_smtp_sink,
    smtp_source_beside,
)

if TYPE_CHECKING:
    from sendstatus_tui.engine.metrics import NoMetrics

# --- the mailing ------------------------------------------------------------------------


def _words(text: str) -> list[str]:
    return text.split()


_FIRST_NAMES = _words(
    "Anna Ben Chloé Daniel Emma François Greta Hugo Inès Jonas Karin Léa Marco Nina Oskar"
    " Paula Quentin Rosa Søren Théo Ursula Victor Wiebke Xavier Yasmin Zoë"
)
_CITIES = _words(
    "Paris Lyon Marseille Berlin München Köln Zürich Genève Bruxelles Amsterdam Madrid"
    " Sevilla Lisboa Porto Milano Torino Dublin London Kraków Praha Wien København Malmö"
)
_DOMAINS = _words("gmail.com outlook.com web.de orange.fr icloud.com mail.example.org")

_TEXT_BODY = """Hello {first_name},

Spring has arrived in {city}, and so has our new collection. As one of our regular
customers you get early access: from today until Sunday, everything in the shop is 20 %
off, and delivery to {city} is free for orders above 30 euros.

What is new this season:
- light jackets in six colours, water-repellent and packable;
- linen shirts and dresses, woven in Portugal;
- walking shoes with a recycled sole, tested on 500 km of trails.

Our shop in {city} is open every day from 10:00 to 19:00; show this email at the till
and the discount applies there too.

See you soon, {first_name}!
The team at Shop

You receive this email because you subscribed to our newsletter. To unsubscribe, reply
with "unsubscribe" in the subject line.
"""

_HTML_BODY = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Spring in {city}</title></head>
<body style="font-family: Helvetica, Arial, sans-serif; color: #222; max-width: 600px;">
<h1 style="font-size: 22px;">Hello {first_name},</h1>
<p>Spring has arrived in <strong>{city}</strong>, and so has our new collection. As one of
our regular customers you get early access: from today until Sunday, everything in the shop
is <strong>20&nbsp;% off</strong>, and delivery to {city} is free for orders above 30 euros.</p>
<h2 style="font-size: 18px;">What is new this season</h2>
<ul>
<li>Light jackets in six colours, water-repellent and packable;</li>
<li>linen shirts and dresses, woven in Portugal;</li>
<li>walking shoes with a recycled sole, tested on 500&nbsp;km of trails.</li>
</ul>
<p>Our shop in {city} is open every day from 10:00 to 19:00; show this email at the till
and the discount applies there too.</p>
<p><a href="https://shop.example.com/spring?c={city}" style="background: #0a7; color: #fff;
padding: 10px 18px; text-decoration: none; border-radius: 4px;">See the collection</a></p>
<p>See you soon, {first_name}!<br>The team at Shop</p>
<p style="font-size: 11px; color: #888;">You receive this email because you subscribed to our
newsletter. <a href="https://shop.example.com/unsubscribe">Unsubscribe</a>.</p>
</body></html>
"""

DRAFT = MailingDraft(
    name="Spring collection",
    subject="{first_name}, spring has arrived in {city}",
    sender="Shop <news@shop.example.com>",
    text_body=_TEXT_BODY,
    html_body=_HTML_BODY,
)


def recipient_rows(count: int):
    """(email, first_name, city) for ``count`` distinct recipients."""
    for i in range(count):
        first = _FIRST_NAMES[i % len(_FIRST_NAMES)]
        city = _CITIES[(i // 7) % len(_CITIES)]
        yield f"person{i}@{_DOMAINS[i % len(_DOMAINS)]}", first, city


def write_csv(path: Path, count: int) -> None:
    with open(path, "w", encoding="utf-8", newline="") as stream:
        stream.write("email,first_name,city\n")
        chunk = []
        for row in recipient_rows(count):
            chunk.append(",".join(row))
            if len(chunk) == 10_000:
                stream.write("\n".join(chunk) + "\n")
                chunk = []
        if chunk:
            stream.write("\n".join(chunk) + "\n")


def new_mailing(directory: Path, count: int) -> tuple[Store, str, int]:
    """A fresh SQLite file with one parked mailing of ``count`` recipients."""
    directory.mkdir(parents=True, exist_ok=True)
    csv_path = directory / "recipients.csv"
    write_csv(csv_path, count)
    url = f"sqlite:///{directory / 'sendstatus.db'}"
    store = Store(url)
    with store.write() as session:
        mailing, report = create_mailing(session, DRAFT, csv_path)
        mailing_id = mailing.id
    if report.imported != count:
        raise SystemExit(f"imported {report.imported} recipients, expected {count}")
    csv_path.unlink()
    return store, url, mailing_id


def mailing_row(store: Store, mailing_id: int) -> Mailing:
    with store.read() as session:
        return session.get(Mailing, mailing_id)


def prerendered(count: int, first: int = 1) -> tuple[str, list[tuple[str, bytes]]]:
    """The messages the engine sends for a fresh mailing (id 1), to recipients first..count
    (numbered from 1)."""
    draft = check_draft(DRAFT)
    template = Template(
        mailing_id=1,
        subject=draft.subject,
        sender=draft.sender,
        text_body=draft.text_body,
        html_body=draft.html_body,
        field_names=("first_name", "city"),
    )
    messages = [
        (email, render(template, number, email, json.dumps([first_name, city], ensure_ascii=False)))
        for number, (email, first_name, city) in enumerate(recipient_rows(count), start=1)
        if number >= first
    ]
    return template.sender_address, messages


# --- throughput ---------------------------------------------------------------------------


@dataclass
class Run:
    seconds: float
    messages: int
    cpu_seconds: float  # of this whole process, while the run lasted

    @property
    def rate(self) -> float:
        return self.messages / self.seconds

    @property
    def cpu_per_message(self) -> float:
        return self.cpu_seconds / self.messages


def engine_run(
    sink: SmtpSink,
    directory: Path,
    count: int,
    connections: int,
    batch_size: int | None = None,
    thread_class: type[EngineThread] = EngineThread,
    relay_options: str = "",
    metrics: "NoMetrics | None" = None,
) -> Run:
    store, _, mailing_id = new_mailing(directory, count)
    try:
        with store.write() as session:
            lifecycle.send_now(session, mailing_id)
        transport = transport_for(
            f"{sink.url}?starttls=off&pool={connections}&adapt=off{relay_options}"
        )
        settings = EngineSettings(rate_per_second=None)
        if batch_size:
            settings = replace(settings, batch_size=batch_size)
        # without metrics, called as engines before them were (--against an older commit)
        with_metrics = {} if metrics is None else {"metrics": metrics}
        engine = Engine(store, transport, settings, **with_metrics)
        accepted_before = sink.accepted()
        gc.collect()
        cpu_started = time.process_time()
        started = utc_now()
        thread = thread_class(engine).start()
        deadline = time.monotonic() + max(120.0, count / 100)
        # the engine writes finished_at itself: a slow poll here costs no precision
        while (done := mailing_row(store, mailing_id)).state != "completed":
            if not thread.alive or time.monotonic() > deadline:
                thread.stop(10)
                raise SystemExit(f"engine run did not complete: {done.sent} sent; {thread.error!r}")
            time.sleep(0.1)
        cpu_seconds = time.process_time() - cpu_started
        thread.stop()
        if thread.error is not None:
            raise SystemExit(f"engine thread failed: {thread.error!r}")
        accepted = sink.accepted() - accepted_before
        if (done.sent, accepted) != (count, count):
            raise SystemExit(f"engine run: {done.sent} counted sent, {accepted} accepted, {count}")
        return Run((done.finished_at - started).total_seconds(), count, cpu_seconds)
    finally:
        store.dispose()


async def aiosmtplib_loop(port: int, sender: str, pending: Iterator[tuple[str, bytes]]) -> None:
    """One connection of the bare loop: MAIL, RCPT and DATA through aiosmtplib's API for
    each next (recipient, rendered message) of ``pending`` (shared by the connections)."""
    smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False)
    await smtp.connect()
    for recipient, message in pending:
        await smtp.mail(sender)
        await smtp.rcpt(recipient)
        await smtp.data(message)
    await smtp.quit()


def bare_run(
    sink: SmtpSink,
    sender: str,
    messages: list[tuple[str, bytes]],
    connections: int,
    engine_wire: bool = False,
):
    """The same messages by a bare loop: through aiosmtplib's mail/rcpt/data, or (with
    ``engine_wire``) through the engine's own SMTP transaction, without the engine around it
    (no database, rendering or pace): what the engine adds, and nothing else."""
    accepted_before = sink.accepted()

    async def send_all() -> tuple[float, float]:
        pending = iter(messages)  # shared by the workers: each takes the next message

        async def worker() -> None:
            if engine_wire:
                settings = parse_relay_url(f"{sink.url}?starttls=off")
                assert isinstance(settings, SmtpSettings)
                connection = await open_connection(settings)
                for recipient, message in pending:
                    await connection.send(sender, recipient, message, lambda: None)
                await connection.quit(2.0)
                return
            await aiosmtplib_loop(sink.port, sender, pending)

        started, cpu_started = time.perf_counter(), time.process_time()
        await asyncio.gather(*(worker() for _ in range(connections)))
        return time.perf_counter() - started, time.process_time() - cpu_started

    gc.collect()
    seconds, cpu_seconds = asyncio.run(send_all())
    accepted = sink.accepted() - accepted_before
    if accepted != len(messages):
        raise SystemExit(f"bare run: the sink accepted {accepted} of {len(messages)} messages")
    return Run(seconds, len(messages), cpu_seconds)


@dataclass
class SmtpSource:
    """Postfix's smtp-source, run against the sink."""

    binary: Path
    env: dict[str, str]

    def run(self, sink: SmtpSink, count: int, sessions: int, size: int, sender: str) -> Run:
        accepted_before = sink.accepted()
        command = [str(self.binary), "-d", "-N", f"-s{sessions}", f"-m{count}", f"-l{size}"]
        command += ["-f", sender, "-t", "reader@example.com", f"127.0.0.1:{sink.port}"]
        cpu_before = _children_cpu()
        started = time.perf_counter()
        finished = subprocess.run(command, env=self.env, capture_output=True, text=True)
        seconds = time.perf_counter() - started
        if finished.returncode != 0:
            raise SystemExit(f"smtp-source failed: {finished.stderr.strip()}")
        accepted = sink.accepted() - accepted_before
        if accepted != count:
            raise SystemExit(f"smtp-source: the sink accepted {accepted} of {count} messages")
        return Run(seconds, count, _children_cpu() - cpu_before)


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def throughput(args, sink: SmtpSink, workdir: Path, source: SmtpSource) -> None:
    print(
        f"throughput: {args.messages:,} messages, {args.connections} connections,"
        f" {args.rounds} rounds (engine: SQLite, batch size"
        f" {args.batch_size or EngineSettings.batch_size}, no rate limit)"
    )
    sender, messages = prerendered(args.messages)
    size = statistics.mean(len(m) for _, m in messages)
    print(f"  messages of {size:,.0f} bytes (text and HTML, quoted-printable)")
    ratios, wire_ratios, cpu_ratios, one_by_one_ratios, source_ratios = [], [], [], [], []
    for number in range(1, args.rounds + 1):

        def engine(number=number, relay_options="") -> Run:
            directory = workdir / f"round-{number}"
            try:
                return engine_run(
                    sink,
                    directory,
                    args.messages,
                    args.connections,
                    args.batch_size,
                    relay_options=relay_options,
                )
            finally:
                shutil.rmtree(directory, ignore_errors=True)

        def one_by_one() -> Run | None:
            return engine(relay_options="&pipelining=off") if args.one_by_one else None

        def bare() -> Run:
            return bare_run(sink, sender, messages, args.connections)

        def wire() -> Run:
            return bare_run(sink, sender, messages, args.connections, engine_wire=True)

        def postfix() -> Run:
            return source.run(sink, args.messages, args.connections, round(size), sender)

        if number % 2:
            ours, c_client = engine(), postfix()
            unpipelined, baseline, same_wire = one_by_one(), bare(), wire()
        else:
            same_wire, baseline, unpipelined = wire(), bare(), one_by_one()
            c_client, ours = postfix(), engine()
        source_ratios.append(ours.rate / c_client.rate)
        ratios.append(ours.rate / baseline.rate)
        wire_ratios.append(ours.rate / same_wire.rate)
        cpu_ratios.append(baseline.cpu_per_message / ours.cpu_per_message)
        print(
            f"  round {number}: engine {ours.rate:6,.0f} msg/s ({ours.seconds:5.2f} s,"
            f" {ours.cpu_per_message * 1e6:4.0f} µs CPU/msg)"
            f"   bare {baseline.rate:6,.0f} msg/s ({baseline.seconds:5.2f} s,"
            f" {baseline.cpu_per_message * 1e6:4.0f} µs CPU/msg)"
            f"   ratio {ratios[-1]:.2f}"
            f"   | bare on the engine's wire code {same_wire.rate:6,.0f} msg/s"
            f"   ratio {wire_ratios[-1]:.2f}",
            flush=True,
        )
        print(
            f"           smtp-source {c_client.rate:6,.0f} msg/s ({c_client.seconds:5.2f} s,"
            f" {c_client.cpu_per_message * 1e6:4.0f} µs CPU/msg)"
            f"   engine / smtp-source {source_ratios[-1]:.2f}",
            flush=True,
        )
        if unpipelined is not None:
            one_by_one_ratios.append(ours.rate / unpipelined.rate)
            print(
                f"           engine, pipelining=off {unpipelined.rate:6,.0f} msg/s"
                f" ({unpipelined.seconds:5.2f} s, {unpipelined.cpu_per_message * 1e6:4.0f} µs"
                f" CPU/msg)   pipelined / one by one {one_by_one_ratios[-1]:.2f}",
                flush=True,
            )
    print(f"  median ratio engine / bare: {statistics.median(ratios):.2f} (aim: 0.80 or better)")
    print(
        "  median ratio engine / smtp-source:"
        f" {statistics.median(source_ratios):.2f} (aim: 0.45 or better)"
    )
    print(
        "  median ratio engine / bare loop on the engine's own SMTP code (the cost of"
        f" database, rendering and pace alone): {statistics.median(wire_ratios):.2f}"
    )
    if one_by_one_ratios:
        print(
            "  median ratio engine pipelined / engine one by one:"
            f" {statistics.median(one_by_one_ratios):.2f} (aim: 1.0 or better)"
        )
    # both sides are bound by one Python thread's CPU: on a busy machine the CPU ratio
    # (bare CPU per message / engine CPU per message) is the steadier figure
    cpu_ratio = statistics.median(cpu_ratios)
    print(f"  median CPU ratio (bare / engine CPU per message): {cpu_ratio:.2f}")


def metrics_overhead(args, sink: SmtpSink, workdir: Path) -> None:
    """The engine's CPU per message with its Prometheus metrics counted (as under
    ``engine --metrics``, less the HTTP server, which works only when scraped) and without,
    in interleaved rounds; then the metrics' own work, replayed alone."""
    # imported here: --against runs this script's engine rounds with older packages too
    from sendstatus_tui.engine.metrics import EngineMetrics, relay_label

    label = relay_label(sink.url)
    print(f"metrics overhead: {args.messages:,} messages, {args.rounds} rounds of each")

    def engine(metrics: "NoMetrics | None", name: str) -> Run:
        directory = workdir / f"metrics-{name}"
        try:
            return engine_run(sink, directory, args.messages, args.connections, metrics=metrics)
        finally:
            shutil.rmtree(directory, ignore_errors=True)

    ratios, off_costs = [], []
    for number in range(1, args.rounds + 1):
        if number % 2:
            off, on = engine(None, f"off-{number}"), engine(EngineMetrics(label), f"on-{number}")
        else:
            on, off = engine(EngineMetrics(label), f"on-{number}"), engine(None, f"off-{number}")
        ratios.append(on.cpu_per_message / off.cpu_per_message)
        off_costs.append(off.cpu_per_message)
        print(
            f"  round {number}: metrics off {off.cpu_per_message * 1e6:4.0f} µs CPU/msg"
            f" ({off.rate:6,.0f} msg/s)   on {on.cpu_per_message * 1e6:4.0f} µs CPU/msg"
            f" ({on.rate:6,.0f} msg/s)   on / off {ratios[-1]:.3f}",
            flush=True,
        )
    print(
        f"  median CPU per message, on / off: {statistics.median(ratios):.3f}"
        f" (rounds {min(ratios):.3f} to {max(ratios):.3f}; aim: < 1.03)"
    )
    # Rounds swing by more than the 3 % they look for, so the metrics' own work is also
    # timed alone: every call one more engine run made, replayed into fresh metrics in a
    # tight loop (the fastest of 5), against the off rounds' median CPU per message.
    calls = _recording(EngineMetrics)(label)
    engine(calls, "recorded")
    replays = []
    for _ in range(5):
        fresh = EngineMetrics(label)
        started = time.process_time()
        calls.replay(fresh)
        replays.append(time.process_time() - started)
    own = min(replays) / args.messages
    baseline = statistics.median(off_costs)
    print(
        f"  the metrics' own work: {own * 1e6:.2f} µs per message ({len(calls.calls):,} calls),"
        f" {own / baseline:.1%} of the engine's {baseline * 1e6:.0f} µs: on / off"
        f" {1 + own / baseline:.3f} (aim: < 1.03)"
    )


def _recording(metrics_class):
    """``metrics_class`` that also keeps every per-message call made to it, to replay."""

    class RecordingMetrics(metrics_class):
        def __init__(self, label: str):
            super().__init__(label)
            self.calls: list[tuple[str, tuple]] = []

        def recorded(self, outcomes):
            outcomes = list(outcomes)
            self.calls.append(("recorded", (outcomes,)))
            super().recorded(outcomes)

        def handed_over(self, seconds_since_claim):
            self.calls.append(("handed_over", (seconds_since_claim,)))
            super().handed_over(seconds_since_claim)

        def replied(self, seconds, relay):
            self.calls.append(("replied", (seconds, relay)))
            super().replied(seconds, relay)

        def replay(self, metrics) -> None:
            for name, arguments in self.calls:
                getattr(metrics, name)(*arguments)

    return RecordingMetrics


def uvloop_gain(args, sink: SmtpSink, workdir: Path) -> None:
    """The engine's CPU per message on asyncio's own event loop and on uvloop's, in
    interleaved rounds (issue 22: uvloop becomes a dependency only for 15 % or more)."""
    try:
        import uvloop
    except ImportError:
        sys.exit("--uvloop needs uvloop, which sendstatus does not install: pip install uvloop")

    print(f"event loops: {args.messages:,} messages, {args.rounds} rounds of each")
    ratios = []
    for number in range(1, args.rounds + 1):

        def engine(loop: str, number=number) -> Run:
            directory = workdir / f"{loop}-{number}"
            # the engine's thread starts its loop with asyncio.run, from the policy
            asyncio.set_event_loop_policy(uvloop.EventLoopPolicy() if loop == "uvloop" else None)
            try:
                return engine_run(sink, directory, args.messages, args.connections)
            finally:
                asyncio.set_event_loop_policy(None)
                shutil.rmtree(directory, ignore_errors=True)

        if number % 2:
            plain, fast = engine("asyncio"), engine("uvloop")
        else:
            fast, plain = engine("uvloop"), engine("asyncio")
        ratios.append(fast.cpu_per_message / plain.cpu_per_message)
        print(
            f"  round {number}: asyncio {plain.cpu_per_message * 1e6:4.0f} µs CPU/msg"
            f" ({plain.rate:6,.0f} msg/s)   uvloop {fast.cpu_per_message * 1e6:4.0f} µs CPU/msg"
            f" ({fast.rate:6,.0f} msg/s)   uvloop / asyncio {ratios[-1]:.3f}",
            flush=True,
        )
    print(
        f"  median CPU per message, uvloop / asyncio: {statistics.median(ratios):.3f}"
        " (worth a dependency at 0.85 or less)"
    )


def profile_engine(args, sink: SmtpSink, workdir: Path) -> None:
    # imported here: --against runs this script's engine rounds with older packages too
    from engine_profile import EngineProfile

    profiling = EngineProfile()
    undo = profiling.install()
    try:
        run = engine_run(
            sink,
            workdir / "profile",
            args.messages,
            args.connections,
            args.batch_size,
            profiling.thread_class(),
        )
    finally:
        undo()
    print(f"profiled engine run: {run.rate:,.0f} msg/s ({run.seconds:.2f} s, under cProfile)")
    profiling.report(args.profile, heaviest=30, cumulative=45)


# --- starting up and memory ---------------------------------------------------------------


def _status(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of a process, in kB (empty once it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as stream:
            lines = stream.read().splitlines()
    except OSError:
        return {}
    return {
        key: int(value.split()[0])
        for key, _, value in (line.partition(":") for line in lines)
        if key in ("VmRSS", "VmHWM")
    }


def _holds_lease(store: Store) -> bool:
    with store.read() as session:
        lease = session.exec(sa.select(EngineLease)).scalars().first()
    return lease is not None and lease.expires_at > utc_now()


def _first_message(store: Store, sink: SmtpSink, mailing_id: int, child, log_path: Path):
    """Sends the mailing now; the seconds from send_now until its state is 'sending', until
    the sink accepted the first message, and until the mailing's sent counter went up."""
    sent_before = mailing_row(store, mailing_id).sent
    accepted_before = sink.accepted()
    started = time.perf_counter()
    with store.write() as session:
        lifecycle.send_now(session, mailing_id)
    first_accepted = first_counted = sending = None
    next_db_poll = 0.0
    while first_accepted is None or first_counted is None:
        now = time.perf_counter()
        if now - started > 300 or child.poll() is not None:
            raise SystemExit(f"no message went out:\n{log_path.read_text()}")
        if first_accepted is None and sink.accepted() > accepted_before:
            first_accepted = now
        if now >= next_db_poll:
            row = mailing_row(store, mailing_id)
            if sending is None and row.state in ("sending", "completed"):
                sending = now
            if first_counted is None and row.sent > sent_before:
                first_counted = now
            next_db_poll = now + 0.005
        time.sleep(0.001)
    sending = sending or first_counted  # it went by between two polls
    return sending - started, first_accepted - started, first_counted - started


def _stop_and_settle(store: Store, mailing_id: int) -> None:
    """Stops the mailing and waits until the engine handed back what it had claimed."""
    with store.write() as session:
        lifecycle.stop(session, mailing_id)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with store.read() as session:
            in_flight = session.execute(
                sa.select(sa.func.count())
                .select_from(Recipient)
                .where(Recipient.mailing_id == mailing_id, Recipient.status == "in_flight")
            ).scalar_one()
        if in_flight == 0:
            return
        time.sleep(0.05)
    raise SystemExit("the engine did not hand back the recipients of a stopped mailing")


def startup(args, sink: SmtpSink, workdir: Path) -> None:
    count = args.startup_recipients
    print(f"starting up: a mailing of {count:,} recipients, sendstatus engine in a child process")
    began = time.perf_counter()
    store, url, mailing_id = new_mailing(workdir / "startup", count)
    print(f"  mailing created with create_mailing in {time.perf_counter() - began:.1f} s")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SENDSTATUS_")}
    env["SENDSTATUS_CREDENTIALS"] = str(workdir / "no-credentials.toml")
    relay = f"{sink.url}?starttls=off&pool={args.connections}&adapt=off"
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
    log_path = workdir / "engine.log"
    with open(log_path, "wb") as log:
        child = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        launched = time.perf_counter()
        while not _holds_lease(store):
            if child.poll() is not None or time.perf_counter() - launched > 60:
                raise SystemExit(f"the engine did not start:\n{log_path.read_text()}")
            time.sleep(0.02)
        took = time.perf_counter() - launched
        print(f"  engine process holds the lease {took:.2f} s after launch")
        time.sleep(1.0)  # let it settle: idle, reconciling
        idle = _status(child.pid)

        # the engine notices send_now at its next reconcile (every 0.25 s by default): a
        # few tries show the spread; between tries the mailing is stopped and handed back
        timings = []
        for attempt in range(1, args.startup_tries + 1):
            timings.append(_first_message(store, sink, mailing_id, child, log_path))
            sending, accepted, counted = timings[-1]
            print(
                f"  try {attempt}: send_now -> state 'sending' {sending:.3f} s,"
                f" -> first message accepted by the sink {accepted:.3f} s,"
                f" -> mailing.sent > 0 {counted:.3f} s",
                flush=True,
            )
            if attempt < args.startup_tries:
                time.sleep(0.5)
                _stop_and_settle(store, mailing_id)
        accepted = [t[1] for t in timings]
        print(
            f"  send_now -> first message accepted: median {statistics.median(accepted):.3f} s,"
            f" worst {max(accepted):.3f} s"
        )

        peak_rss = idle.get("VmRSS", 0)
        progress = [(time.perf_counter(), mailing_row(store, mailing_id).sent)]
        ends = progress[0][0] + args.startup_seconds
        while time.perf_counter() < ends:
            time.sleep(0.2)
            peak_rss = max(peak_rss, _status(child.pid).get("VmRSS", 0))
            if time.perf_counter() - progress[-1][0] >= 1.0:
                row = mailing_row(store, mailing_id)
                progress.append((time.perf_counter(), row.sent))
                if row.state == "completed":
                    break
        high_water = _status(child.pid).get("VmHWM", 0)
        stopping = time.perf_counter()
        child.send_signal(signal.SIGTERM)  # it finishes its batch in flight, then exits
        while child.poll() is None and time.perf_counter() - stopping < 60:
            # VmHWM is the process's own peak (reset at exec, unlike ru_maxrss, which
            # would include the pages the child shared with this script before exec)
            high_water = max(high_water, _status(child.pid).get("VmHWM", 0))
            time.sleep(0.02)
        print(f"  engine stopped {time.perf_counter() - stopping:.2f} s after SIGTERM")
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    row = mailing_row(store, mailing_id)
    store.dispose()
    (t_start, sent_start), (t_end, sent_end) = progress[0], progress[-1]
    recent = [(t, sent) for t, sent in progress if t >= t_end - 5.0]
    (t_recent, sent_recent) = recent[0]
    print(
        f"  kept sending: {sent_end - sent_start:,} in {t_end - t_start:.1f} s,"
        f" {(sent_end - sent_start) / (t_end - t_start):,.0f} msg/s overall,"
        f" {(sent_end - sent_recent) / max(1e-9, t_end - t_recent):,.0f} msg/s"
        f" over the last {t_end - t_recent:.0f} s"
        f" ({row.sent:,} of {count:,} sent when stopped, state {row.state})"
    )
    print(
        f"  engine memory: idle {idle.get('VmRSS', 0) / 1024:.0f} MB;"
        f" sending: sampled peak VmRSS {peak_rss / 1024:.0f} MB,"
        f" peak (VmHWM, up to its exit) {high_water / 1024:.0f} MB (aim: under 200 MB)"
    )
    if child.returncode != 0:
        print(f"  warning: the engine exited with status {child.returncode}; log: {log_path}")


# --- against another commit ---------------------------------------------------------------


class AttachedSink(SmtpSink):
    """The parent's sink, as a child process sees it: it only reads its counters."""

    def __init__(self, port: int, counters: Path):  # not super().__init__, which starts one
        self.port, self.counters = port, counters


def engine_round_child(args) -> None:
    """``--engine-round``: one engine round in this process, printed as one JSON line."""
    import sendstatus_tui

    sink = AttachedSink(args.sink_port, Path(args.sink_counters))
    run = engine_run(
        sink, Path(args.engine_round), args.messages, args.connections, args.batch_size
    )
    figures = {"seconds": run.seconds, "messages": run.messages, "cpu_seconds": run.cpu_seconds}
    print(json.dumps({**figures, "package": str(Path(sendstatus_tui.__file__).parent)}))


@contextlib.contextmanager
def worktree_of(commit: str, workdir: Path) -> Iterator[Path]:
    """A temporary git worktree of ``commit`` (removed afterwards)."""
    checkout = workdir / "against"
    repository = Path(__file__).resolve().parent.parent
    subprocess.run(
        ["git", "-C", str(repository), "worktree", "add", "--detach", "-q", str(checkout), commit],
        check=True,
    )
    try:
        yield checkout
    finally:
        subprocess.run(
            ["git", "-C", str(repository), "worktree", "remove", "--force", str(checkout)],
            check=False,
        )


def round_in_child(args, sink: SmtpSink, tree: Path, directory: Path) -> tuple[Run, str]:
    command = [sys.executable, __file__, "--engine-round", str(directory)]
    command += ["--sink-port", str(sink.port), "--sink-counters", str(sink.counters)]
    command += ["--messages", str(args.messages), "--connections", str(args.connections)]
    if args.batch_size:
        command += ["--batch-size", str(args.batch_size)]
    env = {**os.environ, "PYTHONPATH": str(tree)}
    try:
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    except subprocess.CalledProcessError as exc:
        raise SystemExit(f"engine round in {tree} failed:\n{exc.stderr[-3000:]}") from None
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    package = figures.pop("package")
    if Path(package).resolve() != (tree / "sendstatus_tui").resolve():
        raise SystemExit(f"the round meant for {tree} imported {package}")
    return Run(**figures), package


def against(args, sink: SmtpSink, workdir: Path) -> None:
    ours_tree = Path(__file__).resolve().parent.parent
    commit = subprocess.run(
        ["git", "-C", str(ours_tree), "rev-parse", "--short", args.against],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    print(
        f"against {commit}: {args.messages:,} messages, {args.connections} connections,"
        f" {args.rounds} rounds, each engine in a child process"
    )
    ratios = []
    with worktree_of(commit, workdir) as theirs_tree:
        for number in range(1, args.rounds + 1):
            sides = [("ours", ours_tree), ("theirs", theirs_tree)]
            if number % 2 == 0:
                sides.reverse()
            runs = {
                name: round_in_child(args, sink, tree, workdir / f"round-{number}-{name}")[0]
                for name, tree in sides
            }
            ours, theirs = runs["ours"], runs["theirs"]
            ratios.append(ours.cpu_per_message / theirs.cpu_per_message)
            print(
                f"  round {number} ({sides[0][0]} first): ours {ours.rate:6,.0f} msg/s"
                f" ({ours.cpu_per_message * 1e6:4.0f} µs CPU/msg)   {commit}"
                f" {theirs.rate:6,.0f} msg/s ({theirs.cpu_per_message * 1e6:4.0f} µs CPU/msg)"
                f"   CPU per message ours / {commit} {ratios[-1]:.3f}",
                flush=True,
            )
    print(
        f"  median CPU per message, ours / {commit}: {statistics.median(ratios):.3f}"
        " (aim: 1.05 or less)"
    )


# --- main ---------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--no-one-by-one",
        dest="one_by_one",
        action="store_false",
        help="leave out the engine run with pipelining=off",
    )
    parser.add_argument("--startup-recipients", type=int, default=1_000_000)
    parser.add_argument("--startup-seconds", type=float, default=30.0)
    parser.add_argument("--startup-tries", type=int, default=3)
    parser.add_argument(
        "--batch-size", type=int, help="the engine's batch size (default: EngineSettings')"
    )
    parser.add_argument("--smtp-sink", metavar="PATH", help="an smtp-sink binary to use")
    parser.add_argument("--profile", metavar="FILE", help="profile one engine run instead")
    parser.add_argument(
        "--metrics-overhead",
        action="store_true",
        help="compare the engine's CPU per message with metrics on and off instead",
    )
    parser.add_argument(
        "--uvloop",
        action="store_true",
        help="compare the engine's CPU per message on asyncio's loop and uvloop's instead",
    )
    parser.add_argument(
        "--against",
        metavar="COMMIT",
        help="compare the engine's processor time per message with that commit's instead",
    )
    # a child's round of --against: the package it imports is the one on its PYTHONPATH
    parser.add_argument("--engine-round", metavar="DIR", help=argparse.SUPPRESS)
    parser.add_argument("--sink-port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--sink-counters", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.engine_round:
        engine_round_child(args)
        return

    binary, env = find_smtp_sink(args.smtp_sink)
    with tempfile.TemporaryDirectory(prefix="bench-dispatch-") as temporary:
        workdir = Path(temporary)
        sink = SmtpSink(binary, env, workdir)
        print(f"smtp-sink {binary} on 127.0.0.1:{sink.port}; Python {sys.version.split()[0]}")
        try:
            if args.profile:
                profile_engine(args, sink, workdir)
                return
            if args.metrics_overhead:
                metrics_overhead(args, sink, workdir)
                return
            if args.uvloop:
                uvloop_gain(args, sink, workdir)
                return
            if args.against:
                against(args, sink, workdir)
                return
            if args.messages > 0:
                throughput(args, sink, workdir, SmtpSource(smtp_source_beside(binary), env))
            if args.startup_recipients > 0:
                startup(args, sink, workdir)
        finally:
            sink.stop()


if __name__ == "__main__":
    main()
