"""The dashboard at scale: one refresh, and a key press to the moved row on screen, on an
idle engine and while the engine sends at full speed to Postfix's smtp-sink.

    python benchmarks/bench_dashboard.py [--mailings 1000] [--recipients 1000000[,10000000]]
                                         [--refreshes 30] [--presses 30] [--interval 0.5]
                                         [--connections 4] [--phases idle,load,client]
                                         [--database FILE] [--smtp-sink PATH]

The database, an SQLite file built in a child process (so that building it counts toward
neither the time nor the memory measured here): ``--mailings`` mailings holding
``--recipients`` recipients, all created with ``create_mailing`` from generated CSVs. Four
big ones hold 96 % of the recipients and are sending (three sent now, one the head of the
sequential queue, so that the queue does not move under the keys); 99 small ones wait in
the sequential queue, 50 are scheduled from tomorrow on, the rest are parked. With
``--database FILE`` the built file is kept there and reused by later runs (each phase works
on a copy). Building 1,000 mailings and 1,000,000 recipients takes some 6 s. Several sizes
(``--recipients 1000000,10000000``) put the phases of each size side by side: a refresh reads
the mailings' counters, never their recipients, so it should not grow with them.

Each phase runs in a fresh child process (clean memory figures, no state carried over),
the real ``SendStatusApp`` headless (``run_test``, 160 x 50) on its own copy of the file,
with no refresh timer (the script drives the refreshes, one every ``--interval`` seconds
like the app's timer) and blinking off:

- idle: no engine anywhere; nothing changes between refreshes.
- load: an ``EngineThread`` in the dashboard's process, as ``sendstatus`` hosts it, sending
  with no rate limit to smtp-sink (``smtp://...?starttls=off&pool=C``).
- client: the same load from ``sendstatus engine`` in another process; the dashboard is a
  pure client (what changes when the engine and the dashboard share no GIL).

Under load the sink's counter and the mailings' ``sent`` counters are checked to rise
during each measurement; the engine's rate with no dashboard, just before, is shown too.

Measured on the app's own code paths, through timing hooks (the package is unchanged; its
functions are wrapped in the measuring process only):

- refresh: ``app.refresh_panes()`` (the thread worker): ``read_snapshot`` on the worker
  thread, the hop back to the UI loop (a PanesRead message), ``show_snapshot`` there (the
  tables updated by row key), then the next frame the screen composes (Textual composes
  frames headless too; only the terminal output is skipped). Aim, for call -> tables
  updated: 50 ms.
- key to screen: the Scheduled sendings pane focused, the cursor on a queued mailing in the
  middle of the queue, ``shift+up`` (then ``shift+down``, alternately) pressed through
  Pilot; timed until the first frame composed after the table itself (its displayed row
  order) shows the mailing above (below) its former neighbour. Split into: key -> the
  action's write transaction asks for the lock, the wait for SQLite's write lock (BEGIN
  IMMEDIATE), queue.move and the commit, the refresh the action triggers (read), the table
  updated, the frame. Aim: 100 ms.
- memory: this process's resident set with the store open, just before the dashboard
  starts (with the engine running, under load), and its peak during the phase (VmHWM,
  reset through /proc/self/clear_refs as the dashboard starts).
- the cyclic garbage collector's pauses (they stop every thread), and how many objects it
  tracks once the tables are filled.

Every time is a median and a 95th percentile over the repetitions. On a shared machine the
figures move by tens of percent from run to run: compare phases within one run.
"""

import argparse
import asyncio
import contextlib
import gc
import json
import math
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import timedelta
from pathlib import Path

import sqlalchemy as sa

import sendstatus_tui.tui.app as app_module
from sendstatus_tui.core.importing.drafts import create_mailing
from sendstatus_tui.core.model import lifecycle
from sendstatus_tui.core.model.models import Mailing, utc_now
from sendstatus_tui.core.model.states import Area, State
from sendstatus_tui.core.store.store import Store
from sendstatus_tui.engine.engine import Engine
from sendstatus_tui.engine.settings import EngineSettings
from sendstatus_tui.engine.thread import EngineThread
from sendstatus_tui.engine.transports import transport_for
from sendstatus_tui.tui.app import SendStatusApp
from sendstatus_tui.views.panes import PANE_AREAS

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_dispatch import DRAFT, write_csv  # noqa: E402  (sibling script modules)
from smtp_sink import SmtpSink, find_smtp_sink  # noqa: E402

