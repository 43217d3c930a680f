"""The command line as an operator uses it: output, errors, exit status, nothing half-done."""

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest

from sendstatus_tui.cli.main import main
from sendstatus_tui.errors import mask_url

from .helpers import write_file

LS_FIELDS = {
    "id",
    "name",
    "state",
    "area",
    "mode",
    "position",
    "scheduled_at",
    "started_at",
    "finished_at",
    "total",
    "sent",
    "failed",
    "remaining",
}


@pytest.fixture
def files(tmp_path):
    body = write_file(tmp_path, "body.txt", "Hello {first_name}\n")
    csv = write_file(
        tmp_path,
        "people.csv",
        "email,first_name\nann@example.com,Ann\nbob@example.com,Bob\nANN@example.com,Ann again\n",
    )
    return tmp_path, body, csv


@pytest.fixture
def add(run, files):
    """Adds a mailing; returns its id."""
    _, body, csv = files

    def add_mailing(name: str, *plan: str) -> int:
        status, out, err = run(
            "mailing", "add", "--name", name, "--subject", "News for {first_name}",
            "--from", "Shop <news@shop.example.com>", "--text", str(body),
            "--recipients", str(csv), *plan,
        )  # fmt: skip
        assert status == 0, err
        return int(out.split()[1])

    return add_mailing


def listing(run, *args) -> list[dict]:
    status, out, err = run("ls", "--json", *args)
    assert status == 0, err
    return json.loads(out)


def assert_no_mailings(run) -> None:
    """No mailing exists: a first command that failed left no database behind (no SQLite
    file, no tables in PostgreSQL: ls says so), or the database lists none."""
    status, out, err = run("ls", "--json")
    if status == 1:
        assert out == ""
        assert err.startswith("error: no database at ") or "holds no sendstatus data yet" in err
    else:
        assert json.loads(out) == []


def by_id(run, mailing_id) -> dict:
    return next(m for m in listing(run) if m["id"] == mailing_id)


# within the ten years ahead that a time may be planned
NEXT_YEAR = datetime.now(UTC).year + 1


def future(minutes=60) -> str:
    return (datetime.now(UTC) + timedelta(minutes=minutes)).strftime("%Y-%m-%d %H:%M")


# --- mailing add ----------------------------------------------------------------------------


@pytest.mark.empty_database  # the first write creates it
def test_add_parks_by_default_and_counts_duplicates(run, files, db_url):
    _, body, csv = files
    status, out, err = run(
        "mailing", "add", "--name", "November news", "--subject", "Hi",
        "--from", "news@shop.example.com", "--text", str(body), "--recipients", str(csv),
    )  # fmt: skip
    assert (status, err) == (0, f"created database {mask_url(db_url)}\n")  # the first write
    assert "created with 2 recipients, 1 duplicate dropped" in out
    assert "parked in Sends to schedule" in out
    [mailing] = listing(run)
    assert set(mailing) >= LS_FIELDS
    assert (mailing["state"], mailing["area"], mailing["total"], mailing["remaining"]) == (
        "standby",
        "standby",
        2,
        2,
    )


def test_add_with_now_starts_up(add, run):
    mailing_id = add("Flash sale", "--now")
    mailing = by_id(run, mailing_id)
    assert (mailing["state"], mailing["area"], mailing["mode"]) == ("starting", "now", "immediate")


def test_add_at_a_time_in_a_given_zone(add, run):
    mailing_id = add("Advent", "--at", f"{NEXT_YEAR}-12-01 09:30", "--tz", "Europe/Rome")
    mailing = by_id(run, mailing_id)
    assert (mailing["state"], mailing["area"], mailing["mode"]) == ("scheduled", "scheduled", "at")
    assert mailing["scheduled_at"] == f"{NEXT_YEAR}-12-01T08:30:00Z"  # Rome is UTC+1 in December


