"""The engine against a real SMTP server on loopback."""

import email
import email.policy
import gc
import re
import time
from dataclasses import replace
from datetime import timedelta

import pytest

from sendstatus_tui.core.model import lifecycle
from sendstatus_tui.engine.collector import SENDING_THRESHOLDS
from sendstatus_tui.engine.engine import Engine
from sendstatus_tui.engine.thread import EngineThread
from sendstatus_tui.engine.transports import transport_for

from .helpers import FAST, act, add_mailing, mailing, stop_engine_thread, wait_until
from .smtp_relay import RelayScript, SmtpRelay


def test_send_now_delivers_personalised_messages(store, make_mailing, relay, engine_for):
    mailing_id = make_mailing(recipients=5)
    act(store, lifecycle.send_now, mailing_id)
    engine_for(relay)
    wait_until(lambda: mailing(store, mailing_id).state == "completed", what="completion")
    done = mailing(store, mailing_id)
    assert (done.sent, done.failed, done.remaining) == (5, 0, 0)
    assert sorted(relay.recipients()) == [f"person{i}@example.com" for i in range(5)]
    first = next(r for r in relay.received if r.rcpt == "person0@example.com")
    message = email.message_from_bytes(first.data, policy=email.policy.default)
    assert message["Subject"] == "Hello Person 0"
    assert message.get_body(("plain",)).get_content().strip() == "Hi Person 0"
    assert message["Message-ID"].startswith(f"<m{mailing_id}.r")
    assert first.mail_from == "news@shop.example.com"


@pytest.fixture
def python_default_collector():
    """The collector as Python starts it (another test's engine may have set it)."""
    kept = gc.get_threshold()
    gc.set_threshold(700, 10, 10)
    yield
    gc.set_threshold(*kept)


def test_a_process_hosting_the_engine_collects_young_objects_less_often(
    store, relay, engine_for, python_default_collector
):
    """Collected every 700 allocations, a batch's objects are alive, get promoted, and
    end in full collections that stop the dashboard's thread too (engine/collector.py)."""
    engine_for(relay)
    assert gc.get_threshold() == SENDING_THRESHOLDS


@pytest.mark.parametrize("smtputf8", [True, False])
def test_an_internationalised_address(store, tmp_path, engine_for, smtputf8):
    """An address whose local part is not ASCII needs SMTPUTF8: a relay that offers it
    takes it; without it, that one recipient is not sent, and the mailing still completes."""
    people = ["ann@example.com", "jörg@bücher.example", "bob@example.com"]
    idn = dict(name="IDN", sender="a@shop.example.com", subject="Hi", text_body="B")
    mailing_id = add_mailing(store, tmp_path, people, **idn)
    with store.write() as session:
        lifecycle.send_now(session, mailing_id)
    relay = SmtpRelay(smtputf8=smtputf8).start()
    try:
        engine_for(relay)
        wait_until(lambda: mailing(store, mailing_id).state == "completed", what="completion")
    finally:
        relay.stop()
    done = mailing(store, mailing_id)
    delivered = ["ann@example.com", "bob@example.com"] + (["jörg@bücher.example"] * smtputf8)
    assert sorted(relay.recipients()) == sorted(delivered)
    assert (done.sent, done.failed) == ((3, 0) if smtputf8 else (2, 1))


def test_internationalised_domains_to_a_relay_without_smtputf8(store, tmp_path, engine_for):
    """Issue 7 item 7: both spellings of one domain are one mailbox; each address is kept
    as imported; a relay without SMTPUTF8 gets the domain in ASCII (IDNA), and a local part
    that needs SMTPUTF8 is not sent, with a reason that no relay wrote."""
    from email import message_from_bytes

    from sendstatus_tui.core.importing.drafts import MailingDraft, create_mailing
    from sendstatus_tui.core.reads.details import read_details

    csv = tmp_path / "people.csv"
    csv.write_text(
        "email\nuser@xn--mnchen-3ya.de\nUser@München.de\nanna@münchen.de\njörg@münchen.de\n"
    )
    draft = MailingDraft(name="IDN", subject="Hi", sender="news@bücher.example", text_body="B")
    with store.write() as session:
        created, report = create_mailing(session, draft, csv)
        lifecycle.send_now(session, created.id)
    assert (report.imported, report.duplicates) == (3, 1)
    relay = SmtpRelay(smtputf8=False).start()
    try:
        engine_for(relay)
        wait_until(lambda: mailing(store, created.id).state == "completed", what="completion")
    finally:
        relay.stop()
    with store.read() as session:
        shown = read_details(session, mailing(store, created.id)).as_json()
    assert (shown["sent"], shown["failed"]) == (2, 1)
    assert shown["failed_by_class"] == {"error": 1}  # refused by us, not by the relay
    assert sorted(relay.recipients()) == ["anna@xn--mnchen-3ya.de", "user@xn--mnchen-3ya.de"]
    assert {r.mail_from for r in relay.received} == {"news@xn--bcher-kva.example"}
    headers = {message_from_bytes(r.data)["To"] for r in relay.received}
    assert headers == {"anna@xn--mnchen-3ya.de", "user@xn--mnchen-3ya.de"}
    [error] = shown["last_errors"]
    assert error["email"] == "jörg@münchen.de"
    assert error["reply"].startswith("not sent: the relay does not offer SMTPUTF8")
    assert re.search(r"\b[2-5]\d\d\b", error["reply"]) is None  # no relay reply code