SIZE = (160, 50)
ZONE = "Europe/Rome"
REFRESH_AIM_MS = 50
KEY_AIM_MS = 100
BIG_MAILINGS = 4  # three sent now, one the head of the sequential queue
BIG_SHARE = 0.96  # of the recipients, held by the big mailings
QUEUED = 99
SCHEDULED = 50
WAIT_TIMEOUT = 30.0  # seconds: a step that takes longer fails the run

_THEMES = (
    "Weekly newsletter",
    "Spring collection",
    "Black Friday early access for members",
    "Product update",
    "Store opening in your city",
    "Webinar invitation",
    "Loyalty points reminder",
    "Customer satisfaction survey",
    "Summer sale: last days",
    "New arrivals",
)


# --- the database ---------------------------------------------------------------------------


def build_database(path: Path, mailings: int, recipients: int) -> None:
    """A fresh SQLite file with the mailings described in the module's docstring."""
    small = mailings - BIG_MAILINGS
    if small < QUEUED + SCHEDULED:
        raise SystemExit(f"--mailings must be at least {BIG_MAILINGS + QUEUED + SCHEDULED}")
    small_size = max(1, round(recipients * (1 - BIG_SHARE) / small))
    big_total = recipients - small * small_size
    if big_total < BIG_MAILINGS:
        raise SystemExit("--recipients is too small for the mailings asked for")
    big_sizes = [big_total // BIG_MAILINGS] * BIG_MAILINGS
    big_sizes[0] += big_total - sum(big_sizes)

    began = time.perf_counter()
    csvs: dict[int, Path] = {}

    def csv_of(count: int) -> Path:
        if count not in csvs:
            csvs[count] = path.parent / f"recipients-{count}.csv"
            write_csv(csvs[count], count)
        return csvs[count]

    store = Store(f"sqlite:///{path}")
    now = utc_now()
    names = iter(f"{_THEMES[i % len(_THEMES)]} {i:03d}" for i in range(1, mailings + 1))
    for number, size in enumerate(big_sizes):
        with store.write() as session:
            mailing, _ = create_mailing(session, replace(DRAFT, name=next(names)), csv_of(size))
            start = lifecycle.send_now if number < BIG_MAILINGS - 1 else lifecycle.enqueue
            start(session, mailing.id, now)
            lifecycle.mark_prepared(session, mailing.id, now)
    # the small ones: which is queued, scheduled or parked is shuffled over the ids
    plans = ["queued"] * QUEUED + ["scheduled"] * SCHEDULED
    plans += ["standby"] * (small - len(plans))
    random.Random(7).shuffle(plans)
    scheduled = 0
    with store.write() as session:
        for plan in plans:
            mailing, _ = create_mailing(
                session, replace(DRAFT, name=next(names)), csv_of(small_size)
            )
            if plan == "queued":
                lifecycle.enqueue(session, mailing.id, now)
            elif plan == "scheduled":
                when = now + timedelta(days=1, minutes=37 * scheduled)
                lifecycle.schedule_at(session, mailing.id, when, now)
                scheduled += 1
    with store.engine.connect() as connection:
        connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    store.dispose()
    for csv_path in csvs.values():
        csv_path.unlink()
    print(
        f"  built in {time.perf_counter() - began:.1f} s: {BIG_MAILINGS} mailings of"
        f" ~{big_sizes[-1]:,} recipients sending, {QUEUED} queued, {SCHEDULED} scheduled,"
        f" {small - QUEUED - SCHEDULED} parked ({small_size} recipients each)",
        flush=True,
    )


def prepare_database(args, workdir: Path, recipients: int) -> Path:
    """The database for this run: ``--database`` (built there if missing; with several
    sizes, one file per size beside it), or one built in ``workdir``."""
    built = Path(args.database) if args.database else workdir / "built.db"
    if len(args.sizes) > 1:
        built = built.with_name(f"{built.stem}-{recipients}{built.suffix}")
    if not built.exists():
        print(
            f"building the database: {args.mailings:,} mailings, {recipients:,} recipients",
            flush=True,
        )
        built.parent.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, __file__, "--build-into", str(built)]
        command += ["--mailings", str(args.mailings), "--recipients", str(recipients)]
        subprocess.run(command, check=True)
    else:
        print(f"database: {built}")
    return built