@pytest.mark.parametrize(
    ("when", "zone", "message"),
    [
        ("2001-01-01 10:00", "UTC", "UTC); use send-now to send immediately"),
        # in the zone it was typed in, named, not in UTC
        ("2001-01-01 10:00", "Europe/Rome", "error: 2001-01-01 10:00 Europe/Rome is in the past"),
        ("0001-01-01 00:30", "Asia/Tokyo", "is in the past"),  # before year 1 in UTC
        ("9999-12-31 23:30", "America/New_York", "more than 10 years ahead"),
        ("2099-12-01 09:30", "Mars/Olympus", "unknown time zone 'Mars/Olympus'"),
        ("2099-02-30 10:00", "UTC", "not a date and time: '2099-02-30 10:00'"),
        ("next tuesday", "UTC", "not a date and time"),
        ("2099-12-01", "UTC", "has no time of day"),
    ],
)
def test_add_with_a_bad_time_creates_nothing(run, files, when, zone, message):
    _, body, csv = files
    status, out, err = run(
        "mailing", "add", "--name", "X", "--subject", "S", "--from", "a@shop.example.com",
        "--text", str(body), "--recipients", str(csv), "--at", when, "--tz", zone,
    )  # fmt: skip
    assert status == 1 and out == ""
    assert err.startswith("error: ") and message in err
    assert len(err.strip().splitlines()) == 1
    assert_no_mailings(run)


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--subject", "Hi\r\nBcc: victim@example.com", "subject: must be a single line"),
        ("--name", "two\nlines", "name: must be a single line"),
        ("--from", "Shop <news@shop.example.com>\nBcc: x@y.com", "from: must be a single line"),
        ("--from", "not an address", "from: not a sender address"),
        ("--from", "a@x.com, b@y.com", "from: not a sender address"),
    ],
)
def test_header_injection_and_bad_senders_are_refused(run, files, option, value, message):
    _, body, csv = files
    values = {"--name": "N", "--subject": "S", "--from": "news@shop.example.com", option: value}
    args = [item for pair in values.items() for item in pair]
    status, _, err = run("mailing", "add", *args, "--text", str(body), "--recipients", str(csv))
    assert status == 1 and err.startswith("error: ") and message in err
    assert_no_mailings(run)


def test_invalid_rows_refuse_the_whole_file_with_line_numbers(run, files, tmp_path):
    _, body, _ = files
    csv = write_file(
        tmp_path,
        "mixed.csv",
        "email,first_name\nok@example.com,Ok\nnot-an-address,No\n"
        '"evil@example.com\nBcc: x@y.com",Eve\ngood@example.com,Good\n',
    )
    common = ["mailing", "add", "--name", "N", "--subject", "S", "--from", "a@shop.example.com"]
    status, out, err = run(*common, "--text", str(body), "--recipients", str(csv))
    assert status == 1 and out == ""
    lines = err.splitlines()
    assert lines[0] == (
        f"error: {csv}: 2 invalid rows, nothing imported (--skip-invalid imports the 2 valid ones)"
    )
    assert lines[1].startswith("  line 3: 'not-an-address': ")
    assert lines[2].startswith("  line 5: ")  # the quoted address spans lines 4-5
    assert_no_mailings(run)

    status, out, err = run(*common, "--text", str(body), "--recipients", str(csv), "--skip-invalid")
    assert status == 0
    assert "created with 2 recipients" in out
    assert err.startswith("warning: skipped 2 invalid rows:")
    assert listing(run)[0]["total"] == 2


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "empty file"),
        ("name,city\nAnn,Rome\n", "no 'email' column in the header row (name, city)"),
        ("email,EMAIL\na@example.com,b@example.com\n", "repeated columns in the header: email"),
        ('email\n"unterminated@example.com\n', "malformed CSV"),
        ("email\n\n", "no valid recipients"),
    ],
)
def test_unusable_csv_files_are_refused(run, tmp_path, content, message):
    # a body without placeholders: a placeholder the file lacks is refused first (right
    # after the header, before any row is read)
    body = write_file(tmp_path, "body.txt", "Hello\n")
    csv = write_file(tmp_path, "bad.csv", content)
    status, _, err = run(
        "mailing", "add", "--name", "N", "--subject", "S", "--from", "a@shop.example.com",
        "--text", str(body), "--recipients", str(csv),
    )  # fmt: skip
    assert status == 1 and err.startswith("error: ") and message in err
    assert_no_mailings(run)


