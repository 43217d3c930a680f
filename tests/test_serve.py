"""One-click unsubscribe, served: messages sent by a real engine to a loopback relay carry
a signed token in their List-Unsubscribe URL, and a real `sendstatus serve` subprocess
answers it over HTTP (urllib as the client, as a mail provider would post)."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from email import message_from_bytes, policy
from urllib.parse import urlsplit

import pytest

from .helpers import mailing, wait_until
from .ports import free_port

URL_TEMPLATE = "https://shop.example.com/u/{unsubscribe_token}"


@pytest.fixture
def server(db_url):
    """Starts `sendstatus serve` on a free loopback port; yields its base URL."""
    started = []

    def start() -> str:
        port = free_port()
        process = subprocess.Popen(
            [sys.executable, "-m", "sendstatus_tui.cli.main", "--db", db_url, "serve"]
            + ["--listen", f"127.0.0.1:{port}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=os.environ.copy(),
        )
        started.append(process)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert process.poll() is None, process.stderr.read()
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    return f"http://127.0.0.1:{port}"
            except OSError:
                time.sleep(0.05)
        raise AssertionError("serve did not listen within 30 s")

    start.started = started
    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=30)


def request(url: str, data: bytes | None = None, headers: dict | None = None):
    """(status, headers, body) of one request; redirects are not followed."""

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None

    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(urllib.request.Request(url, data, headers or {}), timeout=10) as reply:
            return reply.status, reply.headers, reply.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, exc.read().decode()


def one_click(url: str):
    return request(
        url,
        b"List-Unsubscribe=One-Click",
        {"Content-Type": "application/x-www-form-urlencoded"},
    )


def one_click_multipart(url: str):
    boundary = uuid.uuid4().hex
    body = (
        f"--{boundary}\r\n"
        'Content-Disposition: form-data; name="List-Unsubscribe"\r\n\r\n'
        f"One-Click\r\n--{boundary}--\r\n"
    ).encode()
    return request(url, body, {"Content-Type": f"multipart/form-data; boundary={boundary}"})


def at(base: str, url: str) -> str:
    """The message's URL, at the server under test instead of the public host."""
    parts = urlsplit(url)
    return base + parts.path + (f"?{parts.query}" if parts.query else "")


def unsubscribe_url(data: bytes) -> str:
    message = message_from_bytes(data, policy=policy.SMTP)
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    return str(message["List-Unsubscribe"]).strip("<>")


def as_json(run, *args):
    status, out, err = run(*args)
    assert status == 0, err
    return json.loads(out)


def suppressed(run) -> dict[str, str]:
    return {entry["address"]: entry["reason"] for entry in as_json(run, "suppress", "ls", "--json")}


@pytest.fixture
def sent(run, store, make_mailing, relay, engine_for):
    """A mailing of 3 sent by a real engine: {address: its List-Unsubscribe URL}."""
    assert run("config", "set", "unsubscribe_url", URL_TEMPLATE)[0] == 0
    mailing_id = make_mailing(recipients=3)
    assert run("send-now", str(mailing_id), "--yes")[0] == 0
    engine_for(relay)
    wait_until(lambda: mailing(store, mailing_id).state == "completed", what="completion")
    urls = {r.rcpt: unsubscribe_url(r.data) for r in relay.received}
    assert len(urls) == 3
    for address, url in urls.items():
        assert url.startswith("https://shop.example.com/u/")
        assert address.split("@")[0] not in url  # no address in the URL
    return mailing_id, urls