def totals(store: Store) -> tuple[int, int, int]:
    """(mailings, recipients, sent) in the database."""
    with store.read() as session:
        row = session.execute(
            sa.select(sa.func.count(), sa.func.sum(Mailing.total), sa.func.sum(Mailing.sent))
        ).one()
    return row[0], row[1] or 0, row[2] or 0


# --- memory ---------------------------------------------------------------------------------


def memory_kb() -> dict[str, int]:
    """This process's VmRSS and VmHWM (its peak since the last reset), in kB."""
    with open("/proc/self/status") as stream:
        lines = stream.read().splitlines()
    return {
        key: int(value.split()[0])
        for key, _, value in (line.partition(":") for line in lines)
        if key in ("VmRSS", "VmHWM")
    }


def reset_peak() -> None:
    """Resets VmHWM to the current resident set (Linux: ``5`` into clear_refs)."""
    with contextlib.suppress(OSError), open("/proc/self/clear_refs", "w") as stream:
        stream.write("5")


# --- timing hooks ---------------------------------------------------------------------------


@dataclass
class Watch:
    """A key press being timed: done once ``table`` shows ``mailing_id`` just above
    (``above``) or below its former neighbour ``neighbour``."""

    table: object
    mailing_id: int
    neighbour: int
    above: bool
    shown_at: float | None = None


class Probe:
    """Timestamps from inside the app, taken by wrapping its functions in this process.

    Thread-side records (reads, writes, moves) are only appended to; the UI-loop hooks
    (show, frame) also wake whoever awaits ``until``.
    """

    def __init__(self, app: SendStatusApp, engine_threads: str = "sendstatus-"):
        self.app = app
        self.reads: list[tuple[float, float]] = []
        self.shows: list[tuple[float, float]] = []
        self.frames: list[float] = []
        self.writes: list[tuple[float, float, float]] = []  # asked, begun, committed
        self.moves: list[tuple[float, float]] = []
        self.watch: Watch | None = None
        self._wake: asyncio.Future | None = None
        # the engine's own threads (its loop, its database and heartbeat pools) by their
        # names' prefix: their writes are not the key's
        self._engine_threads = engine_threads
        self._undo: list[Callable[[], None]] = []

    # installing and removing the hooks

    def install(self) -> None:
        app, store = self.app, self.app.store
        original_read = app_module.read_snapshot
        original_move = lifecycle.move
        original_write = Store.write
        original_show = app.dashboard.show_snapshot
        original_display = app._display

        def read_snapshot(*args, **kwargs):
            started = time.perf_counter()
            try:
                return original_read(*args, **kwargs)
            finally:
                self.reads.append((started, time.perf_counter()))

        def move(*args, **kwargs):
            started = time.perf_counter()
            try:
                return original_move(*args, **kwargs)
            finally:
                self.moves.append((started, time.perf_counter()))

        @contextlib.contextmanager
        def write(*args, **kwargs):
            if threading.current_thread().name.startswith(self._engine_threads):
                with original_write(store, *args, **kwargs) as session:
                    yield session
                return
            asked = time.perf_counter()
            with original_write(store, *args, **kwargs) as session:
                begun = time.perf_counter()
                yield session
            self.writes.append((asked, begun, time.perf_counter()))

        def show_snapshot(snapshot):
            started = time.perf_counter()
            original_show(snapshot)
            ended = time.perf_counter()
            self.shows.append((started, ended))
            watch = self.watch
            if watch is not None and watch.shown_at is None and _shows_at(watch):
                watch.shown_at = ended
            self._poke()

        def display(screen, renderable):
            original_display(screen, renderable)
            if renderable is not None and not app._batch_count:
                self.frames.append(time.perf_counter())
                self._poke()

        app_module.read_snapshot = read_snapshot
        lifecycle.move = move
        store.write = write
        app.dashboard.show_snapshot = show_snapshot
        app._display = display
        self._undo = [
            lambda: setattr(app_module, "read_snapshot", original_read),
            lambda: setattr(lifecycle, "move", original_move),
            lambda: delattr(store, "write"),
        ]

    def remove(self) -> None:
        for undo in self._undo:
            undo()
        self._undo = []

    # waiting, on the UI loop

    def _poke(self) -> None:
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)

    async def until(self, condition: Callable[[], bool], timeout: float = WAIT_TIMEOUT) -> bool:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not condition():
            left = deadline - loop.time()
            if left <= 0:
                return False
            self._wake = loop.create_future()
            # woken by a hook, or every 10 ms for what threads record
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(left, 0.01)):
                    await self._wake
        return True

    async def frame_after(self, moment: float, timeout: float) -> float | None:
        """The first frame composed after ``moment`` (None: nothing was redrawn)."""
        if await self.until(lambda: bool(self.frames) and self.frames[-1] > moment, timeout):
            return next(t for t in self.frames if t > moment)
        return None