def test_missing_files_are_named(run, files, tmp_path):
    _, body, csv = files
    common = ["mailing", "add", "--name", "N", "--subject", "S", "--from", "a@shop.example.com"]
    status, _, err = run(*common, "--text", str(tmp_path / "nope.txt"), "--recipients", str(csv))
    assert status == 1 and "text: " in err and "nope.txt: no such file" in err
    status, _, err = run(*common, "--text", str(body), "--recipients", str(tmp_path / "no.csv"))
    assert status == 1 and "no.csv: no such file" in err
    status, _, err = run(*common, "--recipients", str(csv))
    assert status == 1 and "body: a text body, an HTML body or both are needed" in err
    assert_no_mailings(run)


# --- planning and steering ------------------------------------------------------------------


def test_send_now_schedule_stop_and_rm(add, run):
    mailing_id = add("Weekly")
    status, out, _ = run("schedule", str(mailing_id), "--at", future(), "--tz", "UTC")
    assert status == 0 and "scheduled at" in out
    assert by_id(run, mailing_id)["area"] == "scheduled"

    assert run("send-now", str(mailing_id))[0] == 0
    assert by_id(run, mailing_id)["state"] == "starting"

    status, _, err = run("rm", str(mailing_id), "--yes")
    assert status == 1
    assert err == f"error: cannot delete mailing {mailing_id}: it is starting up" + (
        " (delete applies to a mailing that is parked)\n"
    )

    assert run("stop", str(mailing_id))[0] == 0
    assert by_id(run, mailing_id)["reason"] == "stopped by an operator"
    assert by_id(run, mailing_id)["mode"] is None  # parked: no mode; show tells the last plan
    status, out, _ = run("show", str(mailing_id))
    assert "  Was planned:    immediate\n" in out
    assert run("rm", str(mailing_id), "--yes")[0] == 0
    assert_no_mailings(run)


def test_rm_without_a_terminal_needs_yes(add, run):
    mailing_id = add("Keep me")
    status, _, err = run("rm", str(mailing_id))
    assert status == 1 and "pass --yes to confirm" in err
    assert by_id(run, mailing_id)["state"] == "standby"


def test_sequential_warning_names_what_is_ahead(add, run):
    first = add("First", "--sequential")  # nothing ahead: no warning, starts at once
    assert by_id(run, first)["state"] == "starting"
    second = add("Second")

    status, _, err = run("schedule", str(second), "--sequential")
    assert status == 1  # no terminal and no --yes: refused
    assert f"{first} 'First' (starting up)" in err
    assert "will be number 1 in the sequential queue" in err
    assert "pass --yes to confirm" in err
    assert by_id(run, second)["state"] == "standby"

    status, out, err = run("schedule", str(second), "--sequential", "--yes")
    assert status == 0 and "queued sequentially at position 1" in out
    assert err.startswith("warning: other sequential mailings are in progress or queued")

    third = add("Third", "--sequential", "--yes")
    assert by_id(run, third)["position"] == 2


def test_sequential_add_asks_when_a_terminal_is_there(add, run, monkeypatch):
    add("First", "--sequential")
    monkeypatch.setattr(sys.stdin, "isatty", lambda: True)
    monkeypatch.setattr("builtins.input", lambda prompt: "n")
    status, _, err = run(
        "mailing", "add", "--name", "Declined", "--subject", "S", "--from", "a@shop.example.com",
        "--text", __file__, "--recipients", __file__, "--sequential",
    )  # fmt: skip
    assert status == 1 and "not confirmed; nothing changed" in err
    assert [m["name"] for m in listing(run)] == ["First"]


