"""Whether it lands: VERP return paths, and bounces and complaints read back by
`sendstatus intake maildir:DIR` (a real subprocess) with their effects on the recipients,
the counters, the suppression list and the audit trail."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import sqlalchemy as sa
from sqlmodel import func, select

from sendstatus_tui.core.feedback.effects import Outcome, apply
from sendstatus_tui.core.model import signing
from sendstatus_tui.core.model.feedback import Report, ReportVerdict, classify
from sendstatus_tui.core.model.models import Feedback, Mailing, Recipient
from sendstatus_tui.core.model.verp import check_return_path, code_in, sign, verify
from sendstatus_tui.engine import message
from sendstatus_tui.engine.intake.parse import parse
from sendstatus_tui.engine.intake.run import BATCH

from .engine_processes import assert_books_balance
from .feedback_reports import arf, auto_reply, deliver, dsn, maildir, qmail_bounce
from .helpers import mailing, wait_until

RETURN_PATH = "bounces@bounce.example.com"


def intake(db_url: str, directory, *options: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "sendstatus_tui.cli.main", "--db", db_url, "intake"]
        + [f"maildir:{directory}", *options],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=os.environ.copy(),
    )


def finished(process: subprocess.Popen) -> tuple[str, str]:
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    return out, err


def as_json(run, *args):
    status, out, err = run(*args)
    assert status == 0, err
    return json.loads(out) if out.lstrip().startswith(("[", "{")) else out


# --- the codes and the message ---------------------------------------------------------


def test_a_code_names_mailing_and_recipient_and_nothing_else_verifies():
    key, other = b"k" * 32, b"o" * 32
    code = sign(key, 7, 123_456_789)
    assert code == code.lower() and verify(key, code.upper()) == (7, 123_456_789)
    assert verify(other, code) is None
    tampered = code[:-1] + ("a" if code[-1] != "a" else "b")
    assert verify(key, tampered) is None
    # every spelling of the last character but the code's own is refused, also those that
    # differ only in the bits the bytes do not use (they decode to the same bytes)
    for number in (1, 7, 300, 2**40):
        signed = sign(key, number, number)
        spellings = [signed[:-1] + last for last in "abcdefghijklmnopqrstuvwxyz234567"]
        assert [s for s in spellings if verify(key, s) is not None] == [signed]
    assert verify(key, "") is None and verify(key, "not base32!") is None
    longest = sign(key, 2**63 - 1, 2**63 - 1)
    address = f"bounces+{longest}@bounce.example.com"
    assert len(address.split("@")[0]) <= 64
    assert code_in(address.upper()) == longest
    assert check_return_path("Bounces@Bounce.Example.com") == RETURN_PATH


def test_without_a_return_path_the_message_is_byte_for_byte_as_before(monkeypatch):
    """The bytes below are what render() gave before return paths existed."""
    monkeypatch.setattr(message, "formatdate", lambda usegmt=True: "Mon, 04 Mar 2030 09:00:00 GMT")
    template = message.Template(
        mailing_id=7,
        subject="Hello {first_name}",
        sender="Shop <news@shop.example.com>",
        text_body="Hi {first_name}",
        html_body="<p>Hi {first_name}</p>",
        field_names=("first_name",),
        unsubscribe_url="https://shop.example.com/u/{email}",
        unsubscribe_mailto="unsubscribe@shop.example.com",
        boundary="=_sendstatus_fixed",
    )
    before = (
        b"From: Shop <news@shop.example.com>\r\nTo: ann@example.com\r\nSubject: Hello Ann\r\n"
        b"Date: Mon, 04 Mar 2030 09:00:00 GMT\r\n"
        b"Message-ID: <m7.r42.6fb44d7d504d375b@shop.example.com>\r\nMIME-Version: 1.0\r\n"
        b"List-Unsubscribe: <https://shop.example.com/u/ann%40example.com>,"
        b" <mailto:unsubscribe@shop.example.com>\r\n"
        b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
        b'Content-Type: multipart/alternative; boundary="=_sendstatus_fixed"\r\n\r\n'
        b"--=_sendstatus_fixed\r\n"
        b'Content-Type: text/plain; charset="utf-8"\r\n'
        b"Content-Transfer-Encoding: quoted-printable\r\n\r\nHi Ann\r\n--=_sendstatus_fixed\r\n"
        b'Content-Type: text/html; charset="utf-8"\r\n'
        b"Content-Transfer-Encoding: quoted-printable\r\n\r\n<p>Hi Ann</p>\r\n"
        b"--=_sendstatus_fixed--\r\n"
    )
    assert message.render(template, 42, "ann@example.com", '["Ann"]') == before
    assert template.envelope_sender(42) == "news@shop.example.com"


def test_classification():
    assert classify("failed", "5.1.1") == ReportVerdict.BOUNCE
    assert classify("failed", "5.2.1") == ReportVerdict.BOUNCE
    assert classify("failed", "5.4.4") == ReportVerdict.BOUNCE
    assert classify("failed", "5.7.1") == ReportVerdict.BLOCKED
    assert classify("failed", "5.2.2") == ReportVerdict.BLOCKED
    assert classify("delayed", "4.4.1") == ReportVerdict.SOFT
    assert classify("failed", "4.0.0") == ReportVerdict.SOFT
    assert classify("delivered", "2.0.0") == ReportVerdict.NOT_A_BOUNCE


def test_parsing_never_raises_and_reads_a_capped_twenty_megabytes():
    assert parse(b"\x00\xff garbage \r\n\r\n--").verdict == ReportVerdict.NOT_A_BOUNCE
    assert parse(b"Content-Type: multipart/report; boundary=x\r\n\r\n--x\r\n").verdict == (
        ReportVerdict.NOT_A_BOUNCE
    )
    original = b"X-Sendstatus-Recipient: abcdefgh\r\nSubject: hi\r\n\r\n" + b"A" * (20 << 20)
    big = dsn("bounces+abcdefgh@bounce.example.com", original)
    report = parse(big[: 1 << 20], truncated=True)
    assert report.verdict == ReportVerdict.BOUNCE and report.return_codes == ("abcdefgh",)


# --- end to end ----------------------------------------------------------------------------


def test_bounces_and_complaints_come_back_end_to_end(
    run, db_url, store, make_mailing, relay, engine_for, tmp_path
):
    assert run("config", "set", "return_path", RETURN_PATH)[0] == 0
    mailing_id = make_mailing(recipients=7)
    assert run("send-now", str(mailing_id))[0] == 0
    engine_for(relay)
    wait_until(lambda: mailing(store, mailing_id).state == "completed", what="completion")
    sent = {r.rcpt: r for r in relay.received}
    assert len(sent) == 7
    for received in sent.values():
        local, _, domain = received.mail_from.partition("@")
        assert domain == "bounce.example.com" and local.startswith("bounces+")
        assert len(local) <= 64
        assert b"X-Sendstatus-Recipient: " + local.split("+")[1].encode() in received.data
        assert b"Feedback-ID: " in received.data

    def verp(i):
        return sent[f"person{i}@example.com"].mail_from

    def original(i):
        return sent[f"person{i}@example.com"].data

    box = maildir(tmp_path / "bounces")
    hard = dsn(verp(0), original(0), final_recipient="person0@example.com")
    deliver(box, "1.hard", hard)
    deliver(box, "2.hard-again", hard)  # the same DSN delivered twice
    deliver(
        box,
        "3.blocked",
        dsn(verp(1), original(1), status="5.7.1", diagnostic="smtp; 550 5.7.1 blocked by policy"),
    )
    deliver(box, "4.soft", dsn(verp(2), original(2), action="delayed", status="4.4.1"))
    deliver(box, "5.complaint", arf("fbl@bounce.example.com", original(3)))
    deliver(box, "6.qmail", qmail_bounce(verp(4), "person4@example.com"))
    # forged: a code not signed by this database, in the return path and in a header
    forged = verp(5).replace("bounces+", "bounces+aa", 1)
    deliver(box, "7.forged-path", dsn(forged, b"Subject: x\r\n\r\n"))
    forged_header = original(6).replace(b"X-Sendstatus-Recipient: ", b"X-Sendstatus-Recipient: zz")
    deliver(box, "8.forged-header", arf("fbl@bounce.example.com", forged_header))
    deliver(box, "9.auto-reply", auto_reply(verp(5)))
    deliver(box, "10.malformed", b'Content-Type: multipart/report; boundary="\r\n\r\n\xff\xfe--')

    out, err = finished(intake(db_url, box))
    assert "10 processed: bounces 2 hard, 1 blocked, 1 soft; 1 complaints; 2 not a bounce;" in out
    assert "2 unmatched" in out and "1 duplicates" in out, out
    assert len(err.strip().splitlines()) >= 10  # one line per message
    assert os.listdir(box / "new") == [] and len(os.listdir(box / "cur")) == 10

    shown = as_json(run, "show", str(mailing_id), "--json")
    assert (shown["bounced"], shown["blocked"], shown["complained"]) == (2, 1, 1)
    assert (shown["sent"], shown["failed"]) == (4, 3)
    assert shown["failed_by_class"] == {"bounce": 2, "blocked": 1}
    # the stored minutes count what happened when: 7 accepted, then what came back
    assert shown["last_hour"] == {"sent": 7, "failed": 0, "bounced": 3, "complained": 1}
    listed = as_json(run, "ls", "--json")
    assert [(m["bounced"], m["blocked"], m["complained"]) for m in listed] == [(2, 1, 1)]
    assert_books_balance(store, mailing_id)

    suppressed = {e["address"]: e["reason"] for e in as_json(run, "suppress", "ls", "--json")}
    assert set(suppressed) == {"person0@example.com", "person3@example.com", "person4@example.com"}
    assert (
        "bounce" in suppressed["person0@example.com"]
        and "5.1.1" in suppressed["person0@example.com"]
    )
    assert "complaint" in suppressed["person3@example.com"]

    status, out, _ = run("failed", str(mailing_id), "--class", "bounce", "--json")
    rows = [json.loads(line) for line in out.splitlines()]
    assert {row["email"] for row in rows} == {"person0@example.com", "person4@example.com"}
    assert all("5.1.1" in row["reply"] for row in rows)
    status, out, _ = run("failed", str(mailing_id), "--class", "blocked", "--json")
    assert [json.loads(line)["email"] for line in out.splitlines()] == ["person1@example.com"]

    entries = [e for e in as_json(run, "log", "--json") if e["action"] == "feedback"]
    assert len(entries) == 1, entries
    assert entries[0]["detail"] == "2 bounces, 1 blocked, 1 complaint, 1 delayed"
    assert entries[0]["source"] == "intake"

    # retry never takes a bounce: not with --class all (nothing of 5xx or 4xx to retry
    # here), and --class bounce is no choice; blocked only when named
    status, _, err = run("retry", str(mailing_id), "--class", "all", "--yes")
    assert status == 1, err
    with pytest.raises(SystemExit) as refused:  # the parser's usage error
        run("retry", str(mailing_id), "--class", "bounce", "--yes")
    assert refused.value.code == 2
    assert run("retry", str(mailing_id), "--class", "blocked", "--yes")[0] == 0
    shown = as_json(run, "show", str(mailing_id), "--json")
    assert shown["failed_by_class"] == {"bounce": 2} and shown["blocked"] == 0

    # read again (e.g. copied back into new/): every message is a duplicate or no effect
    for name in os.listdir(box / "cur"):
        os.rename(box / "cur" / name, box / "new" / name.split(":")[0])
    out, _ = finished(intake(db_url, box))
    assert "bounces 0 hard, 0 blocked, 0 soft; 0 complaints" in out, out
    assert mailing(store, mailing_id).bounced == 2
    last_hour = as_json(run, "show", str(mailing_id), "--json")["last_hour"]
    assert (last_hour["bounced"], last_hour["complained"]) == (3, 1)  # nothing counted twice
    with store.read() as session:
        assert session.exec(select(func.count()).select_from(Feedback)).one() == 5


def test_a_forged_report_changes_nothing(store, make_mailing):
    mailing_id = make_mailing(recipients=1)
    with store.write() as session:
        session.execute(sa.update(Recipient).values(status="sent"))
        session.execute(sa.update(Mailing).values(sent=1))
        recipient_id = session.exec(select(Recipient.id)).one()
        key = signing.signing_key(session)
        good = sign(key, mailing_id, recipient_id)
        forged_code = sign(b"x" * 32, mailing_id, recipient_id)
        report = Report(ReportVerdict.BOUNCE, "message-id:<a@b>", return_codes=(forged_code,))
        assert apply(session, report).outcome == Outcome.UNMATCHED
        # a real code written only in the content (no header) is never looked at
        assert (
            apply(session, Report(ReportVerdict.BOUNCE, "x", why=good)).outcome == Outcome.UNMATCHED
        )
    assert mailing(store, mailing_id).sent == 1
    with store.write() as session:
        report = Report(ReportVerdict.BOUNCE, "message-id:<a@b>", header_codes=(good,))
        assert apply(session, report).outcome == Outcome.COUNTED
    with store.write() as session:
        assert apply(session, report).outcome == Outcome.DUPLICATE
    assert (mailing(store, mailing_id).sent, mailing(store, mailing_id).bounced) == (0, 1)


# --- crashes and concurrency -----------------------------------------------------------------


def _sent_mailing_with_bounces(store, make_mailing, box, count: int) -> int:
    """A mailing of ``count`` recipients counted sent, and a hard bounce for each in ``box``."""
    mailing_id = make_mailing(recipients=count)
    with store.write() as session:
        session.execute(sa.update(Recipient).values(status="sent"))
        session.execute(sa.update(Mailing).values(sent=count))
        key = signing.signing_key(session)
        ids = session.exec(select(Recipient.id).order_by(Recipient.id)).all()
    for recipient_id in ids:
        to = f"bounces+{sign(key, mailing_id, recipient_id)}@bounce.example.com"
        deliver(box, f"{recipient_id:06d}.dsn", dsn(to, b"Subject: x\r\n\r\n"))
    return mailing_id


def _each_bounced_once(store, mailing_id: int, count: int) -> None:
    with store.read() as session:
        rows = session.exec(
            select(Feedback.recipient_id, func.count()).group_by(Feedback.recipient_id)
        ).all()
    assert len(rows) == count and all(n == 1 for _, n in rows)
    m = assert_books_balance(store, mailing_id)
    assert (m.sent, m.failed, m.bounced) == (0, count, count)


@pytest.mark.slow  # kill -9 of an intake process half-way
def test_killed_mid_intake_then_run_again_each_effect_once(db_url, store, make_mailing, tmp_path):
    box = maildir(tmp_path / "bounces")
    # four batches (engine/intake/run.py: BATCH): the first ones' moves to cur/ are seen
    # while the last is read; with 150 (two), the intake, reading about 1,400 a second, had
    # once moved them all by the time the test looked again
    count = 4 * BATCH
    mailing_id = _sent_mailing_with_bounces(store, make_mailing, box, count)
    first = intake(db_url, box)
    wait_until(
        lambda: len(os.listdir(box / "cur")) >= 3, timeout=60, what="a few processed", every=0.005
    )
    first.send_signal(signal.SIGKILL)
    first.communicate()
    assert len(os.listdir(box / "new")) > 0, "killed too late to tell"
    out, _ = finished(intake(db_url, box))
    assert os.listdir(box / "new") == []
    _each_bounced_once(store, mailing_id, count)


@pytest.mark.slow  # two intake processes racing
def test_two_intakes_at_once_on_one_maildir(db_url, store, make_mailing, tmp_path):
    box = maildir(tmp_path / "bounces")
    count = 60
    mailing_id = _sent_mailing_with_bounces(store, make_mailing, box, count)
    both = [intake(db_url, box), intake(db_url, box)]
    outs = [finished(process)[0] for process in both]
    hard = [int(out.split("bounces ")[1].split(" hard")[0]) for out in outs]
    assert sum(hard) == count, outs
    assert os.listdir(box / "new") == [] and len(os.listdir(box / "cur")) == count
    _each_bounced_once(store, mailing_id, count)


def test_follow_stops_cleanly_on_sigterm(db_url, store, tmp_path):
    box = maildir(tmp_path / "bounces")
    process = intake(db_url, box, "--follow", "--interval", "0.2")
    deliver(box, "1.auto", auto_reply("bounces@bounce.example.com"))
    wait_until(lambda: len(os.listdir(box / "cur")) == 1, timeout=30, what="the message read")
    time.sleep(0.3)
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert "a pass every 0.2 s" in err
    assert "1 processed" in out and "1 not a bounce" in out