def _shows_at(watch: Watch) -> bool:
    # the order the DataTable itself displays (its rows sorted), not the app's bookkeeping
    table = watch.table
    order = [
        table.coordinate_to_cell_key((index, 0)).row_key.value for index in range(table.row_count)
    ]
    target, neighbour = str(watch.mailing_id), str(watch.neighbour)
    if target not in order or neighbour not in order:
        return False
    offset = order.index(neighbour) - order.index(target)
    return offset == (1 if watch.above else -1)


def _first_after(records: list[tuple], moment: float, what: str) -> tuple:
    found = next((r for r in records if r[0] >= moment), None)
    if found is None:
        raise SystemExit(f"no {what} recorded after the key press")
    return found


# --- one phase ------------------------------------------------------------------------------


@dataclass
class PhaseResult:
    name: str
    rows: dict[str, int] = field(default_factory=dict)
    first_fill: tuple[float, float] | None = None  # (read, show) of the refresh on mount
    refresh: dict[str, list[float]] = field(default_factory=dict)
    key: dict[str, list[float]] = field(default_factory=dict)
    unpainted_refreshes: int = 0
    rss_start_kb: int = 0  # the process before any engine or dashboard (store open)
    rss_before_kb: int = 0  # just before the dashboard starts (the engine sending, under load)
    peak_kb: int = 0
    rss_after_kb: int = 0
    rates: dict[str, float] = field(default_factory=dict)  # messages per second, by window
    sent_rose: dict[str, int] = field(default_factory=dict)
    alone_rate: float | None = None  # the engine's, before the dashboard started
    gc_pauses: dict[str, list[float]] = field(default_factory=dict)  # ms, by generation
    gc_objects: int = 0  # objects the collector tracks, once the tables are filled


