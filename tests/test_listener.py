"""Whether it lands, pushed: `sendstatus intake smtp://HOST:PORT` (a real subprocess, fed
with smtplib) takes only the addresses sendstatus sends from, applies each report before it
says 250, and stops cleanly; `sendstatus engine --intake SOURCE` reads bounces beside the
sending, and under --workers runs one intake, not one per worker."""

import json
import os
import signal
import smtplib
import subprocess
import sys
import threading
from contextlib import contextmanager
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlmodel import select

from sendstatus_tui.core.model import settings, signing
from sendstatus_tui.core.model.models import Mailing, Recipient
from sendstatus_tui.core.store.store import Store, StoreError
from sendstatus_tui.engine.intake.listener import SmtpListener
from sendstatus_tui.engine.intake.run import run_intake

from .engine_processes import EngineProcesses, children_of
from .feedback_reports import arf, deliver, dsn, maildir
from .helpers import add_mailing, mailing, wait_until

RETURN_PATH = "bounces@bounce.example.com"
COMPLAINTS = "fbl@bounce.example.com"
STARTING = 30.0  # seconds for a Python process to start on a busy machine


def wire(data: bytes) -> bytes:
    """``data`` with CRLF line ends, as on the wire (smtplib fixes only a str's)."""
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def as_json(run, *args):
    status, out, err = run(*args)
    assert status == 0, err
    return json.loads(out)


def counters(run, mailing_id) -> tuple[int, int, int, int, int]:
    shown = as_json(run, "show", str(mailing_id), "--json")
    return (
        shown["sent"],
        shown["failed"],
        shown["bounced"],
        shown["blocked"],
        shown["complained"],
    )


def suppressed(run) -> set[str]:
    return {entry["address"] for entry in as_json(run, "suppress", "ls", "--json")}


