"""`sendstatus engine --workers N`: N engine processes under one supervisor, as real
processes, seen through the heartbeats (`sendstatus engines`) and /proc."""

import json
import os
import signal
import sys

import pytest

from sendstatus_tui.engine.supervisor import cores

from .engine_processes import EngineProcesses, alive, children_of, stall_between_transactions
from .helpers import wait_until

pytestmark = [
    pytest.mark.slow,  # supervised engine processes, killed: run serially
    pytest.mark.skipif(
        not sys.platform.startswith("linux"), reason="the workers' parent is read in /proc"
    ),
]
STARTING = 30.0  # seconds for Python processes to start on a busy machine


@pytest.fixture
def engines(db_url, relay, tmp_path):
    processes = EngineProcesses(db_url, relay.url, tmp_path)
    yield processes
    processes.stop_all()


def listed_pids(run) -> set[int]:
    """The pids of the engines with a heartbeat row (a worker killed -9 keeps its row)."""
    status, out, _ = run("engines", "--json")
    assert status == 0
    return {engine["pid"] for engine in json.loads(out)}


def workers_beating(run, supervisor: int, count: int) -> set[int] | None:
    """The supervisor's workers once ``count`` of them have written their heartbeat."""
    workers = set(children_of(supervisor))
    return workers if len(workers) == count and workers <= listed_pids(run) else None


def test_a_killed_worker_is_replaced_and_sigterm_stops_them_all(store, engines, run):
    supervisor = engines.start("--workers", "2")
    first = wait_until(lambda: workers_beating(run, supervisor.pid, 2), STARTING, "two workers")
    assert supervisor.pid not in listed_pids(run)  # the supervisor itself sends nothing

    killed = min(first)
    os.kill(killed, signal.SIGKILL)
    second = wait_until(
        lambda: (w := workers_beating(run, supervisor.pid, 2)) and w != first and w,
        STARTING,
        "a worker in place of the killed one",
    )
    assert first - second == {killed}
    # killed again soon after its start: the next one waits longer, and the log says so
    (again,) = second - first
    os.kill(again, signal.SIGKILL)
    third = wait_until(
        lambda: (w := workers_beating(run, supervisor.pid, 2)) and again not in w and w,
        STARTING,
        "a worker in place of the one killed quickly",
    )
    log = engines.log(supervisor)
    assert f"(pid {killed}) was killed by SIGKILL" in log
    assert "starting another in 1 s (1 quick death in a row)" in log
    assert f"(pid {again}) was killed by SIGKILL" in log
    assert "starting another in 2 s (2 quick deaths in a row)" in log

    supervisor.send_signal(signal.SIGTERM)
    assert supervisor.wait(timeout=STARTING) == 0
    assert not any(alive(pid) for pid in third)
    # the workers that stopped took their rows away; the killed ones' stay until lost
    assert listed_pids(run) == {killed, again}
    assert "supervisor stopped: every worker has stopped" in engines.log(supervisor)


def test_workers_stop_cleanly_when_the_supervisor_is_killed(store, engines, run):
    supervisor = engines.start("--workers", "2")
    workers = wait_until(lambda: workers_beating(run, supervisor.pid, 2), STARTING, "two workers")
    supervisor.kill()
    supervisor.wait()
    wait_until(lambda: not any(alive(pid) for pid in workers), STARTING, "the workers stopping")
    assert listed_pids(run) == set()  # a clean stop each: their rows are gone


def test_one_worker_is_the_engine_itself(store, engines, run):
    engine = engines.start("--workers", "1")
    wait_until(lambda: listed_pids(run) == {engine.pid}, STARTING, "the engine's heartbeat")
    assert children_of(engine.pid) == {}
    assert "supervisor" not in engines.log(engine)


@pytest.mark.skipif(cores() < 2, reason="auto is 1 here: no supervisor")
def test_auto_runs_a_worker_per_core(store, engines, run):
    supervisor = engines.start("--workers", "auto")
    count = len(os.sched_getaffinity(0))  # the cores this process may run on
    wait_until(lambda: workers_beating(run, supervisor.pid, count), STARTING, f"{count} workers")
    assert f"{count} engine workers" in engines.log(supervisor)


@pytest.mark.parametrize("workers", ["0", "-2", "x", "1.5"])
def test_a_bad_number_of_workers_is_refused(run, capsys, workers):
    with pytest.raises(SystemExit) as stopped:
        run("engine", "--workers", workers)
    assert stopped.value.code == 2  # a usage error, as every one the parser finds
    error = capsys.readouterr().err.splitlines()[-1]
    assert error == (
        f"sendstatus engine: error: argument --workers: not a number of workers: {workers!r}"
        " (give a whole number, 1 or more, or auto)"
    )


class Signalled:
    """A process known by its pid alone (a worker is the supervisor's child, not ours)."""

    def __init__(self, pid: int):
        self.pid = pid

    def send_signal(self, signum: int) -> None:
        os.kill(self.pid, signum)


def test_a_second_signal_kills_a_worker_that_does_not_stop(db_url, store, engines, run):
    supervisor = engines.start("--workers", "2")
    workers = wait_until(lambda: workers_beating(run, supervisor.pid, 2), STARTING, "two workers")
    stuck = min(workers)
    # stopped, it cannot stop on SIGTERM; holding no lock, it lets the other stop
    stall_between_transactions(Signalled(stuck), db_url)
    supervisor.send_signal(signal.SIGTERM)
    wait_until(lambda: not any(alive(pid) for pid in workers - {stuck}), STARTING, "the other")
    assert supervisor.poll() is None  # it waits for the stuck one, within its stop bound
    supervisor.send_signal(signal.SIGINT)
    assert supervisor.wait(timeout=STARTING) == 0
    assert not alive(stuck)
    log = engines.log(supervisor)
    assert "SIGINT again: killing the workers now" in log
    assert f"worker pid {stuck} did not stop: killed" in log