class GcPauses:
    """How long the cyclic garbage collector stops every thread, by generation."""

    def __init__(self, into: dict[str, list[float]]):
        self.into = into
        self._started = 0.0

    def __call__(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            elapsed = (time.perf_counter() - self._started) * 1000
            self.into.setdefault(str(info["generation"]), []).append(elapsed)

    def __enter__(self) -> "GcPauses":
        gc.callbacks.append(self)
        return self

    def __exit__(self, *exc) -> None:
        gc.callbacks.remove(self)


def _add(series: dict[str, list[float]], name: str, seconds: float | None) -> None:
    if seconds is not None:
        series.setdefault(name, []).append(seconds * 1000)


class Sending:
    """The engine's progress: the sink's counter and the database's sent counters."""

    def __init__(self, store: Store, sink: SmtpSink | None):
        self.store = store
        self.sink = sink

    def mark(self) -> tuple[float, int, int]:
        accepted = self.sink.accepted() if self.sink else 0
        return time.perf_counter(), accepted, totals(self.store)[2]

    @staticmethod
    def rate(start: tuple[float, int, int], end: tuple[float, int, int]) -> float:
        return (end[1] - start[1]) / (end[0] - start[0])


async def run_phase(
    name: str, store: Store, args, engine: EngineThread | None, sending: Sending
) -> PhaseResult:
    result = PhaseResult(name)
    gc.collect()
    result.rss_before_kb = memory_kb()["VmRSS"]
    reset_peak()
    app = SendStatusApp(store, zone_name=ZONE, blink=False, refresh_seconds=0, engine=engine)
    probe = Probe(app)
    probe.install()
    try:
        async with app.run_test(size=SIZE) as pilot:
            # the refresh on mount fills the tables (1,000 rows added)
            if not await probe.until(lambda: bool(probe.shows)):
                raise SystemExit(f"{name}: the first refresh never reached the tables")
            await app.workers.wait_for_complete()
            result.first_fill = (
                probe.reads[0][1] - probe.reads[0][0],
                probe.shows[0][1] - probe.shows[0][0],
            )
            result.rows = {str(area): app.dashboard.table(area).row_count for area in PANE_AREAS}
            await pilot.pause()  # what the first refresh scheduled after itself has run
            result.gc_objects = len(gc.get_objects())  # the frozen ones (gc.freeze) not counted
            with GcPauses(result.gc_pauses):
                await measure_refreshes(app, probe, args, result, sending)
                await measure_keys(app, pilot, probe, args, result, sending)
            app.exit()
    finally:
        probe.remove()
    result.peak_kb = memory_kb()["VmHWM"]
    gc.collect()
    result.rss_after_kb = memory_kb()["VmRSS"]
    return result


async def measure_refreshes(app, probe: Probe, args, result: PhaseResult, sending) -> None:
    start = sending.mark()
    for _ in range(args.refreshes):
        await asyncio.sleep(args.interval)  # as the app's timer spaces them
        reads, shows = len(probe.reads), len(probe.shows)
        called = time.perf_counter()
        app.refresh_panes()
        if not await probe.until(lambda shows=shows: len(probe.shows) > shows):
            raise SystemExit(f"{result.name}: a refresh never reached the tables")
        (read_start, read_end), (show_start, show_end) = probe.reads[reads], probe.shows[shows]
        series = result.refresh
        _add(series, "total", show_end - called)
        _add(series, "start", read_start - called)
        _add(series, "read", read_end - read_start)
        _add(series, "hop", show_start - read_end)
        _add(series, "show", show_end - show_start)
        frame = await probe.frame_after(show_end, timeout=0.25)
        if frame is None:
            result.unpainted_refreshes += 1
        _add(series, "frame", frame and frame - show_end)
        _add(series, "to_screen", frame and frame - called)
        await app.workers.wait_for_complete()
    end = sending.mark()
    result.rates["refresh"] = Sending.rate(start, end)
    result.sent_rose["refresh"] = end[2] - start[2]


async def measure_keys(app, pilot, probe: Probe, args, result: PhaseResult, sending) -> None:
    table = app.dashboard.table(Area.SCHEDULED)
    queued = [
        mailing_id
        for mailing_id in table.mailing_ids
        if table.row_for(mailing_id).state == State.QUEUED
    ]
    target = queued[len(queued) // 2]
    table.focus()
    table.move_cursor(row=table.mailing_ids.index(target), animate=False)
    await pilot.pause()
    selected = app.dashboard.selected()
    if selected is None or selected.mailing_id != target:
        raise SystemExit(f"{result.name}: could not select a queued mailing")
    start = sending.mark()
    for number in range(args.presses):
        key, step = ("shift+up", -1) if number % 2 == 0 else ("shift+down", +1)
        before = table.mailing_ids.index(target)
        neighbour = table.mailing_ids[before + step]
        watch = probe.watch = Watch(table, target, neighbour, above=step < 0)
        pressed = time.perf_counter()
        await pilot.press(key)
        if not await probe.until(lambda watch=watch: watch.shown_at is not None):
            raise SystemExit(f"{result.name}: {key} never moved mailing {target} on screen")
        frame = await probe.frame_after(watch.shown_at, timeout=WAIT_TIMEOUT)
        probe.watch = None
        asked, begun, committed = _first_after(probe.writes, pressed, "write transaction")
        read_start, read_end = _first_after(probe.reads, committed, "read")
        move_start, move_end = _first_after(probe.moves, begun, "queue move")
        series = result.key
        _add(series, "total", frame - pressed)
        _add(series, "dispatch", asked - pressed)
        _add(series, "lock", begun - asked)
        _add(series, "move", move_end - move_start)
        _add(series, "commit", committed - move_end)
        _add(series, "to_read", read_start - committed)
        _add(series, "read", read_end - read_start)
        _add(series, "show", watch.shown_at - read_end)
        _add(series, "frame", frame - watch.shown_at)
        await app.workers.wait_for_complete()
        await asyncio.sleep(args.interval)
    end = sending.mark()
    result.rates["keys"] = Sending.rate(start, end)
    result.sent_rose["keys"] = end[2] - start[2]


# --- the run --------------------------------------------------------------------------------

# marks the line where a phase's child process reports its measurements, as JSON
_RESULT_PREFIX = "RESULT "
_PHASES = {
    "idle": "no engine",
    "load": "the engine on a thread of this process (as the dashboard hosts it), no rate"
    " limit, to smtp-sink",
    "client": "the dashboard as a client; `sendstatus engine` sends in another process",
}


def start_engine(store: Store, sink: SmtpSink, connections: int) -> EngineThread:
    transport = transport_for(f"{sink.url}?starttls=off&pool={connections}")
    engine = Engine(store, transport, EngineSettings(rate_per_second=None))
    return EngineThread(engine).start()


def wait_for_sending(store: Store, sink: SmtpSink, engine: EngineThread) -> None:
    accepted, sent = sink.accepted(), totals(store)[2]
    deadline = time.monotonic() + WAIT_TIMEOUT
    while sink.accepted() <= accepted or totals(store)[2] <= sent:
        if not engine.alive or time.monotonic() > deadline:
            raise SystemExit(f"the engine is not sending: {engine.error!r}")
        time.sleep(0.05)


def engine_alone(sending: Sending, seconds: float) -> float:
    """Messages per second with no dashboard in the process."""
    start = sending.mark()
    time.sleep(seconds)
    return Sending.rate(start, sending.mark())


def phase_process(args) -> PhaseResult:
    """One phase, in this (fresh) process, on the database file ``--phase-db``."""
    store = Store(f"sqlite:///{args.phase_db}", migrate=False)
    gc.collect()
    rss_start = memory_kb()["VmRSS"]
    try:
        if args.phase == "idle":
            result = asyncio.run(run_phase("idle", store, args, None, Sending(store, None)))
        elif args.phase == "load":
            binary, env = find_smtp_sink(args.smtp_sink)
            sink = SmtpSink(binary, env, Path(args.phase_db).parent)
            try:
                sending = Sending(store, sink)
                engine = start_engine(store, sink, args.connections)
                try:
                    wait_for_sending(store, sink, engine)
                    alone = engine_alone(sending, args.alone_seconds)
                    result = asyncio.run(run_phase("load", store, args, engine, sending))
                    result.alone_rate = alone
                    if not engine.alive:
                        raise SystemExit(f"the engine stopped: {engine.error!r}")
                finally:
                    engine.stop()
            finally:
                sink.stop()
        elif args.phase == "client":
            result = client_phase(store, args)
        else:
            raise SystemExit(f"unknown phase {args.phase!r} (idle, load, client)")
    finally:
        store.dispose()
    result.rss_start_kb = rss_start
    return result


def client_phase(store: Store, args) -> PhaseResult:
    """The dashboard as a client while ``sendstatus engine`` sends in a child process."""
    workdir = Path(args.phase_db).parent
    binary, env = find_smtp_sink(args.smtp_sink)
    sink = SmtpSink(binary, env, workdir)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SENDSTATUS_")}
    env["SENDSTATUS_CREDENTIALS"] = str(workdir / "no-credentials.toml")
    relay = f"{sink.url}?starttls=off&pool={args.connections}"
    command = [sys.executable, "-m", "sendstatus_tui.cli.main", "engine"]
    command += ["--db", f"sqlite:///{args.phase_db}", "--smtp", relay]
    log_path = workdir / "engine.log"
    try:
        with open(log_path, "wb") as log:
            child = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            sending = Sending(store, sink)
            accepted, deadline = sink.accepted(), time.monotonic() + WAIT_TIMEOUT
            while sink.accepted() <= accepted:
                if child.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"the engine is not sending:\n{log_path.read_text()}")
                time.sleep(0.05)
            alone = engine_alone(sending, args.alone_seconds)
            result = asyncio.run(run_phase("client", store, args, None, sending))
            result.alone_rate = alone
            if child.poll() is not None:
                raise SystemExit(f"the engine stopped:\n{log_path.read_text()}")
        finally:
            child.send_signal(signal.SIGTERM)  # it records its batches in flight, then exits
            try:
                child.wait(60)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
    finally:
        sink.stop()
    return result


def run(args) -> None:
    phases = [p.strip() for p in args.phases.split(",") if p.strip()]
    results: list[PhaseResult] = []
    with tempfile.TemporaryDirectory(prefix="bench-dashboard-") as temporary:
        workdir = Path(temporary)
        for size in args.sizes:
            built = prepare_database(args, workdir, size)
            store = Store(f"sqlite:///{built}")
            count, recipients, _ = totals(store)
            store.dispose()
            print(
                f"{count:,} mailings, {recipients:,} recipients; SQLite"
                f" {built.stat().st_size / 1e6:,.0f} MB; {args.refreshes} refreshes and"
                f" {args.presses} key presses per phase, each phase in a fresh process;"
                f" Python {sys.version.split()[0]}, {os.cpu_count()} CPUs",
                flush=True,
            )
            for phase in phases:
                print(f"phase {phase}: {_PHASES.get(phase, '?')}", flush=True)
                database = workdir / f"{phase}.db"
                shutil.copyfile(built, database)
                result = run_child(args, phase, database)
                if len(args.sizes) > 1:  # the columns side by side: one per phase and size
                    result.name = f"{phase} {size / 1e6:g}M"
                results.append(result)
                database.unlink()
    report(results)


def run_child(args, phase: str, database: Path) -> PhaseResult:
    command = [sys.executable, __file__, "--phase", phase, "--phase-db", str(database)]
    for option in ("refreshes", "presses", "interval", "connections", "alone_seconds"):
        command += [f"--{option.replace('_', '-')}", str(getattr(args, option))]
    if args.smtp_sink:
        command += ["--smtp-sink", args.smtp_sink]
    child = subprocess.run(command, stdout=subprocess.PIPE, text=True)
    found = None
    for line in child.stdout.splitlines():
        if line.startswith(_RESULT_PREFIX):
            found = PhaseResult(**json.loads(line.removeprefix(_RESULT_PREFIX)))
        else:
            print(line)
    if child.returncode != 0 or found is None:
        raise SystemExit(f"phase {phase} failed (exit status {child.returncode})")
    return found


# --- the report -----------------------------------------------------------------------------


def median_p95(values: list[float]) -> tuple[float, float]:
    ordered = sorted(values)
    p95 = ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]
    return statistics.median(ordered), p95


