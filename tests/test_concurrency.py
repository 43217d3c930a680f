"""Several real processes acting on one queue at once, through the command line.

Each worker is a separate process (multiprocessing, "spawn") that runs ``sendstatus``
commands by calling ``cli.main`` - the code an operator runs - with its stdout and stderr
captured. A refusal because another process changed the mailing first ("error: cannot move
... it is parked") is a normal outcome; anything else on stderr ("database is locked", a
traceback, a unique-constraint error, a deadlock) is a failure. A watcher process runs
``ls --json`` meanwhile and checks the queue in every snapshot; the end state is checked
through ``ls --json`` and straight from the table.

The workers' commands are drawn from a seed that the test prints: rerun a failure with
SENDSTATUS_TEST_SEED=<seed> (the interleaving differs from run to run, the commands do not).
"""

import contextlib
import io
import json
import multiprocessing
import os
import random
import re
import time
import traceback
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from sendstatus_tui.cli.main import main
from sendstatus_tui.core.model import lifecycle
from sendstatus_tui.core.model.states import Mode, State

from .helpers import in_minutes

SPAWN = multiprocessing.get_context("spawn")
SEED_ENV = "SENDSTATUS_TEST_SEED"
STATES = {state.value for state in State}
MODES = {mode.value for mode in Mode}
ACTIVE = {State.STARTING.value, State.SENDING.value}

# a worker stops early when its time is up, so that a slow machine stays within bounds
WORKER_SECONDS = 3.0
# a process still running this long after the start is stuck (a deadlock, a lock never freed)
HANG_SECONDS = 120.0
# how long the processes wait for each other to have started (imports on a busy machine)
START_SECONDS = 60.0

# what a command legitimately prints on stderr when another process acted first
REFUSAL = re.compile(
    r"error: cannot (send now|schedule|enqueue sequentially|stop|move in the queue)"
    r" mailing \d+: it is (parked|scheduled|queued|starting up|sending|completed) \(.*\)"
)
SEQUENTIAL_WARNING = re.compile(r"warning: other sequential mailings are in progress or queued: ")
# a mailing moved to the top ends first: moved there, or found there (nothing changed)
AT_TOP = re.compile(r": position 1 in the sequential queue| is already first in the sequential")
EXCEPTION_LINE = re.compile(r"[A-Za-z_][\w.]*(Error|Exception|Warning)\b")


# --- the invariants ------------------------------------------------------------------------


def queue_problems(rows: list[dict], expected_ids: set[int]) -> list[str]:
    """What is wrong with a snapshot of the mailings (``ls --json`` objects, or table rows
    with the same keys): nothing lost, known states, a dense queue, one sequential head."""
    problems = []
    ids = [row["id"] for row in rows]
    if len(ids) != len(set(ids)):
        problems.append(f"a mailing is listed twice: {sorted(ids)}")
    if set(ids) != expected_ids:
        lost, unknown = sorted(expected_ids - set(ids)), sorted(set(ids) - expected_ids)
        problems.append(f"mailings lost: {lost}; unknown mailings: {unknown}")
    for row in rows:
        state, mode, position = row["state"], row["mode"], row["position"]
        if state not in STATES:
            problems.append(f"mailing {row['id']} is in an unknown state {state!r}")
        if mode is not None and mode not in MODES:
            problems.append(f"mailing {row['id']} has an unknown mode {mode!r}")
        if (state == State.QUEUED) != (position is not None):
            problems.append(f"mailing {row['id']} is {state} at position {position}")
        if state == State.QUEUED and mode != Mode.SEQUENTIAL:
            problems.append(f"mailing {row['id']} is queued with mode {mode}")
        if state == State.SCHEDULED and (mode != Mode.AT or row["scheduled_at"] is None):
            problems.append(f"mailing {row['id']} is scheduled with mode {mode}, no time")
        if state == State.STANDBY and mode is not None:
            problems.append(f"mailing {row['id']} is parked with mode {mode}")
        if state in ACTIVE and mode is None:
            problems.append(f"mailing {row['id']} is {state} with no mode")
    positions = sorted(row["position"] for row in rows if row["state"] == State.QUEUED)
    if positions != list(range(1, len(positions) + 1)):
        problems.append(f"queue positions are {positions}, not 1..{len(positions)}")
    heads = [row["id"] for row in rows if row["mode"] == Mode.SEQUENTIAL and row["state"] in ACTIVE]
    if len(heads) > 1:
        problems.append(f"several sequential mailings in Sending now: {heads}")
    if positions and not heads:
        problems.append(f"{len(positions)} mailings queued but no sequential one is sending")
    return problems


