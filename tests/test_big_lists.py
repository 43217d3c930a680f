"""Big lists (issue 8): imported in short transactions into a mailing that stays hidden
until complete, duplicates found by the database, nothing left by a refusal or an
interrupt, and what a killed import leaves removed by the next one."""

import json
import signal
import subprocess
import sys
import time
from datetime import timedelta

import pytest
import sqlalchemy as sa
from sqlmodel import func, select

from sendstatus_tui.core.importing import suppression
from sendstatus_tui.core.importing.drafts import (
    ABANDONED_AFTER,
    MailingDraft,
    add_mailing,
    remove_abandoned_imports,
)
from sendstatus_tui.core.importing.recipients import RecipientsRefused
from sendstatus_tui.core.model import lifecycle
from sendstatus_tui.core.model.models import Mailing, Recipient, utc_now
from sendstatus_tui.core.model.states import Area
from sendstatus_tui.core.reads.listing import list_mailings, list_pane_rows

from .helpers import wait_until, write_file

DRAFT = MailingDraft(name="Big", subject="Hi {name}", sender="news@shop.example.com", text_body="B")
# more rows than one transaction takes (core/recipients.py: 20,000)
SPANNING_ROWS = 45_000


def counts(store) -> tuple[int, int]:
    """(mailings, recipients) in the database, hidden ones included."""
    with store.read() as session:
        mailings = session.exec(select(func.count()).select_from(Mailing)).one()
        recipients = session.exec(select(func.count()).select_from(Recipient)).one()
    return mailings, recipients


def add(store, csv, **options):
    return add_mailing(store, DRAFT, csv, then=lambda session, mailing: None, **options)


def test_duplicates_in_different_transactions_are_dropped_and_counted(store, tmp_path):
    rows = [f"p{i}@example.com,P{i}" for i in range(SPANNING_ROWS)]
    # the repeats come two transactions after their first occurrence, in another case
    repeats = ["P1@EXAMPLE.com,again", "p40000@Example.COM,again", "p2@example.com,again"]
    csv = write_file(tmp_path, "p.csv", "email,name\n" + "\n".join(rows + repeats) + "\n")
    mailing, report, _ = add(store, csv)
    assert (report.imported, report.duplicates) == (SPANNING_ROWS, 3)
    assert counts(store) == (1, SPANNING_ROWS)
    with store.read() as session:
        shown = lifecycle.get(session, mailing.id)
        assert (shown.total, shown.importing) == (SPANNING_ROWS, False)
        first = session.exec(select(Recipient).where(Recipient.email == "p1@example.com")).one()
        assert json.loads(first.field_values) == ["P1"]  # the first occurrence is kept


def test_a_suppressed_address_and_its_repeats_are_counted_once_as_suppressed(store, tmp_path):
    with store.write() as session:
        suppression.add(session, ["gone@example.com"])
    csv = write_file(
        tmp_path,
        "p.csv",
        "email,name\ngone@example.com,G\nann@example.com,A\nGONE@example.com,G\n",
    )
    _, report, _ = add(store, csv)
    assert (report.imported, report.suppressed, report.duplicates) == (1, 1, 1)


def test_a_refused_file_leaves_nothing_though_batches_were_committed(store, tmp_path):
    good = "".join(f"p{i}@example.com,P\n" for i in range(SPANNING_ROWS))
    csv = write_file(tmp_path, "p.csv", "email,name\n" + good + "broken@,P\n")
    with pytest.raises(RecipientsRefused) as refused:
        add(store, csv)
    assert str(refused.value.errors[0]).startswith(f"line {SPANNING_ROWS + 2}: 'broken@'")
    assert "--skip-invalid imports the 45000 valid ones" in str(refused.value)
    assert counts(store) == (0, 0)


def test_an_error_in_the_send_choice_removes_the_imported_mailing(store, tmp_path):
    csv = write_file(tmp_path, "p.csv", "email,name\na@example.com,A\n")

    def refuse(session, mailing):
        raise lifecycle.MailingNotFound(mailing.id)

    with pytest.raises(lifecycle.MailingNotFound):
        add_mailing(store, DRAFT, csv, then=refuse)
    assert counts(store) == (0, 0)


def test_the_mailing_is_hidden_until_the_transaction_that_shows_it(store, tmp_path):
    csv = write_file(tmp_path, "p.csv", "email,name\na@example.com,A\nb@example.com,B\n")
    seen_meanwhile = []

    def look_from_elsewhere(session, mailing):
        with store.read() as other:  # another connection: what ls and the dashboard see
            seen_meanwhile.append(
                (
                    list_mailings(other),
                    list_pane_rows(other, tuple(Area)),
                    lifecycle.find(other, mailing.id),
                    other.get(Mailing, mailing.id).importing,
                )
            )

    mailing, _, _ = add_mailing(store, DRAFT, csv, then=look_from_elsewhere)
    assert seen_meanwhile == [([], [], None, True)]
    with store.read() as session:
        assert [m.id for m in list_mailings(session)] == [mailing.id]


