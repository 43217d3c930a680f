"""The engine sends through the relays stored in the database (issue 20): one pool per
relay, messages spread by weight, a relay down marked so by this engine and its share moved
to the others, taken back when it answers again; changes followed without a restart. Two
real SMTP relays on loopback."""

import time
from collections import Counter

import pytest
from sqlmodel import select

from sendstatus_tui.cli.main import main
from sendstatus_tui.core.coordination import relay_breakers
from sendstatus_tui.core.model import lifecycle, settings
from sendstatus_tui.core.model import relays as stored_relays
from sendstatus_tui.core.model.models import Recipient
from sendstatus_tui.core.model.relays import RelayChange
from sendstatus_tui.engine import routes
from sendstatus_tui.engine.engine import Engine
from sendstatus_tui.engine.thread import EngineThread

from .engine_processes import assert_books_balance
from .helpers import FAST, act, mailing, stop_engine_thread, wait_until


@pytest.fixture
def stored_engine(store):
    """An engine that sends through the relays stored in the database (no --smtp)."""
    threads = []

    def start() -> EngineThread:
        thread = EngineThread(Engine(store, None, FAST)).start()
        threads.append(thread)
        return thread

    yield start
    for thread in threads:
        stop_engine_thread(thread)


def add_relay(store, name, relay, **change) -> None:
    with store.write() as session:
        stored_relays.add(session, name, RelayChange(**{"url": relay.url, **change}))


def send(store, make_mailing, recipients, *, through=None) -> int:
    mailing_id = make_mailing(recipients=recipients)
    if through is not None:
        with store.write() as session:
            row = mailing(store, mailing_id)
            row.relays = through
            session.add(row)
    act(store, lifecycle.send_now, mailing_id)
    return mailing_id


def completed(store, mailing_id, timeout=30.0) -> None:
    wait_until(
        lambda: mailing(store, mailing_id).state == "completed",
        timeout=timeout,
        what=f"mailing {mailing_id} completed",
    )


def downs(store) -> dict[str, str]:
    with store.read() as session:
        return {row.relay: row.reason for row in relay_breakers.breakers(session)}


def test_messages_are_spread_over_the_relays_by_weight(store, make_mailing, relays, stored_engine):
    heavy, light = relays(), relays()
    add_relay(store, "heavy", heavy, weight=3)
    add_relay(store, "light", light, weight=1)
    stored_engine()
    mailing_id = send(store, make_mailing, 800)
    completed(store, mailing_id)
    assert_books_balance(store, mailing_id)
    both = heavy.copies() + light.copies()
    assert len(both) == 800 and set(both.values()) == {1}  # each once, through one relay
    assert len(heavy.recipients()) / 800 == pytest.approx(0.75, abs=0.05)
    assert len(light.recipients()) / 800 == pytest.approx(0.25, abs=0.05)


def test_a_mailing_goes_only_through_the_relays_it_names(
    store, make_mailing, relays, stored_engine
):
    main_relay, backup = relays(), relays()
    add_relay(store, "main", main_relay)
    add_relay(store, "backup", backup)
    stored_engine()
    mailing_id = send(store, make_mailing, 30, through="backup")
    completed(store, mailing_id)
    assert len(backup.copies()) == 30 and main_relay.recipients() == []


@pytest.mark.idle  # mostly waits, under 0.4 of a core (docs/maintenance.md)
def test_the_engine_follows_a_relay_added_and_removed_without_a_restart(
    store, make_mailing, relays, stored_engine
):
    first, second = relays(), relays()
    add_relay(store, "first", first)
    with store.write() as session:
        settings.write(session, "rate", "100/s")
    stored_engine()
    mailing_id = send(store, make_mailing, 600)
    wait_until(lambda: len(first.recipients()) > 20, what="sending through the first relay")
    add_relay(store, "second", second)
    wait_until(lambda: len(second.recipients()) > 20, timeout=5, what="the second relay used")
    with store.write() as session:
        stored_relays.remove(session, "first")
    seen = len(first.recipients())
    wait_until(lambda: len(second.recipients()) > 200, what="the second relay alone")
    assert len(first.recipients()) <= seen + 120  # only what was in flight as it went
    completed(store, mailing_id)
    assert_books_balance(store, mailing_id)


