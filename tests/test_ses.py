"""Amazon SES notifications through SNS, taken by `sendstatus serve`: a real server on
loopback (in this process, so that the SNS certificate source and the subscription
confirmation can be given to it), posted to with a real aiohttp client, about messages a
real engine sent to a loopback relay. The SNS messages are signed with a key and a
self-signed certificate made here."""

import asyncio
import json
import logging
import socket
import threading
from email import message_from_bytes

import aiohttp
import pytest
from sqlmodel import func, select

from sendstatus_tui.core.feedback.effects import Outcome, apply
from sendstatus_tui.core.model.models import Feedback
from sendstatus_tui.engine.intake.parse import parse
from sendstatus_tui.engine.serve import Listen, serve
from sendstatus_tui.engine.ses.endpoint import SesOptions

from .feedback_reports import (
    SES_TOPIC,
    dsn,
    ses_bounce,
    ses_complaint,
    ses_delivery,
    signing_certificate,
    sns_notification,
    sns_signed,
    sns_subscription,
)
from .helpers import mailing, wait_until

RETURN_PATH = "bounces@bounce.example.com"


@pytest.fixture(scope="module")
def sns_key():
    return signing_certificate()


class Served:
    def __init__(self, base: str):
        self.base = base
        self.certificates_asked: list[str] = []
        self.confirmed: list[str] = []

    def post(self, body: bytes, path: str = "/ses") -> tuple[int, str]:
        async def go():
            async with (
                aiohttp.ClientSession() as session,
                session.post(
                    self.base + path,
                    data=body,
                    headers={"Content-Type": "text/plain; charset=UTF-8"},
                ) as reply,
            ):
                return reply.status, await reply.text()

        return asyncio.run(go())


@pytest.fixture
def ses_server(store, sns_key):
    """Starts `serve` on a free loopback port with SNS's certificate source and the
    subscription confirmation replaced: both record what they were asked."""
    stops = []

    def start(topics=()) -> Served:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        served = Served(f"http://127.0.0.1:{port}")

        async def certificates(url: str) -> bytes:
            served.certificates_asked.append(url)
            return sns_key[1]

        async def confirm(url: str) -> None:
            served.confirmed.append(url)

        options = SesOptions(topics=frozenset(topics), certificates=certificates, confirm=confirm)
        loop = asyncio.new_event_loop()
        stop = asyncio.Event()
        thread = threading.Thread(
            target=loop.run_until_complete,
            args=(serve(store, Listen("127.0.0.1", port), stop, options),),
            daemon=True,
        )
        thread.start()
        stops.append((loop, stop, thread))

        def listening() -> bool:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            except OSError:
                return False
            return True

        wait_until(listening, timeout=30, what="serve listening")
        return served

    yield start
    for loop, stop, thread in stops:
        loop.call_soon_threadsafe(stop.set)
        thread.join(timeout=30)
        loop.close()


def as_json(run, *args):
    status, out, err = run(*args)
    assert status == 0, err
    return json.loads(out)


def suppressed(run) -> dict[str, str]:
    return {entry["address"]: entry["reason"] for entry in as_json(run, "suppress", "ls", "--json")}


@pytest.fixture
def sent(run, store, make_mailing, relay, engine_for):
    """A mailing of 7 sent with VERP return paths by a real engine: its id, and for each
    address the envelope sender and the signed recipient header its message had."""
    assert run("config", "set", "return_path", RETURN_PATH)[0] == 0
    mailing_id = make_mailing(recipients=7)
    assert run("send-now", str(mailing_id), "--yes")[0] == 0
    engine_for(relay)
    wait_until(lambda: mailing(store, mailing_id).state == "completed", what="completion")
    messages = {}
    for received in relay.received:
        header = str(message_from_bytes(received.data)["X-Sendstatus-Recipient"])
        messages[received.rcpt] = (received.mail_from, [("X-Sendstatus-Recipient", header)])
    assert len(messages) == 7
    return mailing_id, messages


def feedback_rows(store) -> int:
    with store.read() as session:
        return session.exec(select(func.count()).select_from(Feedback)).one()