def test_only_abandoned_imports_are_removed(store, tmp_path):
    hidden = _hidden_mailing(store)
    assert remove_abandoned_imports(store) == []  # touched just now: an import at work
    later = utc_now() + ABANDONED_AFTER + timedelta(seconds=1)
    assert remove_abandoned_imports(store, now=later) == [hidden]
    assert counts(store) == (0, 0)


def _hidden_mailing(store) -> int:
    """A mailing whose import never finished, with some recipients written."""
    with store.write() as session:
        mailing = Mailing(name="Big", subject="S", sender="news@shop.example.com", importing=True)
        session.add(mailing)
        session.flush()
        session.add_all(
            Recipient(mailing_id=mailing.id, email=f"p{i}@example.com", mailbox=f"p{i}@example.com")
            for i in range(3)
        )
        return mailing.id


# --- a real `sendstatus mailing add`, interrupted ---------------------------------------------

BIG_ROWS = 400_000  # a few seconds of import on this machine


@pytest.fixture(scope="module")
def big_csv(tmp_path_factory):
    path = tmp_path_factory.mktemp("big") / "big.csv"
    with open(path, "w", encoding="utf-8") as stream:
        stream.write("email,name\n")
        stream.writelines(f"person{i}@example.com,Person {i}\n" for i in range(BIG_ROWS))
    return path


def start_import(db_url, tmp_path, csv) -> subprocess.Popen:
    body = write_file(tmp_path, "body.txt", "Hello {name}\n")
    return subprocess.Popen(
        [sys.executable, "-m", "sendstatus_tui.cli.main", "--db", db_url, "mailing", "add",
         "--name", "Big", "--subject", "Hi", "--from", "news@shop.example.com",
         "--text", str(body), "--recipients", str(csv)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # as from a terminal: a shell's background job (pytest run with &) ignores SIGINT,
        # and so would the import, inheriting it
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip


def wait_for_recipients(store, process, at_least: int = 40_000) -> None:
    """Until the import has committed some batches (it is then mid-import)."""
    deadline = time.monotonic() + 60
    while counts(store)[1] < at_least:
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the import wrote nothing"
        time.sleep(0.05)


def visible(run) -> list[dict]:
    status, out, _ = run("ls", "--json")
    assert status == 0
    return json.loads(out)


@pytest.mark.parametrize("sent", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupted_import_removes_what_it_wrote(store, db_url, tmp_path, big_csv, sent, run):
    process = start_import(db_url, tmp_path, big_csv)
    wait_for_recipients(store, process)
    process.send_signal(sent)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130, (out, err)  # out: an import that ended before
    assert err.startswith("interrupted: removing the ")
    assert "nothing was changed" in err
    assert counts(store) == (0, 0)


def test_a_killed_import_stays_hidden_and_the_next_add_removes_it(
    store, db_url, tmp_path, big_csv, run
):
    process = start_import(db_url, tmp_path, big_csv)
    wait_for_recipients(store, process)
    process.kill()  # SIGKILL: no chance to clean up
    process.communicate(timeout=10)
    with store.read() as session:
        (hidden,) = session.exec(select(Mailing.id)).all()
    assert visible(run) == []
    status, _, err = run("send-now", str(hidden))
    assert (status, err) == (1, f"error: no mailing with id {hidden}\n")

    # an import killed long ago (its heartbeat is old): the next mailing add removes it
    with store.write() as session:
        session.execute(
            sa.update(Mailing).values(updated_at=utc_now() - ABANDONED_AFTER - timedelta(1))
        )
    small = write_file(tmp_path, "small.csv", "email,name\nann@example.com,Ann\n")
    body = write_file(tmp_path, "body.txt", "Hello {name}\n")
    status, out, err = run(
        "mailing", "add", "--name", "Small", "--subject", "Hi", "--from", "news@shop.example.com",
        "--text", str(body), "--recipients", str(small),
    )  # fmt: skip
    assert status == 0, err
    assert f"removed mailing {hidden}, whose import was interrupted" in err
    assert counts(store) == (1, 1)
    assert [m["name"] for m in visible(run)] == ["Small"]


def test_recipient_ids_beyond_32_bits(store, make_mailing):
    """64-bit on PostgreSQL (BIGINT and its sequence), as SQLite's INTEGER always was."""
    mailing_id = make_mailing(recipients=1)
    with store.write() as session:
        session.execute(sa.update(Recipient).values(id=2**40))
        if store.engine.dialect.name == "postgresql":
            session.execute(sa.text("SELECT setval('recipient_id_seq', :at)"), {"at": 2**40})
        session.add(Recipient(mailing_id=mailing_id, email="next@example.com"))
    with store.read() as session:
        assert session.exec(select(Recipient.id).order_by(Recipient.id)).all() == [
            2**40,
            2**40 + 1,
        ]


def test_the_leading_engine_removes_an_abandoned_import(store, engine_for, relay):
    """No `mailing add` comes after a killed import: the leader cleans up all the same."""
    hidden = _hidden_mailing(store)
    with store.write() as session:  # its import stopped being touched long ago
        session.get(Mailing, hidden).updated_at = utc_now() - ABANDONED_AFTER * 2
    engine_for(relay)
    wait_until(lambda: counts(store) == (0, 0), what="the abandoned import removed")