@pytest.mark.parametrize("given", ["default", "new", "empty"])
def test_the_maildir_is_created_with_its_parents(store, make_mailing, tmp_path, monkeypatch, given):
    """Issue 7 item 10: on a fresh machine the default maildir's parents do not exist yet;
    a directory an operator made for it is empty."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "fresh" / "data"))
    directory = tmp_path / "fresh" / "data" / "sendstatus" / "maildir"
    if given != "default":
        directory = tmp_path / "not" / "yet" / "there" / "maildir"
    if given == "empty":
        directory.mkdir(parents=True)
    mailing_id = make_mailing(recipients=2)
    act(store, lifecycle.send_now, mailing_id)
    url = None if given == "default" else f"maildir:{directory}"
    thread = EngineThread(Engine(store, transport_for(url), FAST)).start()
    try:
        wait_until(lambda: mailing(store, mailing_id).state == "completed", what="completion")
    finally:
        stop_engine_thread(thread)
    assert len(list((directory / "new").iterdir())) == 2


@pytest.mark.slow  # a measurement of time
def test_a_time_that_passed_while_no_engine_ran_starts_when_one_comes(
    store, make_mailing, relay, engine_for
):
    """Nothing scheduled is dropped: the engine starts what fell due while it was down."""
    mailing_id = make_mailing(recipients=2)
    due = lifecycle.utc_now() + timedelta(seconds=0.3)
    act(store, lifecycle.schedule_at, mailing_id, due)
    # its time passes with no engine running
    wait_until(lambda: lifecycle.utc_now() > due + timedelta(seconds=0.3), what="the time")
    assert mailing(store, mailing_id).state == "scheduled"
    started = time.monotonic()
    engine_for(relay)
    wait_until(lambda: mailing(store, mailing_id).state != "scheduled", what="the late start")
    # at once: the engine's first beat takes the lease, and its next reconcile starts what
    # is due: a beat and a reconcile, late by up to a lease in all on a busy machine (an
    # engine later than that would lose its lease, a failure of its own)
    bound = FAST.lease_renew_seconds + FAST.reconcile_seconds + FAST.lease_ttl.total_seconds()
    assert time.monotonic() - started < bound
    wait_until(lambda: mailing(store, mailing_id).state == "completed", what="completion")
    assert sorted(relay.recipients()) == ["person0@example.com", "person1@example.com"]


def test_an_engine_not_stopped_in_time_logs_where_its_tasks_wait(
    store, make_mailing, relays, caplog
):
    """Stopped while the relay holds its messages unanswered (the stop waits the grace plus
    one relay timeout for them), asked to stop within 0.3 s: the log says it did not, and
    where its tasks wait, for a bug report; it stops all the same afterwards."""
    relay = relays(RelayScript(data_fault_default="hang"))
    mailing_id = make_mailing(recipients=20)
    act(store, lifecycle.send_now, mailing_id)
    settings = replace(FAST, stop_grace_seconds=0.5)
    thread = EngineThread(Engine(store, transport_for(f"{relay.url}&timeout=2"), settings))
    thread.start()
    wait_until(lambda: relay.recipients(), what="a message held unanswered")
    thread.stop(timeout=0.3)
    assert thread.alive
    said = [r.getMessage() for r in caplog.records if "did not stop" in r.getMessage()]
    assert len(said) == 1 and said[0].startswith("the engine did not stop within 0.3 s"), said
    # the sends the relay holds, awaiting its replies, counted together
    assert re.search(r"^\d+ task\(s\) at:\n.*sending.py:\d+ in _send_one\n", said[0], re.M), said[0]
    stop_engine_thread(thread)