_REFRESH_LINES = (
    ("total", "refresh: call -> tables updated", REFRESH_AIM_MS),
    ("start", "  worker thread starts", None),
    ("read", "  read_snapshot (worker thread)", None),
    ("hop", "  hop back to the UI loop", None),
    ("show", "  show_snapshot (UI loop)", None),
    ("frame", "  then the next frame composed", None),
    ("to_screen", "  call -> frame composed", None),
)
_KEY_LINES = (
    ("total", "key -> moved row on screen", KEY_AIM_MS),
    ("dispatch", "  key -> action asks to write", None),
    ("lock", "  waiting for the write lock", None),
    ("move", "  queue.move (in the transaction)", None),
    ("commit", "  commit", None),
    ("to_read", "  commit -> refresh read starts", None),
    ("read", "  read_snapshot", None),
    ("show", "  -> table shows the move", None),
    ("frame", "  -> frame composed", None),
)


def report(results: list[PhaseResult]) -> None:
    if not results:
        return
    width = 36
    print()
    rows = results[0].rows
    print(f"panes: {', '.join(f'{area} {count}' for area, count in rows.items())} rows")
    header = "".join(f"{r.name:>22}" for r in results)
    print(f"{'(ms: median / p95)':<{width}}{header}{'aim':>10}")

    def line(label: str, series_of, key: str, aim: int | None) -> None:
        cells = []
        for result in results:
            values = series_of(result).get(key)
            if values:
                median, p95 = median_p95(values)
                cells.append(f"{median:9.1f} / {p95:7.1f}")
            else:
                cells.append(f"{'-':>19}")
        verdict = ""
        if aim is not None:
            verdict = f"< {aim}"
        print(f"{label:<{width}}" + "".join(f"{c:>22}" for c in cells) + f"{verdict:>10}")

    for key, label, aim in _REFRESH_LINES:
        line(label, lambda r: r.refresh, key, aim)
    unpainted = "".join(f"{r.unpainted_refreshes:>22}" for r in results)
    print(f"{'  refreshes that redrew nothing':<{width}}{unpainted}")
    first = "".join(
        f"{r.first_fill[0] * 1000:9.1f} + {r.first_fill[1] * 1000:7.1f}" if r.first_fill else "-"
        for r in results
    )
    print(f"{'first fill on mount: read + show':<{width}}{first:>22}")
    for key, label, aim in _KEY_LINES:
        line(label, lambda r: r.key, key, aim)

    def memory_line(label: str, value) -> None:
        print(f"{label:<{width}}" + "".join(f"{value(r):>22}" for r in results))

    memory_line("memory: RSS with the store open", lambda r: f"{r.rss_start_kb / 1024:.0f} MB")
    memory_line("  RSS before the dashboard", lambda r: f"{r.rss_before_kb / 1024:.0f} MB")
    memory_line("  peak RSS during the phase", lambda r: f"{r.peak_kb / 1024:.0f} MB")
    memory_line(
        "  peak - before (the dashboard)",
        lambda r: f"+{(r.peak_kb - r.rss_before_kb) / 1024:.0f} MB",
    )
    memory_line("  RSS after the app exited", lambda r: f"{r.rss_after_kb / 1024:.0f} MB")
    memory_line(
        "engine msg/s: refreshes | keys",
        lambda r: f"{r.rates.get('refresh', 0):,.0f} | {r.rates.get('keys', 0):,.0f}",
    )
    memory_line(
        "  mailings' sent counters rose by",
        lambda r: f"{r.sent_rose.get('refresh', 0):,} | {r.sent_rose.get('keys', 0):,}",
    )
    memory_line(
        "  alone, before the dashboard",
        lambda r: f"{r.alone_rate:,.0f}" if r.alone_rate is not None else "-",
    )

    def pauses(result: PhaseResult) -> str:
        collections = result.gc_pauses.get("2", [])
        if not collections:
            return "none"
        return f"{len(collections)}: {sum(collections):.0f} ms, max {max(collections):.0f}"

    memory_line("GC: objects tracked after the fill", lambda r: f"{r.gc_objects:,}")
    memory_line("  full collections (gen 2)", pauses)
    memory_line(
        "  gen 0 + 1 collections, total",
        lambda r: f"{sum(sum(r.gc_pauses.get(g, [])) for g in ('0', '1')):.0f} ms",
    )
    for result in results:
        if not result.name.startswith("idle") and not all(
            result.rates.get(window, 0) > 0 and result.sent_rose.get(window, 0) > 0
            for window in ("refresh", "keys")
        ):
            print(f"warning: {result.name}: the engine was not sending all along")
        verdicts = []
        for what, series, aim in (
            ("refresh", result.refresh, REFRESH_AIM_MS),
            ("key to screen", result.key, KEY_AIM_MS),
        ):
            if series.get("total"):
                median, p95 = median_p95(series["total"])
                ok = "meets" if p95 < aim else ("median meets" if median < aim else "misses")
                verdicts.append(f"{what} {ok} the {aim} ms aim (p95 {p95:.0f} ms)")
        print(f"{result.name}: " + "; ".join(verdicts))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mailings", type=int, default=1_000)
    parser.add_argument(
        "--recipients",
        default="1000000",
        help="recipients in all; several sizes, comma-separated (1000000,10000000), run the"
        " phases on a database of each, side by side",
    )
    parser.add_argument("--refreshes", type=int, default=30)
    parser.add_argument("--presses", type=int, default=30)
    parser.add_argument(
        "--interval", type=float, default=0.5, help="seconds between refreshes (the app's timer)"
    )
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument(
        "--phases", default="idle,load,client", help="which phases, in order: idle, load, client"
    )
    parser.add_argument(
        "--alone-seconds", type=float, default=3.0, help="engine rate measured without the app"
    )
    parser.add_argument("--database", metavar="FILE", help="keep the built database here")
    parser.add_argument("--smtp-sink", metavar="PATH", help="an smtp-sink binary to use")
    parser.add_argument("--build-into", metavar="FILE", help=argparse.SUPPRESS)
    parser.add_argument("--phase", help=argparse.SUPPRESS)
    parser.add_argument("--phase-db", metavar="FILE", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.sizes = [int(size) for size in args.recipients.split(",")]
    if args.build_into:
        build_database(Path(args.build_into), args.mailings, args.sizes[0])
    elif args.phase:
        result = phase_process(args)
        print(_RESULT_PREFIX + json.dumps(asdict(result)), flush=True)
    else:
        run(args)


if __name__ == "__main__":
    main()
