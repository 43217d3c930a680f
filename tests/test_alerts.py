"""Alerts: incidents found by the leading engine, told once when due and once when they end
(to alert_command and alert_webhook), never repeated by a new leader, never in the way of
the sending."""

import asyncio
import json
import threading
from datetime import UTC, timedelta

import pytest
from aiohttp import web

from sendstatus_tui.core.coordination import deliveries, heartbeats, incidents
from sendstatus_tui.core.coordination.incidents import Progress
from sendstatus_tui.core.model import audit, lifecycle, settings
from sendstatus_tui.core.model.guard import REASON_PREFIX
from sendstatus_tui.core.model.models import utc_now
from sendstatus_tui.core.model.waiting import WaitingKind
from sendstatus_tui.engine.headless import ALERT_TIMEOUT_ENV
from sendstatus_tui.views.activity import activity_line

from .engine_processes import EngineProcesses
from .helpers import act, mailing, wait_until
from .ports import free_port

RELAY_REPLY = "cannot reach smtp://127.0.0.1:2525: [Errno 111] Connection refused"


def leader_pass(store, progress: Progress, now) -> list[incidents.Alert]:
    """One pass of a leader at ``now``: incidents reconciled; the alerts due, told."""
    with store.write() as session:
        incidents.reconcile(session, incidents.troubles(session, now, progress), now)
        alerts = incidents.to_tell(session, now)
        for alert in alerts:
            incidents.told(session, alert)
    return alerts


def told(alerts) -> list[tuple[str, bool, int | None]]:
    return [(alert.kind, alert.ended, alert.mailing_id) for alert in alerts]


