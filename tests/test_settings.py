"""Stored settings (`sendstatus config`): what every engine on a database shares."""

import json
import signal
import subprocess
import sys

import pytest

from sendstatus_tui.core.coordination import heartbeats
from sendstatus_tui.core.model import lifecycle, settings
from sendstatus_tui.core.model.models import utc_now

from .helpers import mailing, wait_until


@pytest.fixture
def config(run):
    """Runs ``sendstatus --db <db> config ARGS`` on a database that exists (config never
    creates one); returns (exit status, stdout, stderr)."""
    assert run("init")[0] == 0
    return lambda *args: run("config", *args)


def test_a_setting_is_stored_read_and_removed(config):
    assert config("rate", "36000/h") == (0, "rate = 36000/h\n", "")
    assert config("rate") == (0, "36000/h\n", "")
    assert config("get", "rate") == (0, "36000/h\n", "")
    assert config("set", "relay", "smtp://relay.example.com:587") == (
        0,
        "relay = smtp://relay.example.com:587\n",
        "",
    )
    status, out, _ = config("--json")
    assert status == 0
    assert json.loads(out) == {
        "relay": "smtp://relay.example.com:587",
        "rate": "36000/h",
        "unsubscribe_url": None,
        "unsubscribe_mailto": None,
        "suppress_unknown_users": None,
        "return_path": None,
        "complaints_address": None,
        "suppress_bounces": None,
        "guard_hard_bounces": None,
        "guard_complaints": None,
        "guard_refusals": None,
        "window": None,
        "domain_limits": None,
        "alert_command": None,
        "alert_webhook": None,
        "alert_relay_down": None,
        "alert_stalled": None,
        "alert_completed": None,
    }
    assert config("unset", "rate") == (0, "rate: not set\n", "")
    status, out, _ = config()
    assert status == 0
    assert "rate                    (not set)" in out
    assert "relay                   smtp://relay.example.com:587" in out


@pytest.mark.parametrize(
    ("key", "value", "why"),
    [
        ("rate", "12/fortnight", "not a rate: '12/fortnight'"),
        # issue "Promises that hold": 0 is no longer unlimited (a pause is a stop), a rate
        # too large for a number no longer wedges every claim, a negative one is no usage
        # error of the parser
        ("rate", "0", "a rate of 0 would send nothing: to pause a mailing, `sendstatus stop"),
        ("rate", "0/min", "would send nothing"),
        ("rate", "1e400/s", "too large: rates from 1/h to 1000000/s are accepted"),
        ("rate", "9" * 400 + "/s", "too large: rates from 1/h to 1000000/s are accepted"),
        ("rate", "1000001/s", "too large"),
        ("rate", "-5/s", "a rate cannot be negative: '-5/s'"),
        ("rate", "-600/min", "a rate cannot be negative"),
        ("relay", "smtp://user:secret@relay.example.com", "must not carry credentials"),
        ("relay", "smtp://relay.example.com?pool=lots", "pool='lots'"),
        ("relay", "ftp://relay.example.com", "unknown relay"),
        ("unsubscribe_url", "http://shop.example.com/u/{token}", "expected an https:// URL"),
        ("unsubscribe_mailto", "not an address", "unsubscribe_mailto"),
        ("suppress_unknown_users", "maybe", "expected yes or no"),
        ("return_path", "bounces+x@bounce.example.com", "no '+' in the return path"),
        ("return_path", "b" * 20 + "@bounce.example.com", "18 characters at most"),
        ("suppress_bounces", "perhaps", "expected yes or no"),
    ],
)
def test_a_bad_value_is_refused_and_the_stored_one_kept(config, key, value, why):
    good = {
        "rate": "10/s",
        "relay": "smtp://relay.example.com",
        "unsubscribe_url": "https://shop.example.com/u/{token}",
        "unsubscribe_mailto": "unsubscribe@shop.example.com",
        "suppress_unknown_users": "no",
        "return_path": "bounces@bounce.example.com",
        "suppress_bounces": "no",
    }[key]
    assert config(key, good)[0] == 0
    status, out, err = config(key, value)
    assert status == 1 and out == ""
    assert err.startswith(f"error: setting {key}: ") and why in err
    assert "secret" not in err
    assert config(key) == (0, f"{good}\n", "")


def test_rates_from_the_smallest_to_the_largest_are_taken_as_written(config):
    for rate in ("1/h", "1000000/s", "60000000/min", "1.5e3/min", "unlimited"):
        assert config("rate", rate) == (0, f"rate = {rate}\n", "")
    status, _, err = config("rate", "0.5/h")
    assert status == 1 and "too small: rates from 1/h to 1000000/s are accepted" in err


def test_unknown_keys_and_stray_words_are_refused(config):
    status, _, err = config("colour", "blue")
    assert status == 1 and "unknown setting 'colour': known are relay, rate," in err
    status, _, err = config("unset", "rate", "now")
    assert status == 1 and "unexpected 'now'" in err
    status, _, err = config("set")
    assert status == 1 and "which setting?" in err


def test_yes_no_settings_are_stored_in_one_spelling(store):
    with store.write() as session:
        assert settings.write(session, "suppress_unknown_users", " ON ") == "yes"
    with store.read() as session:
        assert settings.read(session, "suppress_unknown_users") == "yes"


def test_changing_the_relay_needs_no_restart_of_the_running_engines(config, store):
    """Engines follow the stored relays within seconds (tests/test_relays_engine.py): the
    operator is told nothing about restarting them."""
    with store.write() as session:
        heartbeats.beat(
            session,
            heartbeats.Beat(
                "vm:4242:x", "vm", 4242, "leader", utc_now(), (), 0, 0.0, 1, "starting size"
            ),
            fresh=True,
        )
    status, out, err = config("relay", "smtp://other.example.com:587")
    assert (status, out, err) == (0, "relay = smtp://other.example.com:587\n", "")


def test_the_engine_sends_through_the_stored_relay_at_the_stored_rate(
    db_url, store, make_mailing, relay
):
    """No --smtp and no --rate: the engine takes both from the database."""
    with store.write() as session:
        settings.write(session, "relay", relay.url)
        settings.write(session, "rate", "20/s")
    mailing_id = make_mailing(recipients=30)
    with store.write() as session:
        lifecycle.send_now(session, mailing_id)
    engine = subprocess.Popen(
        [sys.executable, "-m", "sendstatus_tui.cli.main", "engine", "--db", db_url],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until(lambda: len(relay.received) >= 10, what="messages at the stored relay")
        first = mailing(store, mailing_id).started_at
        wait_until(lambda: mailing(store, mailing_id).state == "completed", what="completion")
        finished = mailing(store, mailing_id).finished_at
    finally:
        engine.send_signal(signal.SIGTERM)
        engine.wait(timeout=30)
    assert len(relay.received) == 30
    # 30 messages at 20/s take at least 1.45 s (the first goes at once)
    assert (finished - first).total_seconds() >= 1.4