def test_ses_bounces_have_the_effects_of_dsns_once(run, store, sent, sns_key, ses_server, caplog):
    caplog.set_level(logging.INFO, logger="sendstatus.serve")
    mailing_id, messages = sent
    key = sns_key[0]
    server = ses_server()

    def person(i):
        return messages[f"person{i}@example.com"]

    # matched by the signed header only (SES sent with a return path of its own)
    hard = sns_signed(key, sns_notification(ses_bounce("x@amazonses.com", person(0)[1])))
    assert server.post(hard) == (200, "OK")
    assert server.post(hard)[0] == 200  # SNS delivers it again: counted once
    # matched by the VERP return path SES reports as the source; SignatureVersion 2
    by_path = ses_bounce(person(1)[0], status="5.1.1", sub_type="NoEmail")
    assert server.post(sns_signed(key, sns_notification(by_path), version="2"))[0] == 200
    # the same SES event through a second topic subscription: the same feedback id
    assert server.post(sns_signed(key, sns_notification(by_path)))[0] == 200
    transient = ses_bounce(person(2)[0], bounce_type="Transient", sub_type="MailboxFull",
                           status="4.2.2", diagnostic="smtp; 452 4.2.2 mailbox full")  # fmt: skip
    assert server.post(sns_signed(key, sns_notification(transient)))[0] == 200
    blocked = ses_bounce(person(3)[0], status="5.7.1", diagnostic="smtp; 550 5.7.1 policy")
    assert server.post(sns_signed(key, sns_notification(blocked)))[0] == 200
    delivery = sns_signed(key, sns_notification(ses_delivery(person(4)[0])))
    assert server.post(delivery) == (200, "OK")

    shown = as_json(run, "show", str(mailing_id), "--json")
    assert (shown["sent"], shown["failed"]) == (4, 3)
    assert (shown["bounced"], shown["blocked"], shown["complained"]) == (2, 1, 0)
    assert shown["failed_by_class"] == {"bounce": 2, "blocked": 1}
    reasons = suppressed(run)
    assert set(reasons) == {"person0@example.com", "person1@example.com"}
    assert reasons["person0@example.com"].startswith("bounce: 5.1.1 550 5.1.1 user unknown")
    assert "amazonses.com" in reasons["person0@example.com"]
    status, out, _ = run("failed", str(mailing_id), "--class", "blocked", "--json")
    assert [json.loads(line)["email"] for line in out.splitlines()] == ["person3@example.com"]
    entries = [e for e in as_json(run, "log", "--json") if e["action"] == "feedback"]
    assert [e["detail"] for e in entries] == ["2 bounces, 1 blocked, 1 delayed"]
    assert "SES delivery: ignored" in caplog.text
    rows = feedback_rows(store)

    # a DSN about the recipient SES reported bounced changes nothing more
    with store.write() as session:
        report = parse(dsn(person(0)[0], b"Subject: x\r\n\r\n"))
        assert apply(session, report).outcome == Outcome.NO_EFFECT
    assert mailing(store, mailing_id).bounced == 2
    assert feedback_rows(store) == rows + 1  # kept, not counted


def test_an_ses_complaint_suppresses_and_counts(run, sent, sns_key, ses_server):
    mailing_id, messages = sent
    server = ses_server()
    verp, headers = messages["person5@example.com"]
    body = sns_signed(sns_key[0], sns_notification(ses_complaint("x@amazonses.com", headers)))
    assert server.post(body)[0] == 200
    assert server.post(body)[0] == 200
    shown = as_json(run, "show", str(mailing_id), "--json")
    assert (shown["sent"], shown["failed"], shown["complained"]) == (7, 0, 1)
    assert suppressed(run) == {
        "person5@example.com": f"complaint (abuse) about mailing {mailing_id}"
    }


def test_a_forged_signature_is_refused_and_changes_nothing(run, store, sent, sns_key, ses_server):
    mailing_id, messages = sent
    server = ses_server()
    verp, headers = messages["person0@example.com"]
    genuine = json.loads(sns_signed(sns_key[0], sns_notification(ses_bounce(verp, headers))))
    altered = {**genuine, "Message": genuine["Message"].replace("5.1.1", "5.1.2")}
    other_key = signing_certificate()[0]
    by_another_key = sns_signed(other_key, sns_notification(ses_bounce(verp, headers)))
    unknown_version = {**genuine, "SignatureVersion": "3"}
    no_signature = {k: v for k, v in genuine.items() if k != "Signature"}
    for body in (
        json.dumps(altered).encode(),
        by_another_key,
        json.dumps(unknown_version).encode(),
        json.dumps(no_signature).encode(),
        b"not json",
    ):
        assert server.post(body) == (403, "Forbidden."), body[:80]
    shown = as_json(run, "show", str(mailing_id), "--json")
    assert (shown["sent"], shown["bounced"]) == (7, 0)
    assert suppressed(run) == {} and feedback_rows(store) == 0