def table_rows(url: str) -> list[dict]:
    """The mailings straight from the table (no enum conversion that could hide a bad value)."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            result = connection.execute(
                sa.text("SELECT id, state, mode, position, scheduled_at FROM mailing")
            )
            return [dict(row._mapping) for row in result]
    finally:
        engine.dispose()


def recipients_per_mailing(url: str) -> dict[int, int]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            result = connection.execute(
                sa.text("SELECT mailing_id, COUNT(*) FROM recipient GROUP BY mailing_id")
            )
            return {mailing_id: count for mailing_id, count in result}
    finally:
        engine.dispose()


def test_the_invariant_checker_sees_a_broken_queue():
    """The checker the concurrency tests rely on does catch what they look for."""
    good = [
        _row(1, "starting", "sequential"),
        _row(2, "queued", "sequential", 1),
        _row(3, "queued", "sequential", 2),
        _row(4, "standby"),
        _row(5, "scheduled", "at", scheduled_at="2030-01-01T00:00:00"),
    ]
    assert queue_problems(good, {1, 2, 3, 4, 5}) == []
    assert queue_problems(good[:4], {1, 2, 3, 4, 5})  # one lost
    assert queue_problems(
        [*good[:2], _row(3, "queued", "sequential", 1), *good[3:]], {1, 2, 3, 4, 5}
    )
    assert queue_problems(
        [*good[:2], _row(3, "queued", "sequential", 3), *good[3:]], {1, 2, 3, 4, 5}
    )
    assert queue_problems([_row(1, "standby"), *good[1:]], {1, 2, 3, 4, 5})  # no head
    assert queue_problems([*good, _row(6, "sending", "sequential")], {1, 2, 3, 4, 5, 6})
    assert queue_problems([*good[:3], _row(4, "paused"), good[4]], {1, 2, 3, 4, 5})
    assert queue_problems([*good[:3], _row(4, "standby", position=3), good[4]], {1, 2, 3, 4, 5})


def _row(mailing_id, state, mode=None, position=None, scheduled_at=None) -> dict:
    return {
        "id": mailing_id,
        "state": state,
        "mode": mode,
        "position": position,
        "scheduled_at": scheduled_at,
    }


# --- what runs in the worker processes -------------------------------------------------------


def run_cli(argv: list[str]) -> tuple[int | None, str, str]:
    """(exit status or None if it raised, stdout, stderr) of one ``sendstatus`` command."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            status = main(argv)
        except SystemExit as exc:  # argparse
            status = exc.code if isinstance(exc.code, int) else 2
        except Exception:
            status = None
            traceback.print_exc()
    return status, out.getvalue(), err.getvalue()


def judge(command: dict, status, stdout: str, stderr: str, refusals_allowed: bool) -> str | None:
    """The outcome: "ok", "refused" (another process acted first), or None for what an
    operator must never see."""
    lines = stderr.splitlines()
    warnings = [line for line in lines if SEQUENTIAL_WARNING.match(line)]
    others = [line for line in lines if not SEQUENTIAL_WARNING.match(line)]
    if warnings and command["argv"][0] != "schedule":
        return None
    if status == 0 and not others:
        expected = command.get("stdout")
        return "ok" if expected is None or expected.search(stdout) else None
    if status == 1 and refusals_allowed and len(others) == 1 and REFUSAL.fullmatch(others[0]):
        return "refused"
    return None


