"""After the send, end to end against a real SMTP server on loopback, through the command
line as an operator types it: failed recipients by class, a retry of the refused ones only,
unsubscribe headers, the suppression list."""

import csv
import json
from email import message_from_bytes, policy
from urllib.parse import unquote

import pytest
from sqlmodel import select

from sendstatus_tui.core.coordination import deliveries
from sendstatus_tui.core.coordination.deliveries import Outcome
from sendstatus_tui.core.model import lifecycle
from sendstatus_tui.core.model.models import Recipient

from .helpers import mailing, wait_until
from .smtp_relay import RelayScript

RECIPIENTS = 30
SUPPRESSED_BEFORE = 29  # on the list before the import: dropped
SUPPRESSED_AFTER = 28  # put on the list after the import: skipped at send time
REFUSED = {i for i in range(RECIPIENTS) if i % 3 == 0}  # a third: 550
DEFERRED = {i for i in range(RECIPIENTS) if i % 7 == 1} - REFUSED - {SUPPRESSED_BEFORE}


def address(i: int) -> str:
    return f"person{i}@example.com"


@pytest.fixture
def files(tmp_path):
    body = tmp_path / "body.txt"
    body.write_text("Hello {first_name}\n", encoding="utf-8")
    rows = [f"{address(i)},tok-{i},Zoë {i} & Co/?" for i in range(RECIPIENTS)]
    recipients = tmp_path / "recipients.csv"
    recipients.write_text("email,token,first_name\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return body, recipients


def test_failed_retry_unsubscribe_and_suppression(run, files, tmp_path, store, relays, engine_for):
    body, recipients = files
    script = RelayScript(
        rcpt_replies={
            **{address(i): ["550 5.7.1 rejected by policy"] for i in REFUSED},
            **{address(i): ["451 4.7.1 try later"] * 10 for i in DEFERRED},
        }
    )
    relay = relays(script)
    assert run("suppress", "add", "PERSON29@Example.COM")[0] == 0
    status, out, err = run(
        "mailing", "add", "--name", "Spring", "--subject", "Hi {first_name}",
        "--from", "Shop <news@shop.example.com>", "--text", str(body),
        "--recipients", str(recipients),
        "--unsubscribe-url", "https://shop.example.com/u/{token}?n={first_name}",
        "--unsubscribe-mailto", "unsubscribe@shop.example.com",
    )  # fmt: skip
    assert status == 0, err
    assert f"with {RECIPIENTS - 1} recipients, 1 suppressed dropped" in out
    mailing_id = int(out.split()[1])
    assert run("suppress", "add", address(SUPPRESSED_AFTER), "--reason", "asked by phone")[0] == 0

    assert run("send-now", str(mailing_id))[0] == 0
    engine_for(relay)
    wait_until(lambda: mailing(store, mailing_id).state == "completed", what="the mailing done")

    sent_to = set(range(RECIPIENTS)) - REFUSED - DEFERRED - {SUPPRESSED_BEFORE, SUPPRESSED_AFTER}
    assert relay.copies() == {address(i): 1 for i in sent_to}
    done = json.loads(run("show", str(mailing_id), "--json")[1])
    refused = REFUSED
    assert (done["sent"], done["failed"], done["suppressed"], done["remaining"]) == (
        len(sent_to),
        len(refused) + len(DEFERRED),
        1,
        0,
    )
    assert done["failed_by_class"] == {"5xx": len(refused), "4xx": len(DEFERRED)}
    assert done["recipients"]["suppressed"] == 1
    # show: the first failed rows, in recipient order, and how to see the rest
    first = sorted(refused | DEFERRED)[:5]
    assert [row["email"] for row in done["first_failed"]] == [address(i) for i in first]
    shown = run("show", str(mailing_id))[1]
    more = len(refused) + len(DEFERRED) - 5
    assert f"  First failed: ({more} more: sendstatus failed {mailing_id})\n" in shown
    assert f"    {address(0)} (5xx): 550 5.7.1 rejected by policy\n" in shown
    assert (
        "  Unsubscribe:    https://shop.example.com/u/{token}?n={first_name},"
        " unsubscribe@shop.example.com (one-click)\n"
    ) in shown

    # every message carries both unsubscribe headers, personalised and percent-encoded
    for received in relay.received:
        message = message_from_bytes(received.data, policy=policy.SMTP)
        i = int(received.rcpt.removeprefix("person").split("@")[0])
        url = f"https://shop.example.com/u/tok-{i}?n=Zo%C3%AB%20{i}%20%26%20Co%2F%3F"
        assert message["List-Unsubscribe"] == f"<{url}>, <mailto:unsubscribe@shop.example.com>"
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert unquote(url.split("n=")[1]) == f"Zoë {i} & Co/?"

    # failed: one JSON object per line, with class, code and reply
    status, out, _ = run("failed", str(mailing_id), "--json")
    rows = [json.loads(line) for line in out.splitlines()]
    assert {(r["email"], r["class"], r["code"]) for r in rows} == {
        *((address(i), "5xx", 550) for i in refused),
        *((address(i), "4xx", 451) for i in DEFERRED),
    }
    assert all(r["fields"]["token"] == f"tok-{r['email'][6:].split('@')[0]}" for r in rows)
    status, out, _ = run("failed", str(mailing_id), "--class", "4xx")
    assert sorted(line.split("\t")[0] for line in out.splitlines()) == sorted(
        address(i) for i in DEFERRED
    )

    # failed --csv: a file that mailing add takes back
    failed_csv = tmp_path / "failed.csv"
    assert run("failed", str(mailing_id), "--csv", str(failed_csv))[0] == 0
    with open(failed_csv, encoding="utf-8", newline="") as stream:
        table = list(csv.DictReader(stream))
    assert set(table[0]) == {"email", "token", "first_name", "class", "reply"}
    assert len(table) == len(refused) + len(DEFERRED)
    status, out, err = run(
        "mailing", "add", "--name", "Again", "--subject", "Hi {first_name}",
        "--from", "news@shop.example.com", "--text", str(body), "--recipients", str(failed_csv),
    )  # fmt: skip
    assert status == 0 and f"with {len(table)} recipients" in out, err

    # the relay takes the refused ones now; retry --class 5xx resends exactly those
    status, out, err = run("retry", str(mailing_id), "--class", "5xx", "--yes")
    assert status == 0, err
    parked = json.loads(run("show", str(mailing_id), "--json")[1])
    assert (parked["state"], parked["reason"]) == ("standby", f"{len(refused)} to retry")
    assert (parked["failed"], parked["remaining"]) == (len(DEFERRED), len(refused))
    assert run("send-now", str(mailing_id))[0] == 0
    wait_until(lambda: mailing(store, mailing_id).state == "completed", what="the retry done")
    assert relay.copies() == {address(i): 1 for i in sent_to | refused}
    assert address(SUPPRESSED_AFTER) not in relay.copies()
    assert address(SUPPRESSED_BEFORE) not in relay.copies()


def test_failed_says_so_when_there_are_none(run, make_mailing):
    mailing_id = make_mailing()
    assert run("failed", str(mailing_id)) == (
        0, "", f"mailing {mailing_id} has no failed recipients\n"
    )  # fmt: skip
    assert run("failed", str(mailing_id), "--class", "doubt") == (
        0, "", f"mailing {mailing_id} has no failed recipients of class doubt\n"
    )  # fmt: skip
    assert run("failed", str(mailing_id), "--json") == (0, "", "")  # scripts read no note


def test_retry_is_refused_with_a_reason(run, make_mailing):
    mailing_id = make_mailing()
    status, _, err = run("retry", str(mailing_id), "--yes")
    assert status == 1
    assert err == f"error: mailing {mailing_id} has not been sent yet: nothing to retry\n"
    assert run("send-now", str(mailing_id))[0] == 0
    status, _, err = run("retry", str(mailing_id), "--yes")
    assert status == 1
    assert err.startswith(f"error: cannot retry the failed recipients of mailing {mailing_id}:")
    assert "it is starting" in err


def test_retry_takes_doubt_only_when_named_and_works_from_a_stopped_mailing(
    run, store, make_mailing
):
    mailing_id = make_mailing(recipients=5)
    with store.write() as session:
        lifecycle.send_now(session, mailing_id)
        lifecycle.mark_prepared(session, mailing_id)
        claimed = deliveries.claim(session, mailing_id, 5, claimant="engine-a")
        outcomes = [
            Outcome(claimed[0], deliveries.SENT, "250 ok"),
            Outcome(claimed[1], deliveries.FAILED, "550 no", failure_class="5xx"),
            Outcome(claimed[2], deliveries.FAILED, "gave up: 451 later", failure_class="4xx"),
            Outcome(claimed[3], deliveries.FAILED, "no reply", failure_class="doubt"),
            Outcome(claimed[4], deliveries.FAILED, "cannot build", failure_class="error"),
        ]
        deliveries.record(session, mailing_id, outcomes, claimant="engine-a")
    assert run("stop", str(mailing_id))[0] == 0

    assert run("retry", str(mailing_id), "--yes")[0] == 0  # all: 5xx and 4xx
    shown = json.loads(run("show", str(mailing_id), "--json")[1])
    assert shown["failed_by_class"] == {"doubt": 1, "error": 1}
    assert (shown["reason"], shown["remaining"], shown["sent"]) == ("2 to retry", 2, 1)
    with store.read() as session:
        pending = session.exec(
            select(Recipient).where(
                Recipient.mailing_id == mailing_id, Recipient.status == "pending"
            )
        ).all()
    assert sorted(r.email for r in pending) == ["person1@example.com", "person2@example.com"]
    assert all((r.attempts, r.failure_class, r.last_reply) == (0, None, None) for r in pending)

    status, _, err = run("retry", str(mailing_id), "--class", "5xx", "--yes")
    assert (status, err) == (
        1,
        f"error: mailing {mailing_id} has no failed recipients of class 5xx\n",
    )
    assert run("retry", str(mailing_id), "--class", "doubt", "--yes")[0] == 0
    assert json.loads(run("show", str(mailing_id), "--json")[1])["reason"] == "1 to retry"
