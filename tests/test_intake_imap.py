"""`sendstatus intake imaps://USER@HOST/FOLDER` (a real subprocess) against a private
Dovecot on loopback: bounces and complaints read from an IMAP mailbox, each applied once
and flagged after its commit; a refused login, a cut connection, two intakes at once,
--follow with IDLE."""

import json
import os
import signal
import subprocess
import sys

import pytest
import sqlalchemy as sa
from sqlmodel import func, select

from sendstatus_tui.core.model import signing
from sendstatus_tui.core.model.models import Feedback, Mailing, Recipient
from sendstatus_tui.core.model.verp import sign
from sendstatus_tui.engine.intake.imap import parse_imap_url
from sendstatus_tui.engine.intake.source import SourceError

from .dovecot_server import PASSWORD, CuttingProxy, Dovecot, why_no_dovecot
from .engine_processes import assert_books_balance
from .feedback_reports import arf, auto_reply, dsn
from .helpers import mailing, wait_until

RETURN_PATH = "bounces@bounce.example.com"
needs_dovecot = pytest.mark.skipif(why_no_dovecot() is not None, reason=str(why_no_dovecot()))


@pytest.fixture
def dovecot(tmp_path):
    server = Dovecot(tmp_path / "dovecot")
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture(autouse=True)
def no_credentials_file(tmp_path, monkeypatch):
    monkeypatch.setenv("SENDSTATUS_CREDENTIALS", str(tmp_path / "no-credentials.toml"))


def intake(db_url: str, url: str, *options: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "sendstatus_tui.cli.main", "--db", db_url, "intake", url, *options],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env if env is not None else os.environ.copy(),
    )


def trusting(dovecot: Dovecot, **extra: str) -> dict:
    """The environment of an intake that trusts the test server's certificate and knows
    the password."""
    return {
        **os.environ,
        "SSL_CERT_FILE": str(dovecot.certificate),
        "SENDSTATUS_INTAKE_PASSWORD": PASSWORD,
        **extra,
    }


def finished(process: subprocess.Popen) -> tuple[str, str]:
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    return out, err


def failed(process: subprocess.Popen) -> str:
    out, err = process.communicate(timeout=60)
    assert process.returncode == 1, (out, err)
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1, err
    return err


def as_json(run, *args):
    status, out, err = run(*args)
    assert status == 0, err
    return json.loads(out)


def _sent_mailing_with_bounces(store, make_mailing, dovecot: Dovecot, count: int) -> int:
    """A mailing of ``count`` recipients counted sent, and a hard bounce for each in the
    IMAP mailbox."""
    mailing_id = make_mailing(recipients=count)
    with store.write() as session:
        session.execute(sa.update(Recipient).values(status="sent"))
        session.execute(sa.update(Mailing).values(sent=count))
        key = signing.signing_key(session)
        ids = session.exec(select(Recipient.id).order_by(Recipient.id)).all()
    dovecot.append(
        *(
            dsn(f"bounces+{sign(key, mailing_id, rid)}@bounce.example.com", b"Subject: x\r\n\r\n")
            for rid in ids
        )
    )
    return mailing_id


def _each_bounced_once(store, mailing_id: int, count: int) -> None:
    with store.read() as session:
        rows = session.exec(
            select(Feedback.recipient_id, func.count()).group_by(Feedback.recipient_id)
        ).all()
    assert len(rows) == count and all(n == 1 for _, n in rows)
    m = assert_books_balance(store, mailing_id)
    assert (m.sent, m.failed, m.bounced) == (0, count, count)


# --- the URL ---------------------------------------------------------------------------


def test_the_url_names_user_host_folder_and_never_a_password():
    settings = parse_imap_url("imaps://bounces%40example.com@imap.example.com/Bounces")
    assert settings is not None
    assert (settings.user, settings.host, settings.port, settings.folder) == (
        "bounces@example.com",
        "imap.example.com",
        993,
        "Bounces",
    )
    assert settings.implicit_tls and settings.verify_certificates
    plain = parse_imap_url("imap://u@mx.example.com?verify=off")
    assert plain is not None and (plain.port, plain.folder) == (143, "INBOX")
    assert not plain.implicit_tls and not plain.verify_certificates
    assert parse_imap_url("maildir:/tmp/x") is None
    for bad, said in [
        ("imaps://u:pw@h/INBOX", "must not carry a password"),
        ("imaps://h/INBOX", "which user"),
        ("imaps://u@h/INBOX?verify=maybe", "verify"),
        ("imaps://u@h/INBOX?colour=red", "unknown IMAP URL option"),
        ("imap://u@mx.example.com/INBOX?plaintext_auth=yes", "loopback"),
        ("imaps://u@h:99999/INBOX", "not an IMAP URL"),
    ]:
        with pytest.raises(SourceError, match=said):
            parse_imap_url(bad)