def run_commands(
    url, worker, commands, min_commands, refusals_allowed, barrier, result_path
) -> None:
    """A worker: runs ``commands`` in order (at least ``min_commands``, more until its time
    is up) and reports their outcomes."""
    problems: list[str] = []
    outcomes: Counter = Counter()
    done = 0
    try:
        barrier.wait(timeout=START_SECONDS)
        end = time.monotonic() + WORKER_SECONDS
        for command in commands:
            if done >= min_commands and time.monotonic() > end:
                break
            argv = ["--db", url, *command["argv"]]
            status, stdout, stderr = run_cli(argv)
            done += 1
            outcome = judge(command, status, stdout, stderr, refusals_allowed)
            if outcome is None:
                problems.append(
                    f"worker {worker}: `sendstatus {' '.join(command['argv'])}` exited {status}"
                    f"\n  stdout: {stdout.strip()!r}\n  stderr: {_tail(stderr)!r}"
                )
                outcome = "wrong"
            outcomes[f"{command['kind']} {outcome}"] += 1
    except Exception:
        problems.append(f"worker {worker} crashed:\n{traceback.format_exc()}")
    Path(result_path).write_text(
        json.dumps({"problems": problems, "outcomes": outcomes, "done": done})
    )


def _tail(text: str) -> str:
    """A traceback's last exception line (what went wrong), else the message itself."""
    lines = text.strip().splitlines()
    errors = [line for line in lines if EXCEPTION_LINE.match(line)]
    return errors[-1] if errors else "\n".join(lines[-4:])


def watch(url, expected_ids, stop, barrier, result_path) -> None:
    """The watcher: ``ls --json`` in a loop, every snapshot checked, until ``stop`` is set."""
    problems: list[str] = []
    snapshots = 0
    try:
        barrier.wait(timeout=START_SECONDS)
        while not stop.is_set() and len(problems) < 20:
            status, stdout, stderr = run_cli(["--db", url, "ls", "--json"])
            if status != 0 or stderr:
                problems.append(f"ls --json exited {status}: {stderr.strip()!r}")
                continue
            snapshots += 1
            found = queue_problems(json.loads(stdout), set(expected_ids))
            problems += [f"snapshot {snapshots}: {problem}" for problem in found]
            time.sleep(0.05)  # leave the CPU to the workers on a small machine
    except Exception:
        problems.append(f"the watcher crashed:\n{traceback.format_exc()}")
    Path(result_path).write_text(json.dumps({"problems": problems, "snapshots": snapshots}))


# --- running them ----------------------------------------------------------------------------


def run_processes(url, scripts, expected_ids, tmp_path, min_commands, refusals_allowed) -> dict:
    """Starts one worker per script and a watcher, all released at once; their reports."""
    barrier = SPAWN.Barrier(len(scripts) + 1)
    stop = SPAWN.Event()
    watcher_result = tmp_path / "watcher.json"
    watcher = SPAWN.Process(
        target=watch, args=(url, sorted(expected_ids), stop, barrier, str(watcher_result))
    )
    results = [tmp_path / f"worker-{n}.json" for n in range(len(scripts))]
    workers = [
        SPAWN.Process(
            target=run_commands,
            args=(url, n, script, min_commands, refusals_allowed, barrier, str(results[n])),
        )
        for n, script in enumerate(scripts)
    ]
    started = time.monotonic()
    processes = [*workers, watcher]
    for process in processes:
        process.start()
    problems = []
    try:
        for worker in workers:
            worker.join(max(0.0, HANG_SECONDS - (time.monotonic() - started)))
        stop.set()
        watcher.join(30)
    finally:
        for process in processes:
            if process.is_alive():
                problems.append(f"process {process.pid} was still running: stuck?")
                process.kill()
                process.join()
    outcomes: Counter = Counter()
    done = 0
    for n, (worker, result) in enumerate(zip(workers, results, strict=True)):
        if not result.exists():
            problems.append(f"worker {n} reported nothing (exit code {worker.exitcode})")
            continue
        report = json.loads(result.read_text())
        problems += report["problems"]
        outcomes.update(report["outcomes"])
        done += report["done"]
    snapshots = 0
    if watcher_result.exists():
        report = json.loads(watcher_result.read_text())
        problems += report["problems"]
        snapshots = report["snapshots"]
    else:
        problems.append(f"the watcher reported nothing (exit code {watcher.exitcode})")
    return {
        "problems": problems,
        "outcomes": outcomes,
        "done": done,
        "snapshots": snapshots,
        "seconds": time.monotonic() - started,
    }