def test_a_one_click_post_suppresses_and_counts_once(run, sent, server):
    mailing_id, urls = sent
    base = server()
    ann, bob, _ = sorted(urls)
    started = time.monotonic()
    status, headers, body = one_click(at(base, urls[ann]))
    assert (status, body) == (200, "You are unsubscribed.")
    assert time.monotonic() - started < 1.0  # suppressed within the request
    assert "Set-Cookie" not in headers
    assert suppressed(run) == {ann: "one-click unsubscribe"}
    assert as_json(run, "show", str(mailing_id), "--json")["unsubscribed"] == 1
    # posted again (providers retry): still 200, counted once
    assert one_click(at(base, urls[ann]))[0] == 200
    # the other encoding a provider may use
    assert one_click_multipart(at(base, urls[bob]))[0] == 200
    assert suppressed(run) == {ann: "one-click unsubscribe", bob: "one-click unsubscribe"}
    shown = as_json(run, "show", str(mailing_id), "--json")
    assert shown["unsubscribed"] == 2 and shown["sent"] == 3


def test_a_get_shows_a_button_and_unsubscribes_nobody(run, sent, server):
    mailing_id, urls = sent
    base = server()
    url = at(base, next(iter(urls.values())))
    status, headers, page = request(url)
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert '<form method="post"' in page and 'value="One-Click"' in page
    assert f'action="{urlsplit(url).path}"' in page
    assert suppressed(run) == {}
    assert as_json(run, "show", str(mailing_id), "--json")["unsubscribed"] == 0
    # a POST without the one-click field is no unsubscribe either
    assert request(url, b"other=1", {"Content-Type": "application/x-www-form-urlencoded"})[0] == (
        400
    )
    assert suppressed(run) == {}


def test_a_forged_or_unknown_token_is_a_404_and_changes_nothing(run, sent, server):
    mailing_id, urls = sent
    base = server()
    genuine = urlsplit(next(iter(urls.values()))).path
    token = genuine.rsplit("/", 1)[1]
    tampered = token[:-1] + ("a" if token[-1] != "a" else "b")
    for path in (f"/u/{tampered}", "/u/aaaaaaaaaaaaaaaaaaaaaaaa", "/u/", "/", "/u/not-a-token"):
        assert one_click(base + path)[0] == 404, path
        assert request(base + path)[0] == 404, path
    assert suppressed(run) == {}
    assert as_json(run, "show", str(mailing_id), "--json")["unsubscribed"] == 0


def test_a_test_sends_link_unsubscribes_nobody(run, sent, server, relays, monkeypatch):
    mailing_id, urls = sent
    assert run("config", "set", "return_path", "bounces@bounce.example.com")[0] == 0
    relay = relays()
    monkeypatch.setenv("SENDSTATUS_SMTP", relay.url)
    status, _, err = run("test", str(mailing_id), "--to", "me@example.org", "--as", "1")
    assert status == 0, err
    (received,) = relay.received
    message = message_from_bytes(received.data, policy=policy.SMTP)
    assert str(message["Subject"]).startswith("[TEST] ")
    assert received.mail_from == "bounces@bounce.example.com"  # no recipient's VERP code
    url = unsubscribe_url(received.data)
    assert url not in urls.values()
    base = server()
    assert one_click(at(base, url))[0] == 200
    assert request(at(base, url))[0] == 200
    assert suppressed(run) == {}
    assert as_json(run, "show", str(mailing_id), "--json")["unsubscribed"] == 0


def test_serve_stops_cleanly_on_sigterm(db_url, run, server):
    assert run("init")[0] == 0
    server()
    (process,) = server.started
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=15)
    assert process.returncode == 0, err
    assert "stopping" in err


def test_a_csv_column_named_unsubscribe_token_is_refused(run, tmp_path):
    body = tmp_path / "body.txt"
    body.write_text("Hi\n")
    recipients = tmp_path / "r.csv"
    recipients.write_text("email,unsubscribe_token\nann@example.com,abc\n")
    status, _, err = run(
        "mailing", "add", "--name", "N", "--subject", "S", "--from", "news@shop.example.com",
        "--text", str(body), "--recipients", str(recipients),
    )  # fmt: skip
    assert status == 1
    assert "'unsubscribe_token' is reserved" in err