class TestIncidents:
    def test_a_relay_down_is_told_once_after_its_delay_and_once_when_it_ends(
        self, store, make_mailing
    ):
        mailing_id = make_mailing("Relay trouble", recipients=5)
        act(store, lifecycle.send_now, mailing_id)
        act(
            store,
            deliveries.show_waiting,
            mailing_id,
            WaitingKind.RELAY_DOWN,
            RELAY_REPLY,
            utc_now(),
        )
        now, progress = utc_now(), Progress({})
        assert leader_pass(store, progress, now) == []  # not yet 5 min
        assert leader_pass(store, progress, now + timedelta(minutes=4)) == []
        [alert] = leader_pass(store, progress, now + timedelta(minutes=5))
        assert told([alert]) == [("relay_down", False, mailing_id)]
        assert alert.reason == f"waits for its relay: {RELAY_REPLY}"
        event = alert.as_json("mailer-1")
        assert (event["state"], event["host"]) == ("open", "mailer-1")
        assert event["mailing"] == {"id": mailing_id, "name": "Relay trouble"}
        # the audit trail, whose activity the dashboard shows, lists it with the changes
        with store.read() as session:
            entry = audit.history(session, mailing_id)[-1]
        assert (entry.action, entry.source) == ("alert", "engine")
        assert activity_line(entry, UTC).endswith(
            f"the engine  alerted about {mailing_id} “Relay trouble”"
            f" (relay_down: waits for its relay: {RELAY_REPLY})"
        )
        # told: not again, by this leader or by a new one
        assert leader_pass(store, progress, now + timedelta(minutes=6)) == []
        assert leader_pass(store, Progress({}), now + timedelta(minutes=7)) == []
        # the relay is back: the end, told once
        act(store, deliveries.show_waiting, mailing_id, None)
        later = now + timedelta(minutes=8)
        assert told(leader_pass(store, progress, later)) == [("relay_down", True, mailing_id)]
        assert leader_pass(store, progress, later + timedelta(minutes=1)) == []

    def test_a_trouble_gone_before_its_delay_is_never_told(self, store, make_mailing):
        mailing_id = make_mailing("Blip", recipients=5)
        act(store, lifecycle.send_now, mailing_id)
        act(
            store,
            deliveries.show_waiting,
            mailing_id,
            WaitingKind.RELAY_DOWN,
            RELAY_REPLY,
            utc_now(),
        )
        now, progress = utc_now(), Progress({})
        assert leader_pass(store, progress, now) == []
        act(store, deliveries.show_waiting, mailing_id, None)
        assert leader_pass(store, progress, now + timedelta(minutes=1)) == []
        # down again later: a new incident, due 5 min after it was seen again
        act(
            store,
            deliveries.show_waiting,
            mailing_id,
            WaitingKind.RELAY_DOWN,
            RELAY_REPLY,
            utc_now(),
        )
        assert leader_pass(store, progress, now + timedelta(minutes=2)) == []
        assert told(leader_pass(store, progress, now + timedelta(minutes=7))) == [
            ("relay_down", False, mailing_id)
        ]

    def test_a_mailing_that_sends_nothing_is_told_stalled(self, store, make_mailing):
        mailing_id = make_mailing("Stuck", recipients=5)
        act(store, lifecycle.send_now, mailing_id)
        with store.write() as session:
            settings.write(session, "alert_stalled", "2min")
        now, progress = utc_now(), Progress({})
        assert leader_pass(store, progress, now) == []
        assert leader_pass(store, progress, now + timedelta(seconds=90)) == []
        [alert] = leader_pass(store, progress, now + timedelta(minutes=2))
        assert told([alert]) == [("stalled", False, mailing_id)]
        assert "with 5 to send" in alert.reason

    def test_completions_are_told_only_when_asked_for(self, store, make_mailing):
        mailing_id = make_mailing("Done", recipients=1)
        act(store, lifecycle.send_now, mailing_id)
        with store.write() as session:
            row = lifecycle.get(session, mailing_id)
            row.state, row.sent, row.finished_at = "completed", 1, utc_now()
        now = utc_now()
        assert leader_pass(store, Progress({}), now) == []  # alert_completed is off
        with store.write() as session:
            settings.write(session, "alert_completed", "yes")
        assert told(leader_pass(store, Progress({}), now)) == [("completed", False, mailing_id)]
        # told once: no end to tell, and never again
        assert leader_pass(store, Progress({}), now + timedelta(minutes=2)) == []
        assert leader_pass(store, Progress({}), now + timedelta(hours=2)) == []

    def test_a_guard_stop_is_told_at_once_and_ends_when_it_is_sent_again(self, store, make_mailing):
        mailing_id = make_mailing("Bouncing", recipients=5)
        act(store, lifecycle.send_now, mailing_id)
        with store.write() as session:
            lifecycle.stop(session, mailing_id, reason=f"{REASON_PREFIX}: 612 hard bounces")
        now = utc_now()
        [alert] = leader_pass(store, Progress({}), now)
        assert told([alert]) == [("guard_stop", False, mailing_id)]
        assert alert.reason == f"{REASON_PREFIX}: 612 hard bounces"
        act(store, lifecycle.send_now, mailing_id)
        assert told(leader_pass(store, Progress({}), now + timedelta(seconds=5))) == [
            ("guard_stop", True, mailing_id)
        ]

    def test_a_lost_engine_is_told_and_ends_once_its_row_is_gone(self, store):
        beat = heartbeats.Beat(
            "mailer-2:4242:ab", "mailer-2", 4242, "sender", utc_now(), (), 0, 0.0, 0, ""
        )
        with store.write() as session:
            heartbeats.beat(session, beat, fresh=True)
        silent = utc_now() + heartbeats.LOST_AFTER + timedelta(seconds=1)
        [alert] = leader_pass(store, Progress({}), silent)
        assert told([alert]) == [("engine_lost", False, None)]
        assert alert.reason.startswith("engine mailer-2 pid 4242 silent since")
        with store.write() as session:
            heartbeats.forget(session, beat.id)  # its claims rescued, its row removed
        assert told(leader_pass(store, Progress({}), silent)) == [("engine_lost", True, None)]


class TestSettings:
    @pytest.mark.parametrize(
        ("key", "value", "error"),
        [
            ("alert_relay_down", "5m", "expected a duration such as 30s, 5min or 2h"),
            ("alert_stalled", "0s", "expected a duration such as 30s, 5min or 2h"),
            ("alert_stalled", "200h", "at most a week"),
            ("alert_webhook", "ftp://hooks.example.com/x", "expected an http:// or https:// URL"),
            ("alert_webhook", "https://u:p@hooks.example.com/x", "no credentials in the URL"),
            ("alert_command", "echo one\necho two", "expected one command line"),
        ],
    )
    def test_bad_values_are_refused_and_change_nothing(self, store, run, key, value, error):
        status, _, err = run("config", "set", key, value)
        assert status != 0 and error in err and err.startswith("error:")
        assert run("config", "get", key)[1] == f"{key}: not set\n"


# --- a real engine, a real command, a real webhook --------------------------------------------


class Webhook:
    """An HTTP server on loopback that keeps the JSON it is POSTed."""

    def __init__(self):
        self.events: list[dict] = []
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    async def _receive(self, request: web.Request) -> web.Response:
        self.events.append(await request.json())
        return web.Response(text="ok")

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        app.router.add_post("/hook", self._receive)
        self._runner = web.AppRunner(app)
        self._loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        self._loop.run_until_complete(site.start())
        self._ready.set()
        self._loop.run_forever()

    def start(self) -> "Webhook":
        self._thread.start()
        self._ready.wait(10)
        return self

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