def test_move_reorders_the_queue(add, run):
    add("Head", "--sequential")
    a, b, c = (add(name, "--sequential", "--yes") for name in "abc")
    status, out, _ = run("move", str(c), "top")
    assert status == 0 and out.strip() == f"mailing {c}: position 1 in the sequential queue"
    queued = listing(run, "--area", "scheduled")
    assert [(m["id"], m["position"]) for m in queued] == [(c, 1), (a, 2), (b, 3)]
    # a move that changes nothing says so, and records nothing
    moves_logged = run("log", str(c))[1].count("moved")
    status, out, _ = run("move", str(c), "up")
    assert status == 0 and out.strip() == (
        f"mailing {c} is already first in the sequential queue: nothing changed"
    )
    assert run("log", str(c))[1].count("moved") == moves_logged == 1


def test_unknown_mailing_and_bad_ids(run):
    assert run("init")[0] == 0
    status, _, err = run("stop", "42")
    assert (status, err) == (1, "error: no mailing with id 42\n")
    with pytest.raises(SystemExit) as usage:
        run("stop", "abc")
    assert usage.value.code == 2


# --- ls and show ----------------------------------------------------------------------------


def test_ls_reads_like_the_dashboard(add, run):
    add("Sending one", "--now")
    add("Later one", "--at", f"{NEXT_YEAR}-01-01 08:00", "--tz", "UTC")
    add("Head", "--sequential")
    add("Waiting", "--sequential", "--yes")
    add("Parked one")
    status, out, _ = run("ls", "--tz", "UTC")
    assert status == 0
    assert out.splitlines()[0] == "Sending now (2)"
    assert "Scheduled sendings (2)" in out and "Sends to schedule (1)" in out
    assert "paused: no engine" in out  # as the dashboard says it: no engine runs here
    assert f"{NEXT_YEAR}-01-01 08:00" in out and "queue #1" in out
    assert "decided later" in out
    sections = out.split("\n\n")
    assert "Sending one" in sections[0] and "Head" in sections[0]
    assert "Later one" in sections[1] and "Waiting" in sections[1]
    assert "Parked one" in sections[2]


def test_ls_json_area_filter_and_show(add, run):
    parked = add("Parked")
    add("Now", "--now")
    assert [m["name"] for m in listing(run, "--area", "standby")] == ["Parked"]
    assert [m["name"] for m in listing(run, "--area", "now")] == ["Now"]
    status, out, _ = run("show", str(parked), "--json")
    details = json.loads(out)
    assert status == 0 and set(details) >= LS_FIELDS
    assert details["recipients"] == {"pending": 2}
    assert details["fields"] == ["first_name"]
    assert details["subject"] == "News for {first_name}"
    status, out, _ = run("show", str(parked))
    assert status == 0 and "Recipients:     2 total, 0 sent, 0 failed, 2 remaining" in out