# --- end to end -----------------------------------------------------------------------------


@needs_dovecot
@pytest.mark.long
def test_bounces_and_complaints_come_back_from_an_imap_mailbox(
    run, db_url, store, make_mailing, relay, engine_for, dovecot
):
    assert run("config", "set", "return_path", RETURN_PATH)[0] == 0
    mailing_id = make_mailing(recipients=5)
    assert run("send-now", str(mailing_id))[0] == 0
    engine_for(relay)
    wait_until(lambda: mailing(store, mailing_id).state == "completed", what="completion")
    sent = {r.rcpt: r for r in relay.received}
    assert len(sent) == 5

    def verp(i):
        return sent[f"person{i}@example.com"].mail_from

    def original(i):
        return sent[f"person{i}@example.com"].data

    hard = dsn(verp(0), original(0), final_recipient="person0@example.com")
    dovecot.append(
        hard,
        hard,  # the same DSN delivered twice
        dsn(verp(1), original(1), status="5.7.1", diagnostic="smtp; 550 5.7.1 policy"),
        dsn(verp(2), original(2), action="delayed", status="4.4.1"),
        arf("fbl@bounce.example.com", original(3)),
        auto_reply(verp(4)),
    )
    out, err = finished(intake(db_url, dovecot.url("imaps"), env=trusting(dovecot)))
    assert "6 processed: bounces 1 hard, 1 blocked, 1 soft; 1 complaints; 1 not a bounce;" in out
    assert "1 duplicates" in out and "reconnect" not in out, out
    assert out.startswith(f"intake {dovecot.url('imaps').replace('/INBOX', '')}"), out
    assert len([line for line in err.splitlines() if " UID " in line]) == 6, err
    assert PASSWORD not in out + err
    # each flagged once its effect was committed; nothing deleted
    assert dovecot.count("ALL") == 6 and dovecot.processed() == 6

    shown = as_json(run, "show", str(mailing_id), "--json")
    assert (shown["bounced"], shown["blocked"], shown["complained"]) == (1, 1, 1)
    assert (shown["sent"], shown["failed"]) == (3, 2)
    assert_books_balance(store, mailing_id)
    suppressed = {e["address"] for e in as_json(run, "suppress", "ls", "--json")}
    assert suppressed == {"person0@example.com", "person3@example.com"}

    # once more, over imap:// with STARTTLS: nothing left to read
    out, _ = finished(intake(db_url, dovecot.url("imap"), env=trusting(dovecot)))
    assert "0 processed" in out, out
    # a person who un-flags them (or copies them back): duplicates, no effect twice
    imap = dovecot.client()
    imap.select("INBOX")
    imap.uid("STORE", "1:*", "-FLAGS", r"(\Seen SendstatusProcessed)")
    imap.logout()
    out, _ = finished(intake(db_url, dovecot.url("imaps"), env=trusting(dovecot)))
    assert "6 processed: bounces 0 hard, 0 blocked, 0 soft; 0 complaints" in out, out
    assert mailing(store, mailing_id).bounced == 1 and dovecot.processed() == 6


@needs_dovecot
@pytest.mark.long
def test_a_refused_login_or_an_untrusted_server_is_an_error_at_start(sqlite_url, dovecot, tmp_path):
    init = [sys.executable, "-m", "sendstatus_tui.cli.main", "--db", sqlite_url, "init"]
    subprocess.run(init, check=True, capture_output=True)
    url = dovecot.url("imaps")
    wrong = trusting(dovecot, SENDSTATUS_INTAKE_PASSWORD="wrong-password-4711")
    err = failed(intake(sqlite_url, url, env=wrong))
    assert "login refused" in err and "wrong-password-4711" not in err
    err = failed(intake(sqlite_url, dovecot.url("imaps", folder="Nowhere"), env=trusting(dovecot)))
    assert "cannot open the folder" in err
    # the test certificate is nobody's: refused unless ?verify=off
    untrusting = {**os.environ, "SENDSTATUS_INTAKE_PASSWORD": PASSWORD}
    untrusting.pop("SSL_CERT_FILE", None)
    err = failed(intake(sqlite_url, url, env=untrusting))
    assert "not trusted" in err and "verify=off" in err
    finished(intake(sqlite_url, url + "?verify=off", env=untrusting))
    # no password anywhere; then one in the credentials file, only if private
    nothing = {k: v for k, v in trusting(dovecot).items() if k != "SENDSTATUS_INTAKE_PASSWORD"}
    err = failed(intake(sqlite_url, url, env=nothing))
    assert "SENDSTATUS_INTAKE_PASSWORD" in err and "[intake]" in err
    credentials = tmp_path / "credentials.toml"
    credentials.write_text(f'[intake]\npassword = "{PASSWORD}"\n')
    credentials.chmod(0o644)
    in_file = {**nothing, "SENDSTATUS_CREDENTIALS": str(credentials)}
    assert "chmod 600" in failed(intake(sqlite_url, url, env=in_file))
    credentials.chmod(0o600)
    out, _ = finished(intake(sqlite_url, url, env=in_file))
    assert "0 processed" in out