def report(problems: list[str], seed: int | None = None) -> str:
    """The first problems, for an assertion message."""
    lines = [f"{len(problems)} problems" + (f" (seed {seed})" if seed is not None else "")]
    lines += problems[:10]
    if len(problems) > 10:
        lines.append(f"... and {len(problems) - 10} more")
    return "\n".join(lines)


def seed_for_this_run() -> int:
    seed = int(os.environ.get(SEED_ENV) or random.randrange(2**32))
    print(f"seed {seed} (rerun with {SEED_ENV}={seed})")
    return seed


def set_up_mailings(store, make_mailing, count: int, queued: int, scheduled: int) -> list[int]:
    """``count`` mailings: the first ``queued`` enqueued (the first of them is promoted into
    Sending now), the next ``scheduled`` scheduled, the rest parked."""
    ids = [make_mailing(recipients=3) for _ in range(count)]
    with store.write() as session:
        for mailing_id in ids[:queued]:
            lifecycle.enqueue(session, mailing_id)
        for mailing_id in ids[queued : queued + scheduled]:
            lifecycle.schedule_at(session, mailing_id, in_minutes(60))
    return ids


def assert_consistent_at_the_end(url: str, ids: list[int]) -> None:
    """The end state, through ``ls --json`` and straight from the table."""
    status, stdout, stderr = run_cli(["--db", url, "ls", "--json"])
    assert (status, stderr) == (0, "")
    listed = json.loads(stdout)
    assert queue_problems(listed, set(ids)) == []
    assert queue_problems(table_rows(url), set(ids)) == []
    assert recipients_per_mailing(url) == dict.fromkeys(ids, 3)


# --- the tests ------------------------------------------------------------------------------

HAMMER_WORKERS = 4
# commands per worker: at most HAMMER_COMMANDS (WORKER_SECONDS usually ends them first), and
# at least MIN_COMMANDS however slow the machine, so that a run always means something
HAMMER_COMMANDS = 300
MIN_COMMANDS = 30


def hammer_script(rng: random.Random, ids: list[int]) -> list[dict]:
    """A random mix of what operators do to mailings (the queue's commands most often)."""
    commands = []
    for _ in range(HAMMER_COMMANDS):
        mailing = str(rng.choice(ids))
        roll = rng.random()
        if roll < 0.45:
            direction = rng.choice(["up", "down", "top", "bottom"])
            command = {"kind": f"move {direction}", "argv": ["move", mailing, direction]}
            if direction == "top":
                command["stdout"] = AT_TOP  # whatever the others did just before
        elif roll < 0.72:
            command = {
                "kind": "schedule --sequential",
                "argv": ["schedule", mailing, "--sequential", "--yes"],
            }
        elif roll < 0.8:
            when = datetime.now(UTC) + timedelta(
                days=rng.randint(1, 30), minutes=rng.randint(0, 59)
            )
            command = {
                "kind": "schedule --at",
                "argv": ["schedule", mailing, "--at", when.isoformat(timespec="minutes")],
            }
        elif roll < 0.9:
            command = {"kind": "stop", "argv": ["stop", mailing]}
        else:
            command = {"kind": "send-now", "argv": ["send-now", mailing]}
        commands.append(command)
    return commands


