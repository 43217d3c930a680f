"""Test sends and the unsubscribe warning, through the command line, against a real SMTP
server on loopback."""

import json
from email import message_from_bytes, policy

import pytest

from .smtp_relay import RelayScript


@pytest.fixture
def add_mailing(run, tmp_path):
    def add(rows: list[str], *options: str) -> int:
        body = tmp_path / "body.txt"
        body.write_text("Dear {first_name}, see {city}\n", encoding="utf-8")
        recipients = tmp_path / "recipients.csv"
        recipients.write_text("email,first_name,city\n" + "\n".join(rows) + "\n")
        status, out, err = run(
            "mailing", "add", "--name", "Launch", "--subject", "For {first_name}",
            "--from", "Shop <news@shop.example.com>", "--text", str(body),
            "--recipients", str(recipients), *options,
        )  # fmt: skip
        assert status == 0, err
        return int(out.split()[1])

    return add


def test_a_test_goes_to_the_given_addresses_only_and_changes_nothing(
    run, add_mailing, relays, monkeypatch
):
    relay = relays()
    monkeypatch.setenv("SENDSTATUS_SMTP", relay.url)
    mailing_id = add_mailing(
        ["ann@example.com,Ann,Rome", "bob@example.com,Bob,"],
        "--unsubscribe-mailto",
        "leave@shop.example.com",
    )
    before = json.loads(run("show", str(mailing_id), "--json")[1])
    status, out, err = run(
        "test", str(mailing_id), "--to", "me@example.org, boss@example.org", "--as", "2"
    )
    assert status == 0, err
    assert out.splitlines() == [
        f"test of mailing {mailing_id} 'Launch' as recipient 2 bob@example.com,"
        f" through {relay.url}",
        "  me@example.org: 250 2.0.0 queued",
        "  boss@example.org: 250 2.0.0 queued",
    ]
    assert err == "warning: bob@example.com has no value for {city}: the test shows them empty\n"
    assert relay.recipients() == ["me@example.org", "boss@example.org"]
    first = message_from_bytes(relay.received[0].data, policy=policy.SMTP)
    second = message_from_bytes(relay.received[1].data, policy=policy.SMTP)
    assert (first["To"], first["Subject"]) == ("me@example.org", "[TEST] For Bob")
    assert first["List-Unsubscribe"] == "<mailto:leave@shop.example.com>"
    assert first["List-Unsubscribe-Post"] is None  # one-click needs a URL
    # a Message-ID of its own: not the one the real send will carry, nor each other's
    assert first["Message-ID"] != second["Message-ID"]
    assert first["Message-ID"].startswith(f"<test.m{mailing_id}.")
    after = json.loads(run("show", str(mailing_id), "--json")[1])
    assert {k: v for k, v in after.items() if k != "updated_at"} == {
        k: v for k, v in before.items() if k != "updated_at"
    }
    assert after["sent"] == 0 and after["state"] == "standby"

    status, out, _ = run(
        "test", str(mailing_id), "--to", "me@example.org", "--as", "Ann@EXAMPLE.com"
    )
    assert status == 0 and "as recipient ann@example.com" in out
    assert message_from_bytes(relay.received[-1].data)["Subject"] == "[TEST] For Ann"


def test_the_relays_refusal_is_printed(run, add_mailing, relays, monkeypatch):
    relay = relays(RelayScript(rcpt_replies={"no@example.org": ["550 5.1.1 no such user"]}))
    monkeypatch.setenv("SENDSTATUS_SMTP", relay.url)
    mailing_id = add_mailing(["ann@example.com,Ann,Rome"])
    status, out, err = run("test", str(mailing_id), "--to", "no@example.org,yes@example.org")
    assert status == 1
    assert out.splitlines()[1:] == [
        "  no@example.org: 550 5.1.1 no such user",
        "  yes@example.org: 250 2.0.0 queued",
    ]
    assert err == "error: the relay did not take the test for 1 of 2 addresses\n"


def test_the_default_maildir_is_named(run, add_mailing, tmp_path):
    mailing_id = add_mailing(["ann@example.com,Ann,Rome"])
    status, out, _ = run("test", str(mailing_id), "--to", "me@example.org")
    maildir = tmp_path / "xdg-data" / "sendstatus" / "maildir"
    assert status == 0
    assert f"through the default maildir {maildir} (no relay is set" in out
    assert len(list((maildir / "new").iterdir())) == 1


def test_a_large_mailing_without_unsubscribe_asks_first(run, add_mailing):
    rows = [f"p{i}@example.com,P{i},Oslo" for i in range(5_001)]
    mailing_id = add_mailing(rows)
    status, _, err = run("send-now", str(mailing_id))
    assert status == 1
    assert f"warning: mailing {mailing_id} goes to 5,001 recipients without an unsubscribe" in err
    assert err.endswith("error: send it without one: confirmation needed; pass --yes to confirm\n")
    assert json.loads(run("show", str(mailing_id), "--json")[1])["state"] == "standby"
    status, _, err = run("schedule", str(mailing_id), "--at", "2030-01-01 10:00")
    assert status == 1 and "pass --yes" in err
    assert run("send-now", str(mailing_id), "--yes")[0] == 0
    # with an unsubscribe header nothing is asked
    with_header = add_mailing(rows, "--unsubscribe-mailto", "leave@shop.example.com")
    assert run("send-now", str(with_header)) == (
        0,
        f"mailing {with_header} 'Launch': sending now (starting up)\n",
        "",
    )


def test_the_unsubscribe_defaults_apply_when_a_mailing_is_created(run, add_mailing):
    assert run("init")[0] == 0  # config changes a database, it never creates one
    assert run("config", "set", "unsubscribe_url", "https://shop.example.com/u/{email}")[0] == 0
    mailing_id = add_mailing(["ann@example.com,Ann,Rome"])
    shown = json.loads(run("show", str(mailing_id), "--json")[1])
    assert shown["unsubscribe_url"] == "https://shop.example.com/u/{email}"
    assert (
        "Unsubscribe:    https://shop.example.com/u/{email} (one-click)"
        in run("show", str(mailing_id))[1]
    )
