"""``sendstatus engine --workers N``: N engine processes on this host under one supervisor,
which starts another in place of one that dies, and stops them all on SIGTERM or SIGINT.

Each worker is a ``sendstatus engine`` process of its own (its own database connections,
heartbeat and relay connections), so that the workers use every core. The supervisor only
starts, watches and stops them: it holds no database connection and sends nothing.

With ``--intake SOURCE`` it runs one ``sendstatus intake SOURCE --follow`` process beside
them, watched, restarted and stopped as a worker is: one, whatever N (two listeners cannot
share a port, and one reader of a maildir is enough); a process of its own rather than a
thread of the supervisor, which then still holds no database connection, and whose life
no intake's fault (a 25 MB message, a bug) can end.
"""

import ctypes
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import FrameType

from sendstatus_tui.engine.metrics import worker_address

log = logging.getLogger("sendstatus.supervisor")

WORKER_ENV = "SENDSTATUS_WORKER"  # the worker's number, for its log lines
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
# a worker that dies sooner than this after its start is restarted after a pause that
# doubles with each such death (a bad relay or database would otherwise spin the host)
STEADY_SECONDS = 30.0
FIRST_PAUSE_SECONDS = 1.0
LONGEST_PAUSE_SECONDS = 30.0
WATCH_SECONDS = 0.1  # how often the supervisor looks at its workers


def cores() -> int:
    """The cores this process may run on (``--workers auto``)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


@dataclass
class Worker:
    number: int  # 1..N: the place it fills, whichever process fills it now
    # what it runs: ``sendstatus engine``, or the intake (``sendstatus intake SOURCE --follow``)
    command: tuple[str, ...] = ("engine",)
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    pause: float = 0.0  # before the next start, after quick deaths in a row
    start_at: float = 0.0
    quick_deaths: int = 0


class Supervisor:
    def __init__(
        self,
        count: int,
        environment: Mapping[str, str],
        stop_seconds: float,
        intake: str | None = None,
        metrics: str | None = None,
        allow_alert_command: bool = False,
    ):
        """``environment``: what the workers run with (the database, relay and rate of
        this command); ``stop_seconds``: how long a worker may take to stop before it is
        killed (its own stop bound, plus a margin); ``intake``: the source of the one
        intake process, if any; ``metrics``: the address whose port plus k worker k serves
        its metrics at."""
        self.workers = [
            Worker(number, _engine_command(number, metrics, allow_alert_command))
            for number in range(1, count + 1)
        ]
        if intake is not None:
            self.workers.append(Worker(0, ("intake", intake, "--follow")))
        self.environment = dict(environment)
        self.stop_seconds = stop_seconds
        self.signals: list[int] = []  # the stop signals received, in order

    def run(self, described: str) -> None:
        """``described``: the settings the workers run with, for the log."""
        for signum in STOP_SIGNALS:
            signal.signal(signum, self._on_signal)
        count = sum(worker.command[0] == "engine" for worker in self.workers)
        intake = "" if count == len(self.workers) else " and one intake"
        log.info(
            "supervisor (pid %d): %d engine workers%s, %s", os.getpid(), count, intake, described
        )
        while not self.signals:
            now = time.monotonic()
            for worker in self.workers:
                if worker.process is not None and worker.process.poll() is not None:
                    self._died(worker, now)
                if worker.process is None and now >= worker.start_at:
                    self._start(worker)
            time.sleep(WATCH_SECONDS)
        name = signal.Signals(self.signals[0]).name
        log.info("%s: stopping the workers (each finishes its batches in flight)", name)
        self._stop_all()

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self.signals.append(signum)  # acted upon (and logged) by the loops, not in here

    def _start(self, worker: Worker) -> None:
        worker.process = subprocess.Popen(
            [sys.executable, "-m", "sendstatus_tui.cli.main", *worker.command],
            env={**os.environ, **self.environment, WORKER_ENV: str(worker.number)},
            stdin=subprocess.DEVNULL,
            # its own process group: a Ctrl-C reaches the supervisor alone, which stops
            # the workers once, in order
            process_group=0,
            preexec_fn=_stopped_with_parent(os.getpid()),
        )
        worker.started_at = time.monotonic()
        log.info("%s started: pid %d", _called(worker), worker.process.pid)

    def _died(self, worker: Worker, now: float) -> None:
        assert worker.process is not None
        pid, status, ran = worker.process.pid, worker.process.returncode, now - worker.started_at
        worker.process = None
        if ran >= STEADY_SECONDS:
            worker.quick_deaths, worker.pause = 0, 0.0
        else:
            worker.quick_deaths += 1
            worker.pause = min(LONGEST_PAUSE_SECONDS, max(FIRST_PAUSE_SECONDS, worker.pause * 2))
        worker.start_at = now + worker.pause
        again = (
            f"starting another in {worker.pause:.0f} s ({worker.quick_deaths} quick"
            f" death{'' if worker.quick_deaths == 1 else 's'} in a row)"
            if worker.pause
            else "starting another"
        )
        log.warning(
            "%s (pid %d) %s after %.0f s; %s",
            _called(worker),
            pid,
            _exit_words(status),
            ran,
            again,
        )

    def _stop_all(self) -> None:
        running = [w.process for w in self.workers if w.process and w.process.poll() is None]
        for process in running:
            process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.stop_seconds
        while any(p.poll() is None for p in running):
            if len(self.signals) > 1:
                name = signal.Signals(self.signals[1]).name
                log.warning("%s again: killing the workers now", name)
                break
            if time.monotonic() >= deadline:
                break
            time.sleep(WATCH_SECONDS)
        for process in running:
            if process.poll() is None:
                log.warning("worker pid %d did not stop: killed", process.pid)
                process.kill()
                process.wait()
            elif process.returncode != 0:
                log.warning("worker pid %d %s", process.pid, _exit_words(process.returncode))
        log.info("supervisor stopped: every worker has stopped")


def _engine_command(number: int, metrics: str | None, allow_alert_command: bool) -> tuple[str, ...]:
    """Worker ``number``'s command: an engine, serving its metrics at a port of its own,
    allowed to run the alert command if the supervisor is."""
    command = ["engine"]
    if metrics is not None:
        command += ["--metrics", worker_address(metrics, number)]
    if allow_alert_command:
        command.append("--allow-alert-command")
    return tuple(command)


def _called(worker: Worker) -> str:
    return f"worker {worker.number}" if worker.command[0] == "engine" else "intake"


def _exit_words(status: int) -> str:
    if status < 0:
        return f"was killed by {signal.Signals(-status).name}"
    return f"exited with status {status}"


def _stopped_with_parent(parent: int) -> Callable[[], None] | None:
    """What a worker runs before the engine: on Linux, the kernel sends it SIGTERM (a clean
    stop) when the supervisor dies, even by kill -9. Elsewhere there is no such promise."""
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up before the fork
    pr_set_pdeathsig = 1

    def stop_with_parent() -> None:
        prctl(pr_set_pdeathsig, signal.SIGTERM)
        if os.getppid() != parent:  # the supervisor died before the request took
            os.kill(os.getpid(), signal.SIGTERM)

    return stop_with_parent