# The engine's telling, with real processes, runs on one database: the incidents it tells
# are stored and read on both (TestIncidents), and no database changes how it tells them.
ONE_DATABASE = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
HANG_SECONDS = 5  # SENDSTATUS_ALERT_TIMEOUT_SECONDS of the engine whose command hangs


@pytest.fixture
def webhook():
    hook = Webhook().start()
    yield hook
    hook.stop()


@pytest.fixture
def down_relay(relays):
    return relays(running=False)


@pytest.fixture
def engines(db_url, down_relay, tmp_path):
    processes = EngineProcesses(db_url, down_relay.url, tmp_path)
    yield processes
    processes.stop_all()


def configure(run, **values: str) -> None:
    for key, value in values.items():
        assert run("config", "set", key, value)[0] == 0


def events_in(path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.mark.idle  # waits on the alerts' passes: no bound but deadlines
@ONE_DATABASE
def test_an_alert_command_is_told_when_the_relay_is_down_and_when_it_is_back(
    store, make_mailing, engines, down_relay, run, tmp_path
):
    told_file = tmp_path / "alerts.jsonl"
    configure(run, alert_relay_down="2s", alert_command=f"cat >> {told_file}; echo >> {told_file}")
    mailing_id = make_mailing("Waiting", recipients=5)
    act(store, lifecycle.send_now, mailing_id)
    engines.start("--allow-alert-command", lease=True)

    wait_until(lambda: events_in(told_file), 40, "the alert command to be told")
    [opened] = events_in(told_file)
    assert (opened["kind"], opened["state"]) == ("relay_down", "open")
    assert opened["mailing"] == {"id": mailing_id, "name": "Waiting"}
    assert "waits for its relay" in opened["reason"] and opened["host"]

    down_relay.start()
    wait_until(lambda: mailing(store, mailing_id).state == "completed", 60, "the send to end")
    wait_until(lambda: len(events_in(told_file)) == 2, 30, "the end to be told")
    ended = events_in(told_file)[1]
    assert (ended["kind"], ended["state"], ended["mailing"]["id"]) == (
        "relay_down",
        "ended",
        mailing_id,
    )


@pytest.mark.idle  # mostly waits, under 0.4 of a core (docs/maintenance.md)
@ONE_DATABASE
def test_a_hanging_alert_command_is_killed_and_the_sending_goes_on(
    store, make_mailing, engines, down_relay, run, webhook, tmp_path, monkeypatch
):
    # the command hangs the first time only, for the timeout: a shorter one than the default
    # 10 s, still long enough for the second mailing to complete while it hangs
    monkeypatch.setenv(ALERT_TIMEOUT_ENV, str(HANG_SECONDS))
    down_relay.start()
    hanging = tmp_path / "hanging"
    command = f"test -e {hanging} && exit 0; touch {hanging}; sleep 60"
    configure(run, alert_completed="yes", alert_command=command, alert_webhook=webhook.url)
    first, second = make_mailing("First", recipients=5), make_mailing("Second", recipients=5)
    engine = engines.start("--allow-alert-command", lease=True)
    act(store, lifecycle.send_now, first)
    wait_until(lambda: mailing(store, first).state == "completed", 30, "the first to complete")
    # the command told of the first completion hangs; meanwhile the second is sent
    wait_until(hanging.exists, 30, "the alert command to run")
    act(store, lifecycle.send_now, second)
    wait_until(lambda: mailing(store, second).state == "completed", 30, "the second to complete")
    assert webhook.events == []  # the command still hangs: the webhook comes after it
    wait_until(lambda: len(webhook.events) == 2, 60, "both completions at the webhook")
    assert [(e["kind"], e["mailing"]["name"]) for e in webhook.events] == [
        ("completed", "First"),
        ("completed", "Second"),
    ]
    assert f"alert_command ran over {HANG_SECONDS} s: killed" in engines.log(engine)


@pytest.mark.idle  # waits on the alerts' passes: no bound but deadlines
@ONE_DATABASE
def test_an_engine_not_allowed_runs_no_alert_command_but_posts_to_the_webhook(
    store, make_mailing, engines, down_relay, run, webhook, tmp_path
):
    told_file = tmp_path / "alerts.jsonl"
    configure(
        run,
        alert_relay_down="2s",
        alert_command=f"cat >> {told_file}",
        alert_webhook=webhook.url,
    )
    mailing_id = make_mailing("Waiting", recipients=5)
    act(store, lifecycle.send_now, mailing_id)
    engine = engines.start(lease=True)
    wait_until(lambda: webhook.events, 40, "the webhook to be told")
    assert webhook.events[0]["kind"] == "relay_down"
    assert not told_file.exists()
    assert "not started with --allow-alert-command" in engines.log(engine)
