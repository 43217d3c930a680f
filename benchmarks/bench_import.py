"""Recipient import speed, memory and write-lock hold: ours against a bare sqlite3
executemany of the same rows, and against the import before big lists (issue 8).

    python benchmarks/bench_import.py [--rows 1000000] [--rounds 3] [--suppressed 100000]
                                      [--old REV | --old none]

Writes a realistic CSV (email, first_name, city; some mixed case, a few internationalised
addresses, a few duplicates) to a temporary folder, then, in alternating rounds:

- ours: ``add_mailing`` into a fresh SQLite file opened with ``Store`` (the real code path
  of ``sendstatus mailing add``: full validation, duplicates found by the database (a
  sorted read), short transactions into a hidden mailing); the longest of its write
  transactions is how long it held the write lock at most;
- old: ``create_mailing`` of the sendstatus at git revision ``--old`` (default: the one
  before big lists, whose import found duplicates with a Python set of every address and
  wrote the whole file in one transaction), run from a copy of that revision's package;
- bare: the rows that ours left in the recipient table, inserted with ``sqlite3``
  ``executemany`` into a fresh file with the same schema and the same connection settings
  as ``Store`` (WAL, synchronous=NORMAL, foreign keys on), in one transaction.

- ours with a suppression list: the same import into a database whose suppression list
  holds ``--suppressed`` addresses (1 % of them in the CSV, so dropped), put there before
  the clock starts. Its ratio to ours without the list is the cost of the list.

Each measurement runs in a fresh child process, so that rounds do not share caches or
memory and the peak RSS is the import's own. The machine may be shared: the best of the
rounds counts, the median is shown beside it. The figure is the ratio ours / bare; the
same ratio in processor time (user + system) is shown too, as a check when the machine is
busy. For 10,000,000 rows, ``--rounds 1 --suppressed 0``: one round takes long (see the
figures in docs/benchmarks.md).
"""

import argparse
import csv
import json
import os
import random
import resource
import sqlite3
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# marks the line where a child process reports its measurement, as JSON
_RESULT_PREFIX = "RESULT "
# the last revision whose import kept a set of every address and one transaction
_BEFORE_BIG_LISTS = "2b93d99"
_ROOT = Path(__file__).resolve().parent.parent


def _words(text: str) -> list[str]:
    return text.split()


_FIRST_NAMES = _words(
    "Anna Ben Chloé Daniel Emma François Greta Hugo Inès Jonas Karin Léa Marco Nina Oskar"
    " Paula Quentin Rosa Søren Théo Ursula Victor Wiebke Xavier Yasmin Zoë"
)
_LAST_NAMES = _words(
    "Martin Bernard Dubois Müller Schmidt Rossi Garcia Smith Jones Nielsen Novak Kowalski"
    " Jansen Silva Costa Murphy Öztürk Petit Durand Leroy Moreau Fischer Weber Wagner"
)
_CITIES = _words(
    "Paris Lyon Marseille Berlin München Köln Zürich Genève Bruxelles Amsterdam Madrid"
    " Sevilla Lisboa Porto Milano Torino Dublin London Kraków Praha Wien København Malmö"
)
_DOMAINS = _words(
    "gmail.com outlook.com yahoo.fr hotmail.com web.de gmx.de orange.fr free.fr laposte.net"
    " icloud.com proton.me mail.example.org shop-client.co.uk uni-example.edu news.example.net"
)
_IDN_DOMAINS = ("bücher.de", "café-lumière.fr", "straße.example.com")


