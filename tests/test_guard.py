"""The guard: a sending mailing stops itself when the relay refuses too many of its last
recipients, or when too many of them bounce, as a real engine sends to a loopback relay
and a real `sendstatus intake` subprocess reads the bounces back."""

import json
import os
import re
import subprocess
import sys

import pytest

from sendstatus_tui.core.coordination import deliveries
from sendstatus_tui.core.feedback.effects import apply
from sendstatus_tui.core.model import guard, lifecycle, signing
from sendstatus_tui.core.model.audit import Source
from sendstatus_tui.core.model.feedback import Report, ReportVerdict
from sendstatus_tui.core.model.states import State
from sendstatus_tui.core.model.verp import sign
from sendstatus_tui.tui.screens.confirm import ConfirmModal
from sendstatus_tui.views.cells import quoted

from .feedback_reports import deliver, dsn, maildir
from .helpers import (
    mailing,
    notifications,
    open_dashboard,
    press_on,
    refresh,
    scenario,
    select_mailing,
    settle,
    text_of,
    until,
    wait_until,
)
from .smtp_relay import RelayScript

REASON = re.compile(
    r"stopped by guard: ([\d,]+) (refusals|hard bounces|complaints) in the last ([\d,]+)"
    r"( tried)? \((\d+\.\d+) %\)"
)


def as_json(run, *args):
    status, out, err = run(*args)
    assert status == 0, err
    return json.loads(out)


def guard_stops(run, mailing_id: int) -> list[dict]:
    return [
        entry
        for entry in as_json(run, "log", str(mailing_id), "--json")
        if entry["action"] == "stopped" and entry["user"] == "guard"
    ]


def numbers(reason: str) -> tuple[int, int, float]:
    found = REASON.fullmatch(reason)
    assert found, reason
    return int(found[1].replace(",", "")), int(found[3].replace(",", "")), float(found[5])


def refusing(every: int, recipients: int) -> RelayScript:
    """A relay that refuses every ``every``-th recipient of make_mailing's."""
    refused = {
        f"person{i}@example.com": ["550 5.7.1 rejected by policy"]
        for i in range(recipients)
        if i % every == 0
    }
    return RelayScript(rcpt_replies=refused)


def test_a_mailing_the_relay_refuses_too_often_stops_itself(
    run, store, make_mailing, relays, engine_for
):
    total = 900
    relay = relays(refusing(3, total))  # a third refused: over the 20 % default
    mailing_id = make_mailing(recipients=total)
    assert run("send-now", str(mailing_id))[0] == 0
    engine_for(relay)
    wait_until(lambda: mailing(store, mailing_id).state == "standby", timeout=60, what="the guard")
    shown = as_json(run, "show", str(mailing_id), "--json")
    assert shown["area"] == "standby"
    refused, window, percent = numbers(shown["reason"])
    assert "refusals" in shown["reason"] and " tried (" in shown["reason"]
    assert window >= 200 and refused / window > 0.2
    assert percent == pytest.approx(100 * refused / window, abs=0.06)
    tried_first = shown["sent"] + shown["failed"]
    assert tried_first < total  # stopped while sending, not at the end
    (entry,) = guard_stops(run, mailing_id)
    assert entry["source"] == "engine" and entry["detail"].startswith(shown["reason"])

    # sending it again asks, saying why it was stopped
    status, _, err = run("send-now", str(mailing_id))
    assert status == 1
    assert f"mailing {mailing_id} was stopped by guard: " in err and "--yes" in err
    assert as_json(run, "show", str(mailing_id), "--json")["state"] == "standby"
    # confirmed, it starts a window afresh: the next stop counts only the new tries
    assert run("send-now", str(mailing_id), "--yes")[0] == 0
    wait_until(lambda: len(guard_stops(run, mailing_id)) == 2, timeout=60, what="a second stop")
    again = as_json(run, "show", str(mailing_id), "--json")
    _, window_again, _ = numbers(again["reason"])
    assert window_again <= again["sent"] + again["failed"] - tried_first
    assert again["sent"] + again["failed"] < total