@pytest.mark.idle  # mostly waits, under 0.4 of a core (docs/maintenance.md)
def test_a_relay_killed_mid_send_loses_nobody_and_takes_its_share_back(
    store, make_mailing, relays, stored_engine, capsys
):
    """Issue 20: kill one relay mid-send: every recipient is delivered once or counted in
    doubt, the other takes the load, and the first takes its share back when it returns."""
    killed, survivor = relays(), relays()
    add_relay(store, "killed", killed)
    add_relay(store, "survivor", survivor)
    with store.write() as session:
        settings.write(session, "rate", "150/s")
    engine = stored_engine()
    mailing_id = send(store, make_mailing, 1200)
    wait_until(lambda: len(killed.recipients()) > 100, what="both relays in use")
    killed.stop()
    wait_until(lambda: "killed" in downs(store), timeout=5, what="the relay shown down")
    assert main(["--db", store.url, "relay", "ls"]) == 0
    listed = capsys.readouterr().out
    assert "killed = " in listed and f"down for {engine.engine.holder.split(':')[0]}" in listed
    assert listed.splitlines()[1].endswith("; up")  # the survivor
    assert main(["--db", store.url, "engines"]) == 0
    assert "; relay killed down since " in capsys.readouterr().out
    before = len(survivor.recipients())
    wait_until(lambda: len(survivor.recipients()) > before + 150, what="the survivor takes it all")
    killed.start()
    returned = len(killed.recipients())
    wait_until(lambda: len(killed.recipients()) > returned + 50, timeout=10, what="share back")
    wait_until(lambda: downs(store) == {}, timeout=5, what="no relay shown down")
    completed(store, mailing_id, timeout=60)
    row = assert_books_balance(store, mailing_id)
    copies = killed.copies() + survivor.copies()
    with store.read() as session:
        emails = session.exec(select(Recipient.email).where(Recipient.mailing_id == mailing_id))
        everyone = set(emails)
    assert set(copies) == everyone  # nobody lost
    duplicates = sum(count - 1 for count in copies.values())
    assert duplicates <= row.resent_in_doubt  # each extra copy counted in doubt
    assert row.sent == 1200 and row.failed == 0


def test_a_relay_that_refuses_this_engine_is_left_out_and_the_mailing_goes_on(
    store, make_mailing, relays, stored_engine
):
    """No credentials here for a relay that demands them: the other relays carry the
    mailing, and the relay is shown down for this engine, with why."""
    from .smtp_relay import RelayScript

    needs_login = relays(RelayScript(credentials=("user", "secret")))
    open_relay = relays()
    add_relay(store, "needs-login", needs_login)
    add_relay(store, "open", open_relay)
    stored_engine()
    mailing_id = send(store, make_mailing, 40)
    completed(store, mailing_id)
    assert len(open_relay.copies()) == 40 and needs_login.recipients() == []
    wait_until(lambda: "530" in downs(store).get("needs-login", ""), what="shown down, and why")


def test_unusable_credentials_leave_the_relay_out_and_say_so(
    store, make_mailing, relays, stored_engine, monkeypatch
):
    good, unusable = relays(), relays()
    add_relay(store, "good", good)
    add_relay(store, "half", unusable)
    monkeypatch.setenv("SENDSTATUS_RELAY_HALF_USER", "someone")  # and no password
    stored_engine()
    mailing_id = send(store, make_mailing, 20)
    completed(store, mailing_id)
    assert Counter(good.recipients()) and unusable.recipients() == []
    wait_until(lambda: "half" in downs(store), timeout=5, what="the relay shown left out")
    assert "SENDSTATUS_RELAY_HALF_PASSWORD" in downs(store)["half"]


def test_a_relay_left_out_for_its_credentials_file_is_used_once_the_file_is_mended(
    store, make_mailing, relays, stored_engine, monkeypatch, tmp_path
):
    monkeypatch.setattr(routes, "LEFT_OUT_RETRY_SECONDS", 0.3)
    credentials = tmp_path / "credentials.toml"
    credentials.write_text('[relay.mended]\nusername = "u"\npassword = "p"\n')
    credentials.chmod(0o644)  # others can read it: refused
    monkeypatch.setenv("SENDSTATUS_CREDENTIALS", str(credentials))
    relay = relays()
    add_relay(store, "mended", relay, url=relay.url + "&plaintext_auth=yes")
    stored_engine()
    wait_until(lambda: "mended" in downs(store), timeout=5, what="the relay shown left out")
    assert "chmod 600" in downs(store)["mended"]

    credentials.chmod(0o600)  # mended while the engine runs
    wait_until(lambda: "mended" not in downs(store), timeout=5, what="the relay taken back")
    completed(store, send(store, make_mailing, 5))
    assert len(relay.recipients()) == 5 and relay.auth_attempts >= 1


@pytest.mark.idle  # mostly waits, under 0.4 of a core (docs/maintenance.md)
def test_a_relays_rate_is_shared_by_every_engine(store, make_mailing, relays, stored_engine):
    """Two engines, one relay at 20/s: together they send to it no faster (the database's
    rate is unlimited here, and neither engine has a cap of its own)."""
    paced = relays()
    add_relay(store, "paced", paced, rate="20/s")
    began = time.monotonic()  # the relay's clock; no slot of the rate lies before this
    stored_engine(), stored_engine()
    mailing_id = send(store, make_mailing, 60)
    completed(store, mailing_id)
    times = sorted(received.at for received in paced.received)
    assert len(times) == 60
    # never early (a machine under load may send late, then several at once): by any time,
    # at most one message per 1/20 s since the start
    for index, at in enumerate(times):
        assert at - began >= index / 20 - 0.05, (index, at - began)