@needs_dovecot
def test_a_connection_cut_mid_fetch_is_made_again_and_the_intake_finishes(
    db_url, store, make_mailing, dovecot
):
    count = 30
    mailing_id = _sent_mailing_with_bounces(store, make_mailing, dovecot, count)
    proxy = CuttingProxy(dovecot.imaps_port, cut_after=40_000)
    try:
        url = f"imaps://bounces@127.0.0.1:{proxy.port}/INBOX"
        # the proxy's address is 127.0.0.1 too: the certificate still matches
        out, err = finished(intake(db_url, url, env=trusting(dovecot)))
    finally:
        proxy.close()
    assert proxy.cuts == 1 and proxy.connections >= 2
    assert "connection lost" in err and "connected again" in err, err
    assert f"{count} processed: bounces {count} hard" in out and "0 duplicates" in out, out
    assert "1 reconnects" in out, out
    assert dovecot.processed() == count
    _each_bounced_once(store, mailing_id, count)


@needs_dovecot
@pytest.mark.slow  # two intake processes racing
def test_two_intakes_at_once_on_one_mailbox(db_url, store, make_mailing, dovecot):
    count = 40
    mailing_id = _sent_mailing_with_bounces(store, make_mailing, dovecot, count)
    both = [intake(db_url, dovecot.url(), env=trusting(dovecot)) for _ in range(2)]
    outs = [finished(process)[0] for process in both]
    hard = [int(out.split("bounces ")[1].split(" hard")[0]) for out in outs]
    assert sum(hard) == count, outs
    assert dovecot.processed() == count and dovecot.count("ALL") == count
    _each_bounced_once(store, mailing_id, count)


@needs_dovecot
@pytest.mark.slow  # kill -9 of an intake process half-way
def test_killed_mid_intake_then_run_again_each_effect_once(db_url, store, make_mailing, dovecot):
    count = 120
    mailing_id = _sent_mailing_with_bounces(store, make_mailing, dovecot, count)
    first = intake(db_url, dovecot.url(), env=trusting(dovecot))
    wait_until(lambda: dovecot.processed() >= 3, timeout=60, what="a few processed")
    first.send_signal(signal.SIGKILL)
    first.communicate()
    assert dovecot.processed() < count, "killed too late to tell"
    finished(intake(db_url, dovecot.url(), env=trusting(dovecot)))
    assert dovecot.processed() == count
    _each_bounced_once(store, mailing_id, count)


@needs_dovecot
@pytest.mark.long
def test_follow_is_told_of_new_mail_by_idle(sqlite_url, dovecot):
    init = [sys.executable, "-m", "sendstatus_tui.cli.main", "--db", sqlite_url, "init"]
    subprocess.run(init, check=True, capture_output=True)
    # a pass every 10 minutes: only IDLE can make it read the message within seconds
    process = intake(
        sqlite_url, dovecot.url(), "--follow", "--interval", "600", env=trusting(dovecot)
    )
    try:
        wait_until(
            lambda: "Logged in" in dovecot.log.read_text() or "Login:" in dovecot.log.read_text(),
            timeout=30,
            what="the intake logged in",
        )
        dovecot.append(auto_reply("bounces@bounce.example.com"))
        wait_until(lambda: dovecot.processed() == 1, timeout=30, what="the message read")
        dovecot.append(auto_reply("bounces@bounce.example.com"))
        wait_until(lambda: dovecot.processed() == 2, timeout=30, what="the second read")
    finally:
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert "a pass every 600 s" in err
    assert "2 processed" in out and "2 not a bounce" in out, out