def test_a_certificate_off_the_sns_hosts_is_never_fetched(run, store, sent, sns_key, ses_server):
    mailing_id, messages = sent
    server = ses_server()
    verp, headers = messages["person0@example.com"]
    for url in (
        "https://sns.eu-west-1.amazonaws.com.evil.example/cert.pem",
        "https://evil.example/sns.eu-west-1.amazonaws.com/cert.pem",
        "http://sns.eu-west-1.amazonaws.com/cert.pem",
        "https://sns.eu-west-1.amazonaws.com:8443/cert.pem",
        "https://user@sns.eu-west-1.amazonaws.com/cert.pem",
        "https://s3.amazonaws.com/cert.pem",
    ):
        body = sns_signed(sns_key[0], sns_notification(ses_bounce(verp, headers)), cert_url=url)
        assert server.post(body)[0] == 403, url
    assert server.certificates_asked == []
    assert mailing(store, mailing_id).bounced == 0 and feedback_rows(store) == 0


def test_an_unmatched_notification_is_counted_and_changes_nothing(
    run, store, sent, sns_key, ses_server, caplog
):
    caplog.set_level(logging.INFO, logger="sendstatus.serve")
    mailing_id, messages = sent
    server = ses_server()
    verp, headers = messages["person0@example.com"]
    code = headers[0][1]
    forged = [("X-Sendstatus-Recipient", code[:-1] + ("a" if code[-1] != "a" else "b"))]
    for ses in (
        ses_bounce("news@shop.example.com", forged),  # a forged header, no VERP
        ses_bounce("news@shop.example.com"),  # nothing of ours at all
        ses_complaint(verp.replace("bounces+", "bounces+aa")),  # a forged return path
    ):
        assert server.post(sns_signed(sns_key[0], sns_notification(ses)))[0] == 200
    assert caplog.text.count(": unmatched, ") == 3
    shown = as_json(run, "show", str(mailing_id), "--json")
    assert (shown["sent"], shown["bounced"], shown["complained"]) == (7, 0, 0)
    assert suppressed(run) == {} and feedback_rows(store) == 0


def test_subscriptions_are_confirmed_only_for_the_named_topics(run, sns_key, ses_server, caplog):
    assert run("init")[0] == 0
    caplog.set_level(logging.INFO, logger="sendstatus.serve")
    server = ses_server(topics=[SES_TOPIC])
    ours = sns_subscription()
    assert server.post(sns_signed(sns_key[0], ours)) == (200, "OK")
    assert server.confirmed == [ours["SubscribeURL"]]
    theirs = sns_subscription("arn:aws:sns:eu-west-1:999999999999:someone-else")
    assert server.post(sns_signed(sns_key[0], theirs))[0] == 200
    assert server.confirmed == [ours["SubscribeURL"]]
    assert f"confirm it by opening {theirs['SubscribeURL']}" in caplog.text
    # a SubscribeURL off SNS's hosts is never fetched, even for a topic of ours
    elsewhere = {**sns_subscription(), "SubscribeURL": "https://evil.example/confirm"}
    assert server.post(sns_signed(sns_key[0], elsewhere))[0] == 503
    assert server.confirmed == [ours["SubscribeURL"]]
    # and another topic's notifications are ignored while topics are named
    other = sns_notification(ses_bounce("news@shop.example.com"), topic=theirs["TopicArn"])
    assert server.post(sns_signed(sns_key[0], other))[0] == 200
    assert "is no --ses-topic: ignored" in caplog.text


def test_bad_ses_options_are_one_error_line(run):
    assert run("init")[0] == 0
    for option, value in (("--ses-topic", "ses-feedback"), ("--ses-path", "ses")):
        status, _, err = run("serve", "--listen", "127.0.0.1:8025", option, value)
        assert status == 1
        assert err.startswith(f"error: {option} ") and len(err.strip().splitlines()) == 1