class ListenerProcess:
    """`sendstatus intake smtp://127.0.0.1:0`: the system picks a free port, which the
    listener's first line on stderr names."""

    def __init__(self, db_url: str, *options: str):
        self.process = subprocess.Popen(
            [sys.executable, "-m", "sendstatus_tui.cli.main", "--db", db_url, "intake"]
            + ["smtp://127.0.0.1:0", *options],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.process.stderr is not None
        first = self.process.stderr.readline()
        assert first.startswith("listening on smtp://127.0.0.1:"), first
        self.port = int(first.split("smtp://127.0.0.1:")[1].split(";")[0])

    def client(self) -> smtplib.SMTP:
        return smtplib.SMTP("127.0.0.1", self.port, timeout=60)

    def stop(self) -> tuple[int, str, str]:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        out, err = self.process.communicate(timeout=60)
        return self.process.returncode, out, err


@pytest.fixture
def listener(db_url):
    started: list[ListenerProcess] = []

    def start(*options: str) -> ListenerProcess:
        started.append(ListenerProcess(db_url, *options))
        return started[-1]

    yield start
    for process in started:
        if process.process.poll() is None:
            process.process.kill()
            process.process.wait()


@pytest.fixture
def sent_mailing(run, store, make_mailing, relay, engine_for):
    """A mailing of 5 sent through the engine with the return path set; returns its id and,
    per recipient, what the relay got (envelope sender and message)."""
    assert run("config", "set", "return_path", RETURN_PATH)[0] == 0
    assert run("config", "set", "complaints_address", COMPLAINTS)[0] == 0
    mailing_id = make_mailing(recipients=5)
    assert run("send-now", str(mailing_id))[0] == 0
    engine_for(relay)
    wait_until(lambda: mailing(store, mailing_id).state == "completed", what="completion")
    return mailing_id, {received.rcpt: received for received in relay.received}


def test_the_listener_takes_only_our_addresses_and_applies_before_it_says_250(
    run, listener, sent_mailing
):
    mailing_id, sent = sent_mailing
    person = [sent[f"person{i}@example.com"] for i in range(5)]
    assert counters(run, mailing_id) == (5, 0, 0, 0, 0)
    smtp = listener()

    with smtp.client() as client:
        # a hard bounce to the recipient's own VERP address: applied before the 250
        hard = wire(dsn(person[0].mail_from, person[0].data))
        assert client.sendmail("", [person[0].mail_from], hard) == {}
        assert counters(run, mailing_id) == (4, 1, 1, 0, 0)
        assert "person0@example.com" in suppressed(run)
        # the same report again (the sender never got our reply): accepted, counted once
        assert client.sendmail("", [person[0].mail_from], hard) == {}
        assert counters(run, mailing_id) == (4, 1, 1, 0, 0)

        # forged and foreign addresses are refused at RCPT: no open relay, no backscatter
        forged = person[1].mail_from.replace("bounces+", "bounces+aa", 1)
        other_code = person[1].mail_from.replace("bounces+", "news+", 1)
        for address in (
            forged,
            other_code,
            "someone@example.org",
            "postmaster@bounce.example.com",
            f"bounces+{person[1].mail_from.split('+')[1].split('@')[0]}@elsewhere.example",
        ):
            assert client.mail("")[0] == 250
            code, reply = client.rcpt(address)
            assert (code, reply[:5]) == (550, b"5.1.1"), (address, code, reply)
            client.rset()
        with pytest.raises(smtplib.SMTPRecipientsRefused):
            client.sendmail("", [forged], wire(dsn(forged, person[1].data)))
        assert counters(run, mailing_id) == (4, 1, 1, 0, 0)

        # the bare return path: matched by the signed header the report quotes
        blocked = dsn(
            RETURN_PATH, person[2].data, status="5.7.1", diagnostic="smtp; 550 5.7.1 policy"
        )
        assert client.sendmail("", [RETURN_PATH.upper()], wire(blocked)) == {}
        assert counters(run, mailing_id) == (3, 2, 1, 1, 0)

        # the complaints address takes the feedback loop's ARF report
        assert (
            client.sendmail(
                "fbl@provider.example", [COMPLAINTS], wire(arf(COMPLAINTS, person[3].data))
            )
            == {}
        )
        assert counters(run, mailing_id) == (3, 2, 1, 1, 1)
        assert "person3@example.com" in suppressed(run)

    status, out, err = smtp.stop()
    assert status == 0, err
    assert "4 processed: bounces 1 hard, 1 blocked, 0 soft; 1 complaints;" in out, out
    assert "1 duplicates" in out
    assert "refused RCPT" in err and "stopped" in err


class Unwritable(Store):
    """A database that refuses writes while ``broken``."""

    broken = True

    @contextmanager
    def write(self):
        if self.broken:
            raise StoreError("cannot write to database: disk I/O error")
        with super().write() as session:
            yield session


@contextmanager
def serving(store: Store, data_limit: int):
    """An SMTP listener in this process, on a free port of loopback."""
    listening = SmtpListener("127.0.0.1", 0, data_limit=data_limit)
    listening.open()
    stop = threading.Event()
    thread = threading.Thread(target=run_intake, args=(store, listening), kwargs={"stop": stop})
    thread.start()
    try:
        yield listening.port
    finally:
        stop.set()
        thread.join(60)
        assert not thread.is_alive()


def test_a_database_that_cannot_write_is_451_and_the_retry_lands_and_too_large_is_552(
    sqlite_url, tmp_path
):
    store = Unwritable(sqlite_url)
    store.broken = False
    mailing_id = add_mailing(store, tmp_path, 1)
    with store.write() as session:
        settings.write(session, "return_path", RETURN_PATH)
        session.execute(sa.update(Recipient).values(status="sent"))
        session.execute(sa.update(Mailing).values(sent=1))
        recipient_id = session.exec(select(Recipient.id)).one()
        path = signing.return_path(session)
    assert path is not None
    address = path.address_for(mailing_id, recipient_id)
    report = wire(dsn(address, b"Subject: hi\r\n\r\n"))
    big = b"Subject: big\r\n\r\n" + (b"x" * 78 + b"\r\n") * 2_000
    store.broken = True
    with serving(store, data_limit=100_000) as port, smtplib.SMTP("127.0.0.1", port) as client:
        with pytest.raises(smtplib.SMTPDataError) as later:
            client.sendmail("", [address], report)
        assert later.value.smtp_code == 451
        assert mailing(store, mailing_id).bounced == 0
        store.broken = False
        assert client.sendmail("", [address], report) == {}  # the sender's retry
        assert mailing(store, mailing_id).bounced == 1
        with pytest.raises(smtplib.SMTPSenderRefused) as large:  # SIZE: refused at MAIL
            client.sendmail("", [address], big)
        assert large.value.smtp_code == 552
        client.rset()
        client.mail("")  # without SIZE: refused after the data
        client.rcpt(address)
        code, _ = client.data(big)
        assert code == 552
    store.dispose()


def test_sigterm_stops_an_idle_listener_cleanly(db_url, listener, run):
    assert run("init")[0] == 0
    smtp = listener("--follow")  # --follow or not, it listens until stopped
    client = smtp.client()
    assert client.noop()[0] == 250
    status, out, err = smtp.stop()
    assert status == 0, err
    assert "0 processed" in out
    # a connection still open is told, not dropped
    assert client.noop()[0] == 421
    client.close()


def test_a_port_taken_is_an_error_before_anything_starts(db_url, listener, run):
    assert run("init")[0] == 0
    first = listener()
    taken = subprocess.run(
        [sys.executable, "-m", "sendstatus_tui.cli.main", "--db", db_url, "intake"]
        + [f"smtp://127.0.0.1:{first.port}"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert taken.returncode == 1
    assert taken.stderr.startswith(f"error: smtp://127.0.0.1:{first.port}: cannot listen")
    status, _, _ = run("intake", "smtp://127.0.0.1:notaport")
    assert status == 1
    assert first.stop()[0] == 0


# --- engine --intake -------------------------------------------------------------------


@pytest.fixture
def engines(db_url, relay, tmp_path):
    processes = EngineProcesses(db_url, relay.url, tmp_path)
    yield processes
    processes.stop_all()


def bounce_back(run, store, relay, mailing_id, box: Path, who: str) -> None:
    """Sends the mailing, then delivers a hard bounce of ``who`` into the maildir."""
    assert run("send-now", str(mailing_id))[0] == 0
    wait_until(lambda: mailing(store, mailing_id).state == "completed", STARTING, what="completion")
    sent = next(received for received in relay.received if received.rcpt == who)
    deliver(box, "1.bounce", dsn(sent.mail_from, sent.data))


@pytest.mark.idle  # mostly waits, under 0.4 of a core (docs/maintenance.md)
def test_engine_with_intake_sends_and_reads_the_bounces_in_one_process(
    run, store, make_mailing, relay, engines, tmp_path
):
    assert run("config", "set", "return_path", RETURN_PATH)[0] == 0
    box = maildir(tmp_path / "bounces")
    mailing_id = make_mailing(recipients=3)
    engine = engines.start("--intake", f"maildir:{box}")
    bounce_back(run, store, relay, mailing_id, box, "person1@example.com")
    wait_until(lambda: mailing(store, mailing_id).bounced == 1, STARTING, what="the bounce")
    # moved to cur/ once its effects are committed: just after the bounce is seen
    wait_until(lambda: os.listdir(box / "cur"), STARTING, what="the bounce moved to cur/")
    assert not os.listdir(box / "new")
    assert counters(run, mailing_id) == (2, 1, 1, 0, 0)
    assert children_of(engine.pid) == {}  # a thread of the engine, no process
    engine.send_signal(signal.SIGTERM)
    assert engine.wait(60) == 0
    log = engines.log(engine)
    assert "running beside the engine" in log and "1 processed: bounces 1 hard" in log


@pytest.mark.idle  # a supervisor, its workers and intake, one killed: about half a core
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="children read in /proc")
def test_under_workers_one_intake_process_runs_and_is_restarted_like_a_worker(
    run, store, make_mailing, relay, engines, tmp_path
):
    assert run("config", "set", "return_path", RETURN_PATH)[0] == 0
    box = maildir(tmp_path / "bounces")
    mailing_id = make_mailing(recipients=3)
    supervisor = engines.start("--workers", "2", "--intake", f"maildir:{box}")

    def intakes() -> list[int]:
        return [
            pid for pid, command in children_of(supervisor.pid).items() if " intake " in command
        ]

    wait_until(lambda: len(children_of(supervisor.pid)) == 3, STARTING, "two workers, one intake")
    first = intakes()
    assert len(first) == 1
    bounce_back(run, store, relay, mailing_id, box, "person2@example.com")
    wait_until(lambda: mailing(store, mailing_id).bounced == 1, STARTING, what="the bounce")

    os.kill(first[0], signal.SIGKILL)
    wait_until(lambda: (now := intakes()) and now != first, STARTING, "another intake")
    assert len(intakes()) == 1 and len(children_of(supervisor.pid)) == 3
    supervisor.send_signal(signal.SIGTERM)
    assert supervisor.wait(90) == 0
    log = engines.log(supervisor)
    assert "2 engine workers and one intake" in log
    assert log.count("intake started: pid") == 2 and "intake (pid" in log