@pytest.mark.long
def test_processes_hammering_the_queue_leave_it_consistent(db_url, store, make_mailing, tmp_path):
    """Four operators at once moving, enqueuing, scheduling, stopping and sending mailings:
    only refusals reach them, and the queue stays whole the whole time."""
    seed = seed_for_this_run()
    ids = set_up_mailings(store, make_mailing, count=12, queued=5, scheduled=2)
    store.dispose()
    scripts = [
        hammer_script(random.Random(f"{seed}:{worker}"), ids) for worker in range(HAMMER_WORKERS)
    ]

    run = run_processes(
        db_url, scripts, ids, tmp_path, min_commands=MIN_COMMANDS, refusals_allowed=True
    )

    print(f"{run['done']} commands in {run['seconds']:.1f} s, {run['snapshots']} snapshots")
    print(dict(sorted(run["outcomes"].items())))
    assert run["problems"] == [], report(run["problems"], seed)
    # the run did exercise what it is about: commands got through, not only refusals
    succeeded = Counter()
    for outcome, count in run["outcomes"].items():
        kind, _, result = outcome.rpartition(" ")
        if result == "ok":
            succeeded["move" if kind.startswith("move ") else kind] += count
    # (a rarer kind alone may be refused every time in a short run on a slow machine)
    assert succeeded["move"] > 0, f"seed {seed}: no move got through"
    assert succeeded["schedule --sequential"] > 0, f"seed {seed}: nothing got enqueued"
    others = succeeded["schedule --at"] + succeeded["stop"] + succeeded["send-now"]
    assert others > 0, f"seed {seed}: nothing left the queue"
    assert run["snapshots"] > 0
    assert_consistent_at_the_end(db_url, ids)


TOP_MOVES = 20  # of each kind, per worker


@pytest.mark.long
def test_two_processes_moving_mailings_to_the_top_lose_nothing(
    db_url, store, make_mailing, tmp_path
):
    """Two operators at once: one moves X to the top and Y to the bottom, again and again,
    the other Y to the top and X to the bottom. Each move sees the other's last one."""
    ids = set_up_mailings(store, make_mailing, count=8, queued=8, scheduled=0)
    store.dispose()
    queue_before = [row["id"] for row in _queue(db_url)]
    assert len(queue_before) == 7  # the first one was promoted into Sending now
    x, y = queue_before[2], queue_before[4]
    last = re.compile(
        f": position {len(queue_before)} in the sequential queue"
        "| is already last in the sequential queue"
    )

    def script(first, second):
        commands = []
        for _ in range(TOP_MOVES):
            commands.append({"kind": "top", "argv": ["move", str(first), "top"], "stdout": AT_TOP})
            commands.append(
                {"kind": "bottom", "argv": ["move", str(second), "bottom"], "stdout": last}
            )
        return commands

    scripts = [script(x, y), script(y, x)]
    run = run_processes(
        db_url, scripts, ids, tmp_path, min_commands=2 * TOP_MOVES, refusals_allowed=False
    )

    print(f"{run['done']} moves in {run['seconds']:.1f} s, {run['snapshots']} snapshots")
    assert run["problems"] == [], report(run["problems"])
    assert run["outcomes"] == {"top ok": 2 * TOP_MOVES, "bottom ok": 2 * TOP_MOVES}
    assert_consistent_at_the_end(db_url, ids)
    queue_after = [row["id"] for row in _queue(db_url)]
    assert sorted(queue_after) == sorted(queue_before)
    # the mailings nobody moved keep their order, together between the ends X and Y went to
    others = [mailing for mailing in queue_before if mailing not in (x, y)]
    assert [mailing for mailing in queue_after if mailing not in (x, y)] == others
    start = queue_after.index(others[0])
    assert queue_after[start : start + len(others)] == others


def _queue(url: str) -> list[dict]:
    queued = [row for row in table_rows(url) if row["state"] == State.QUEUED]
    return sorted(queued, key=lambda row: row["position"])