def test_ls_does_not_import_the_dashboard(tmp_path):
    """`sendstatus ls` must start fast enough for a shell loop: no textual import, nor the
    engine's scheduler, nor the HTTP client and server that only `serve` and a webhook
    need."""
    code = (
        "import sys; from sendstatus_tui.cli.main import main;"
        f" main(['--db', 'sqlite:///{tmp_path}/s.db', 'ls']);"
        " print([m for m in ('textual', 'apscheduler', 'aiohttp') if m in sys.modules])"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "[]"


def test_an_engine_without_a_webhook_does_not_import_the_http_client():
    """Every engine process starts without aiohttp (a third of a second) unless it posts."""
    code = (
        "import sys; import sendstatus_tui.cli.main, sendstatus_tui.engine.headless;"
        " print('aiohttp' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "False"


def test_the_installed_command_runs(tmp_path):
    for command in ("init", "ls"):
        result = subprocess.run(
            [sys.executable, "-m", "sendstatus_tui.cli.main", "--db", f"sqlite:///{tmp_path}/s.db"]
            + [command],
            capture_output=True,
            text=True,
        )
        assert result.returncode == 0, result.stderr
    assert "Sending now (0)" in result.stdout


def test_a_reader_that_leaves_the_pipe_early_gets_no_traceback(db_url, make_mailing):
    """`sendstatus ls | head -1`: once head has its line, ls ends quietly."""
    for _ in range(3):
        make_mailing()
    process = subprocess.Popen(
        [sys.executable, "-m", "sendstatus_tui.cli.main", "--db", db_url, "ls"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None and process.stderr is not None
    process.stdout.close()  # before it writes: every write meets a closed pipe
    err = process.stderr.read()
    assert process.wait(timeout=60) == 141, err
    assert err == ""


def test_a_database_that_cannot_be_opened(capsys):
    status = main(["--db", "postgresql+psycopg://nobody@127.0.0.1:1/none", "ls"])
    err = capsys.readouterr().err
    assert status == 1 and err.startswith("error: cannot open database")
    assert len(err.strip().splitlines()) == 1


def test_placeholders_must_be_csv_columns(run, files):
    _, body, csv = files
    status, _, err = run(
        "mailing", "add", "--name", "N", "--subject", "Hi {first_name} from {city}",
        "--from", "a@shop.example.com", "--text", str(body), "--recipients", str(csv),
    )  # fmt: skip
    assert status == 1
    assert err == (
        "error: subject: {city} is not a column of the recipients CSV (it has: email, first_name)\n"
    )
    assert_no_mailings(run)


def test_a_stored_date_at_the_end_of_the_calendar_never_crashes_a_view(add, run, db_url):
    """Refused at entry now, but a database may hold one (entered by an older version)."""
    from sendstatus_tui.core.model.models import Mailing
    from sendstatus_tui.core.store.store import Store

    mailing_id = add("Far")
    store = Store(db_url)
    with store.write() as session:
        mailing = session.get(Mailing, mailing_id)
        mailing.state, mailing.mode = "scheduled", "at"
        mailing.scheduled_at = datetime(9999, 12, 31, 23, 59, tzinfo=UTC)
    store.dispose()
    for zone in ("Asia/Tokyo", "Europe/Rome", "UTC", "America/New_York"):
        status, out, err = run("ls", "--tz", zone)
        assert (status, err) == (0, ""), err
        assert "Far" in out and "9999-12-31" in out
        status, out, err = run("show", str(mailing_id), "--tz", zone)
        assert (status, err) == (0, ""), err
        assert "Scheduled at:   9999-12-31" in out
    assert by_id(run, mailing_id)["scheduled_at"] == "9999-12-31T23:59:00Z"


def test_rm_waits_until_no_engine_holds_its_recipients(add, run, db_url):
    """Issue 7 item 11: stopped while a batch was out, a mailing cannot be deleted until
    the engine has recorded that batch (deleting it then broke the engine)."""
    import sqlalchemy as sa

    from sendstatus_tui.core.store.store import Store

    mailing_id = add("Busy", "--now")
    store = Store(db_url)

    def set_status(status: str) -> None:
        # what an engine's claim does to a recipient, and its record undoes
        with store.write() as session:
            session.execute(
                sa.text("UPDATE recipient SET status = :status WHERE id = ("
                        "SELECT MIN(id) FROM recipient WHERE mailing_id = :m)"),
                {"status": status, "m": mailing_id},
            )  # fmt: skip

    set_status("in_flight")
    assert run("stop", str(mailing_id))[0] == 0
    status, _, err = run("rm", str(mailing_id), "--yes")
    assert (status, err) == (
        1,
        f"error: cannot delete mailing {mailing_id} yet: an engine is still handing 1 of its"
        " recipients to the relay; try again in a few seconds\n",
    )
    assert by_id(run, mailing_id)["state"] == "standby"
    set_status("pending")
    assert run("rm", str(mailing_id), "--yes")[0] == 0
    assert_no_mailings(run)
    store.dispose()


def test_every_time_printed_names_its_zone(add, run):
    mailing_id = add("Zoned", "--at", f"{NEXT_YEAR}-01-10 16:25", "--tz", "Europe/Rome")
    status, out, _ = run(
        "schedule", str(mailing_id), "--at", f"{NEXT_YEAR}-01-11 09:00", "--tz", "Europe/Rome"
    )
    assert (
        out == f"mailing {mailing_id} 'Zoned': scheduled at {NEXT_YEAR}-01-11 09:00 Europe/Rome\n"
    )
    _, out, _ = run("ls", "--tz", "Europe/Rome")
    assert "WHEN (Europe/Rome)" in out and f"{NEXT_YEAR}-01-11 09:00" in out
    _, out, _ = run("show", str(mailing_id), "--tz", "Europe/Rome")
    assert f"Scheduled at:   {NEXT_YEAR}-01-11 09:00 Europe/Rome" in out
    assert "State:          scheduled" in out
    # the same moment for an operator in UTC: 08:00, and named so
    _, out, _ = run("show", str(mailing_id), "--tz", "UTC")
    assert f"Scheduled at:   {NEXT_YEAR}-01-11 08:00 UTC" in out


def test_a_scheduled_mailing_keeps_the_zone_it_was_typed_in(add, run):
    mailing_id = add("Launch", "--at", f"{NEXT_YEAR}-01-04 09:00", "--tz", "America/New_York")
    # an operator in Rome reads it in Rome's time, with the time as it was typed beside it
    typed = f"(planned as {NEXT_YEAR}-01-04 09:00 America/New_York)"
    _, out, _ = run("show", str(mailing_id), "--tz", "Europe/Rome")
    assert f"Scheduled at:   {NEXT_YEAR}-01-04 15:00 Europe/Rome {typed}" in out
    _, out, _ = run("ls", "--tz", "Europe/Rome")
    assert f"{NEXT_YEAR}-01-04 15:00 {typed}" in out
    assert by_id(run, mailing_id)["scheduled_zone"] == "America/New_York"
    # the operator who typed it sees it once, in their own zone
    _, out, _ = run("show", str(mailing_id), "--tz", "America/New_York")
    assert f"Scheduled at:   {NEXT_YEAR}-01-04 09:00 America/New_York\n" in out
    # a time typed with its own offset names no zone; rescheduling forgets the old one
    run("schedule", str(mailing_id), "--at", f"{NEXT_YEAR}-01-05T10:00+01:00", "--tz", "UTC")
    assert by_id(run, mailing_id)["scheduled_zone"] is None
    _, out, _ = run("show", str(mailing_id), "--tz", "Europe/Rome")
    assert f"Scheduled at:   {NEXT_YEAR}-01-05 10:00 Europe/Rome\n" in out
    # parked, it keeps no zone either
    assert run("stop", str(mailing_id))[0] == 0
    assert by_id(run, mailing_id)["scheduled_zone"] is None


def test_the_add_echo_names_the_zone(run, files):
    _, body, csv = files
    status, out, _ = run(
        "mailing", "add", "--name", "Echo", "--subject", "S", "--from", "a@shop.example.com",
        "--text", str(body), "--recipients", str(csv), "--at", f"{NEXT_YEAR}-03-01 10:00",
        "--tz", "America/New_York",
    )  # fmt: skip
    assert status == 0 and out.endswith(f"scheduled at {NEXT_YEAR}-03-01 10:00 America/New_York\n")