def test_with_the_guard_off_it_sends_to_the_end(run, store, make_mailing, relays, engine_for):
    total = 400
    relay = relays(refusing(2, total))
    assert run("config", "set", "guard_refusals", "off")[0] == 0
    mailing_id = make_mailing(recipients=total)
    assert run("send-now", str(mailing_id))[0] == 0
    engine_for(relay)
    wait_until(lambda: mailing(store, mailing_id).state == "completed", timeout=60)
    shown = as_json(run, "show", str(mailing_id), "--json")
    assert (shown["sent"], shown["failed"]) == (200, 200)
    assert guard_stops(run, mailing_id) == []


@pytest.mark.idle  # an intake beside an engine at 100/s, 30 s of margin: under half a core
def test_a_mailing_that_bounces_stops_while_still_sending(
    run, db_url, store, make_mailing, relay, engine_for, tmp_path
):
    assert run("config", "set", "return_path", "bounces@bounce.example.com")[0] == 0
    assert run("config", "set", "rate", "100/s")[0] == 0  # slow: still sending meanwhile
    total = 4_000
    mailing_id = make_mailing(recipients=total)
    assert run("send-now", str(mailing_id))[0] == 0
    engine_for(relay)
    wait_until(lambda: mailing(store, mailing_id).sent >= 520, timeout=120, what="520 sent")
    box = maildir(tmp_path / "bounces")
    for number, received in enumerate(list(relay.received)[:120]):
        report = dsn(received.mail_from, received.data, final_recipient=received.rcpt)
        deliver(box, f"{number}.bounce", report)
    process = subprocess.Popen(
        [sys.executable, "-m", "sendstatus_tui.cli.main", "--db", db_url, "intake"]
        + [f"maildir:{box}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=os.environ.copy(),
    )
    _, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    assert "stopped by guard" in err
    shown = as_json(run, "show", str(mailing_id), "--json")
    assert shown["state"] == "standby", shown
    bounced, window, percent = numbers(shown["reason"])
    assert "hard bounces" in shown["reason"]
    assert window >= 500 and bounced / window > 0.05
    assert percent == pytest.approx(100 * bounced / window, abs=0.06)
    assert shown["bounced"] == 120  # the rest were still applied, after the stop
    assert shown["sent"] + shown["failed"] < total
    (entry,) = guard_stops(run, mailing_id)
    assert entry["source"] == "intake" and entry["detail"].startswith(shown["reason"])


def test_a_completed_mailing_is_never_stopped(
    run, db_url, store, make_mailing, relay, engine_for, tmp_path
):
    assert run("config", "set", "return_path", "bounces@bounce.example.com")[0] == 0
    assert run("config", "set", "guard_hard_bounces", "1%")[0] == 0
    mailing_id = make_mailing(recipients=600)
    assert run("send-now", str(mailing_id))[0] == 0
    engine_for(relay)
    wait_until(lambda: mailing(store, mailing_id).state == "completed", timeout=60)
    box = maildir(tmp_path / "bounces")
    for number, received in enumerate(list(relay.received)[:60]):
        deliver(box, f"{number}.bounce", dsn(received.mail_from, received.data))
    process = subprocess.run(
        [sys.executable, "-m", "sendstatus_tui.cli.main", "--db", db_url, "intake"]
        + [f"maildir:{box}"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert process.returncode == 0, process.stderr
    shown = as_json(run, "show", str(mailing_id), "--json")
    assert shown["state"] == "completed" and shown["bounced"] == 60


@pytest.mark.parametrize(
    ("given", "stored"),
    [("5%", "5%"), ("5", "5%"), ("0.1 %", "0.1%"), ("OFF", "off"), ("100%", "100%")],
)
def test_guard_settings_are_checked(run, given, stored):
    assert run("init")[0] == 0
    assert run("config", "set", "guard_complaints", given) == (
        0,
        f"guard_complaints = {stored}\n",
        "",
    )


@pytest.mark.parametrize("given", ["0", "101%", "five", "0.0%"])
def test_bad_guard_settings_are_refused(run, given):
    assert run("init")[0] == 0
    status, _, err = run("config", "set", "guard_refusals", given)
    assert status == 1 and err.startswith("error: setting guard_refusals: ")


@scenario
async def test_a_dashboard_tells_when_the_guard_stops_a_mailing(db):
    guarded = db.sending("Flash sale", recipients=10)
    stopped = db.sending("Spring sale", recipients=10)
    db.engine_elsewhere()
    reason = "stopped by guard: 60 refusals in the last 250 tried (24.0 %)"

    def guard_stop(session, mailing_id):
        actor = guard.actor(Source.ENGINE)
        return lifecycle.stop(session, mailing_id, actor=actor, reason=reason)

    async with open_dashboard(db.store) as (app, pilot):
        db.do(guard_stop, guarded)
        db.do(lifecycle.stop, stopped)  # an operator's stop: no notification
        await refresh(pilot)
        assert notifications(app) == [f"{quoted('Flash sale')} {reason}"]


def test_complaints_stop_a_sending_mailing_once_a_thousand_were_sent(store, make_mailing):
    mailing_id = make_mailing(recipients=1_200)
    with store.write() as session:
        lifecycle.send_now(session, mailing_id)
        lifecycle.mark_prepared(session, mailing_id)
    with store.write() as session:
        claimed = deliveries.claim(session, mailing_id, 1_000, claimant="test")
        outcomes = [deliveries.Outcome(r, deliveries.SENT, "250 ok") for r in claimed]
        deliveries.record(session, mailing_id, outcomes, claimant="test")
        key = signing.signing_key(session)

    def complaint(recipient_id: int) -> Report:
        code = sign(key, mailing_id, recipient_id)
        return Report(ReportVerdict.COMPLAINT, f"arf-{recipient_id}", header_codes=(code,))

    for number, recipient in enumerate(claimed[:2]):
        with store.write() as session:
            apply(session, complaint(recipient.id))
        with store.write() as session:
            reason = guard.check_feedback(session, mailing_id)
        # 1 of 1,000 is 0.1 %: not over the limit; the second is
        assert (reason is None) == (number == 0)
    assert reason == "stopped by guard: 2 complaints in the last 1,000 (0.20 %)"
    assert mailing(store, mailing_id).state == "standby"


@scenario
async def test_the_dashboard_asks_before_sending_again_a_mailing_the_guard_stopped(db):
    guarded = db.sending("Flash sale", recipients=10)
    stopped = db.sending("Spring sale", recipients=10)
    db.engine_elsewhere()
    reason = "stopped by guard: 60 refusals in the last 250 tried (24.0 %)"

    def guard_stop(session, mailing_id):
        return lifecycle.stop(session, mailing_id, actor=guard.actor(Source.ENGINE), reason=reason)

    db.do(guard_stop, guarded)
    db.do(lifecycle.stop, stopped)
    async with open_dashboard(db.store) as (app, pilot):
        for key in ("s", "e"):  # send now, send sequentially: asked, and declined
            modal = await press_on(pilot, guarded, key, ConfirmModal)
            assert text_of(modal.query_one("#title")) == f"Send {quoted('Flash sale')} again?"
            message = text_of(modal.query_one("#message"))
            assert f"It was {reason}." in message and "window afresh" in message
            await pilot.press("escape")
            await until(pilot, lambda: not isinstance(app.screen, ConfirmModal), "the answer")
            await settle(pilot)
            assert (db.get(guarded).state, db.get(guarded).state_reason) == (
                State.STANDBY,
                reason,
            )
        # confirmed, it sends; an operator's stop is sent again without asking
        await press_on(pilot, guarded, "s", ConfirmModal)
        await pilot.press("y")
        await until(pilot, lambda: db.get(guarded).state != State.STANDBY, "sending again")
        assert db.get(guarded).state in (State.STARTING, State.SENDING)
        await select_mailing(pilot, stopped)
        await pilot.press("s")
        await until(pilot, lambda: db.get(stopped).state != State.STANDBY, "sending again")
        assert not isinstance(app.screen, ConfirmModal)