def write_csv(path: Path, rows: int, seed: int = 20261127) -> None:
    """``rows`` data rows; about 0.3 % are duplicates (half of them differing in case)."""
    rng = random.Random(seed)
    emitted: list[str] = []
    with open(path, "w", encoding="utf-8", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(["email", "first_name", "city"])
        for n in range(rows):
            first, last = rng.choice(_FIRST_NAMES), rng.choice(_LAST_NAMES)
            draw = rng.random()
            if emitted and draw < 0.003:
                email = rng.choice(emitted)
                if draw < 0.0015:
                    email = email.upper()
            elif draw < 0.0035:
                # an internationalised address: email-validator's slow path
                email = f"{last.lower()}{n}@{rng.choice(_IDN_DOMAINS)}"
            else:
                local = _ascii(
                    rng.choice(
                        (
                            f"{first}.{last}{n}",
                            f"{first[0]}{last}.{n}",
                            f"{first}_{last}+news{n}",
                            f"{last}{n}",
                        )
                    )
                )
                if rng.random() < 0.8:
                    local = local.lower()
                domain = rng.choice(_DOMAINS)
                if rng.random() < 0.05:
                    domain = domain.upper()
                email = f"{local}@{domain}"
            if len(emitted) < 10_000:
                emitted.append(email)
            writer.writerow([email, first, rng.choice(_CITIES)])


_TO_ASCII = str.maketrans("éçèëöüøÖ", "eceeouoO")


def _ascii(text: str) -> str:
    return text.translate(_TO_ASCII)


def write_suppression_list(path: Path, csv_path: Path, count: int) -> None:
    """``count`` addresses: 1 % taken from the CSV, the others new."""
    from_csv = count // 100
    with open(csv_path, encoding="utf-8", newline="") as stream:
        reader = csv.reader(stream)
        next(reader)
        taken = [row[0] for _, row in zip(range(from_csv * 50), reader, strict=False)][::50]
    others = [f"optout{n}@{_DOMAINS[n % len(_DOMAINS)]}" for n in range(count - len(taken))]
    path.write_text("\n".join(taken + others) + "\n", encoding="utf-8")


def run_ours(
    csv_path: Path, database: Path, suppression_list: Path | None = None
) -> tuple[float, dict]:
    from sendstatus_tui.core.importing import suppression
    from sendstatus_tui.core.importing.drafts import add_mailing
    from sendstatus_tui.core.store.store import Store

    class TimedStore(Store):
        """Times each write transaction: how long the SQLite write lock is held."""

        longest = 0.0

        @contextmanager
        def write(self) -> Iterator:
            began = time.perf_counter()
            with super().write() as session:
                yield session
            TimedStore.longest = max(TimedStore.longest, time.perf_counter() - began)

    store = TimedStore(f"sqlite:///{database}")
    if suppression_list is not None:
        with store.write() as session:
            suppression.add(session, suppression_list.read_text(encoding="utf-8").split())
    before_kib = _peak_rss_kib()  # the interpreter, SQLAlchemy, email-validator...
    TimedStore.longest = 0.0
    started, cpu_started = time.perf_counter(), time.process_time()
    _mailing, report, _ = add_mailing(store, _draft(), csv_path, then=lambda *_: None)
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    store.dispose()
    return elapsed, {
        "cpu_seconds": cpu,
        "imported": report.imported,
        "duplicates": report.duplicates,
        "suppressed": report.suppressed,
        "before_kib": before_kib,
        "longest_write_seconds": TimedStore.longest,
    }


def run_old(csv_path: Path, database: Path) -> tuple[float, dict]:
    """The import of the revision on PYTHONPATH: create_mailing in one transaction."""
    from sendstatus_tui.core.importing.drafts import create_mailing
    from sendstatus_tui.core.store.store import Store

    store = Store(f"sqlite:///{database}")
    before_kib = _peak_rss_kib()
    started, cpu_started = time.perf_counter(), time.process_time()
    with store.write() as session:
        _mailing, report = create_mailing(session, _draft(), csv_path)
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    store.dispose()
    import sendstatus_tui  # the copy of that revision (PYTHONPATH), not the installed one

    assert "old_package" in sendstatus_tui.__file__, sendstatus_tui.__file__
    return elapsed, {
        "cpu_seconds": cpu,
        "imported": report.imported,
        "before_kib": before_kib,
        "longest_write_seconds": elapsed,  # the whole import was one transaction
    }


def _draft():
    from sendstatus_tui.core.importing.drafts import MailingDraft

    return MailingDraft(
        name="Benchmark", subject="Hello", sender="Shop <news@shop.example.org>", text_body="Hi"
    )


def extract_revision(revision: str, into: Path) -> Path:
    """The package ``sendstatus_tui`` as it was at ``revision``, unpacked under ``into``."""
    archive = subprocess.run(
        ["git", "-C", str(_ROOT), "archive", revision, "sendstatus_tui"],
        check=True,
        stdout=subprocess.PIPE,
    ).stdout
    into.mkdir()
    (into / "old.tar").write_bytes(archive)
    with tarfile.open(into / "old.tar") as tar:
        tar.extractall(into, filter="data")
    return into


def run_bare(source: Path, database: Path) -> tuple[float, dict]:
    # the schema and the rows exactly as ours left them (read before the clock starts)
    origin = sqlite3.connect(source)
    schema = [
        sql
        for (sql,) in origin.execute(
            "SELECT sql FROM sqlite_master WHERE tbl_name IN ('mailing', 'recipient')"
            " AND sql IS NOT NULL ORDER BY type DESC, tbl_name"  # tables before indexes
        )
    ]
    mailings = origin.execute("SELECT * FROM mailing").fetchall()
    rows = origin.execute(
        "SELECT mailing_id, email, mailbox, field_values, status, attempts FROM recipient"
        " ORDER BY id"
    ).fetchall()
    origin.close()
    connection = sqlite3.connect(database, isolation_level=None)
    for pragma in ("journal_mode = WAL", "synchronous = NORMAL", "foreign_keys = ON"):
        connection.execute(f"PRAGMA {pragma}")
    for sql in schema:
        connection.execute(sql)
    marks = ", ".join("?" * len(mailings[0]))
    connection.executemany(f"INSERT INTO mailing VALUES ({marks})", mailings)

    started, cpu_started = time.perf_counter(), time.process_time()
    connection.execute("BEGIN IMMEDIATE")
    connection.executemany(
        "INSERT INTO recipient (mailing_id, email, mailbox, field_values, status, attempts)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        rows,
    )
    connection.execute("COMMIT")
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    connection.close()
    return elapsed, {"cpu_seconds": cpu, "imported": len(rows)}


def _peak_rss_kib() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux


def _child(kind: str, source: Path, database: Path, listed: Path | None) -> None:
    if kind == "bare":
        elapsed, facts = run_bare(source, database)
    elif kind == "old":
        elapsed, facts = run_old(source, database)
    else:
        elapsed, facts = run_ours(source, database, listed if kind == "listed" else None)
    print(_RESULT_PREFIX + json.dumps({"seconds": elapsed, "peak_kib": _peak_rss_kib(), **facts}))


def _measure(
    kind: str,
    source: Path,
    database: Path,
    listed: Path | None = None,
    package: Path | None = None,
) -> dict:
    for suffix in ("", "-wal", "-shm"):  # a fresh database every time
        Path(f"{database}{suffix}").unlink(missing_ok=True)
    env = dict(os.environ)
    if package is not None:  # an older revision's package, found before the installed one
        env["PYTHONPATH"] = str(package)
    done = subprocess.run(
        [sys.executable, __file__, "--child", kind, str(source), str(database), str(listed)],
        check=True,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    line = next(x for x in done.stdout.splitlines() if x.startswith(_RESULT_PREFIX))
    return json.loads(line.removeprefix(_RESULT_PREFIX))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="CSV data rows")
    parser.add_argument("--rounds", type=int, default=3, help="measurements of each kind")
    parser.add_argument(
        "--suppressed",
        type=int,
        default=100_000,
        help="addresses on the suppression list for the third import (0: no third import)",
    )
    parser.add_argument(
        "--old",
        default=_BEFORE_BIG_LISTS,
        help="git revision whose import is measured beside ours ('none': not measured)",
    )
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, source, database, listed = args.child
        _child(kind, Path(source), Path(database), Path(listed) if listed != "None" else None)
        return

    with tempfile.TemporaryDirectory(prefix="bench_import_") as folder:
        folder = Path(folder)
        csv_path = folder / "recipients.csv"
        write_csv(csv_path, args.rows)
        size = csv_path.stat().st_size / 2**20
        print(f"{args.rows:,} rows, {size:.0f} MiB of CSV; SQLite {sqlite3.sqlite_version}")
        ours_db, bare_db, old_db = folder / "ours.sqlite", folder / "bare.sqlite", folder / "old"
        listed_db, listed_path = folder / "listed.sqlite", folder / "suppressed.txt"
        if args.suppressed:
            write_suppression_list(listed_path, csv_path, args.suppressed)
        old_package = None
        if args.old != "none":
            old_package = extract_revision(args.old, folder / "old_package")
        results: dict[str, list[dict]] = {"ours": [], "bare": [], "old": [], "listed": []}
        for round_ in range(1, args.rounds + 1):
            results["ours"].append(_measure("ours", csv_path, ours_db))
            results["bare"].append(_measure("bare", ours_db, bare_db))
            if old_package is not None:
                results["old"].append(_measure("old", csv_path, old_db, package=old_package))
            if args.suppressed:
                results["listed"].append(_measure("listed", csv_path, listed_db, listed_path))
            took = ", ".join(
                f"{kind} {runs[-1]['seconds']:.2f} s" for kind, runs in results.items() if runs
            )
            print(f"round {round_}: {took}")
        imported = results["ours"][0]["imported"]
        assert all(r["imported"] == imported for r in results["ours"] + results["bare"])
        assert all(r["imported"] == imported for r in results["old"])
    _report(args, imported, results)


def _report(args, imported: int, results: dict[str, list[dict]]) -> None:
    ours, bare, old, listed = (results[kind] for kind in ("ours", "bare", "old", "listed"))

    def rate(runs: list[dict], pick, clock: str = "seconds") -> float:
        return imported / pick(r[clock] for r in runs)

    best_ours, best_bare = rate(ours, min), rate(bare, min)
    median_ours, median_bare = rate(ours, statistics.median), rate(bare, statistics.median)
    print(f"imported {imported:,} recipients, {ours[0]['duplicates']:,} duplicates dropped")
    print(f"bare sqlite3 executemany: {best_bare:>10,.0f} rows/s  (median {median_bare:,.0f})")
    print(f"add_mailing (ours):       {best_ours:>10,.0f} rows/s  (median {median_ours:,.0f})")
    print(
        f"ratio ours / bare:        {best_ours / best_bare:>10.2f}  (median "
        f"{median_ours / median_bare:.2f})"
    )
    # processor time is less disturbed than wall time by other work on a shared machine
    cpu_ratio = rate(ours, min, "cpu_seconds") / rate(bare, min, "cpu_seconds")
    print(f"ratio in processor time:  {cpu_ratio:>10.2f}")
    peak = max(r["peak_kib"] for r in ours) / 1024
    before = max(r["before_kib"] for r in ours) / 1024
    longest = max(r["longest_write_seconds"] for r in ours)
    print(f"peak RSS of the import:   {peak:>10,.0f} MiB (whole process, {before:.0f} MiB before)")
    print(f"longest write transaction:{longest:>10.2f} s (the write lock held at most)")
    if old:
        old_peak = max(r["peak_kib"] for r in old) / 1024
        old_longest = max(r["longest_write_seconds"] for r in old)
        print(f"the import at {args.old} (a set of every address, one transaction):")
        print(f"  {rate(old, min):,.0f} rows/s; ours / old: {best_ours / rate(old, min):.2f}")
        print(f"  peak RSS {old_peak:,.0f} MiB; ours / old: {peak / old_peak:.2f}")
        print(
            f"  longest write transaction {old_longest:.2f} s;"
            f" ours / old: {longest / old_longest:.3f}"
        )
    if listed:
        # the same CSV read either way: rows of it per second, not rows imported
        slower = min(r["seconds"] for r in listed) / min(r["seconds"] for r in ours)
        median = statistics.median(r["seconds"] for r in listed) / statistics.median(
            r["seconds"] for r in ours
        )
        print(
            f"with {args.suppressed:,} addresses on the suppression list"
            f" ({listed[0]['suppressed']:,} of them in the CSV, dropped):"
        )
        print(f"  time with the list / without: {slower:.2f}  (median {median:.2f})")
        cpu = min(r["cpu_seconds"] for r in listed) / min(r["cpu_seconds"] for r in ours)
        print(f"  the same in processor time:   {cpu:.2f}")


if __name__ == "__main__":
    main()
