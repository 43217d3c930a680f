"""`sendstatus engine --metrics HOST:PORT`: a running engine scraped as Prometheus would,
its text parsed with prometheus_client's own parser and checked against `show`."""

import http.client
import json
import socket
import subprocess
import sys
import urllib.request
from datetime import UTC, datetime

import pytest
from prometheus_client.parser import text_string_to_metric_families

from sendstatus_tui.core.model import lifecycle
from sendstatus_tui.core.model import relays as stored_relays
from sendstatus_tui.core.model.relays import RelayChange
from sendstatus_tui.core.model.waiting import WaitingKind
from sendstatus_tui.core.model.window import DAY_NAMES, parse_window

from .engine_processes import EngineProcesses
from .helpers import act, mailing, wait_until
from .ports import free_port
from .smtp_relay import RelayScript

REFUSED = (2, 5, 7)  # the people the relay refuses at RCPT


@pytest.fixture
def refusing_relay(relays):
    # each relay its own lists: it takes the replies from them as it gives them
    replies = {f"person{i}@example.com": ["550 5.1.1 no such user"] for i in REFUSED}
    return relays(RelayScript(rcpt_replies=replies))


@pytest.fixture
def engines(db_url, refusing_relay, tmp_path):
    processes = EngineProcesses(db_url, refusing_relay.url, tmp_path)
    yield processes
    processes.stop_all()


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample at http://127.0.0.1:PORT/metrics, by name and labels."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def messages(samples, outcome: str) -> float:
    return sum(
        value
        for (name, labels), value in samples.items()
        if name == "sendstatus_engine_messages_total" and ("outcome", outcome) in labels
    )


def scrapes(port: int) -> bool:
    """Whether metrics are served there. Polling a port in the ephemeral range where
    nothing listens can connect a socket to itself (and read back its own request)."""
    try:
        scrape(port)
    except (OSError, http.client.HTTPException):
        return False
    return True


def test_an_engine_counts_what_the_relay_answered_as_show_does(
    store, make_mailing, engines, refusing_relay, run
):
    port = free_port()
    engine = engines.start("--metrics", f"127.0.0.1:{port}")
    wait_until(lambda: scrapes(port), 20, "the metrics to answer")
    before = scrape(port)
    assert messages(before, "accepted") == 0
    mailing_id = make_mailing("Counted", recipients=20)
    act(store, lifecycle.send_now, mailing_id)
    wait_until(lambda: mailing(store, mailing_id).state == "completed", 30, "the send to end")
    wait_until(lambda: messages(scrape(port), "accepted") == 17, 5, "the counters to add up")

    samples = scrape(port)
    shown = json.loads(run("show", str(mailing_id), "--json")[1])
    assert messages(samples, "accepted") == shown["sent"] == 17
    assert messages(samples, "refused") == shown["failed"] == 3
    assert messages(samples, "deferred") == messages(samples, "in_doubt") == 0
    relay = ("relay", f"127.0.0.1:{refusing_relay.port}")
    assert samples[("sendstatus_engine_messages_total", (("outcome", "accepted"), relay))] == 17
    # every message handed over got a reply, and waited for it from its claim
    assert samples[("sendstatus_engine_reply_seconds_count", (relay,))] == 20
    assert samples[("sendstatus_engine_claim_to_send_seconds_count", ())] == 20
    # alone, it leads, under a lease that runs into the future
    assert samples[("sendstatus_engine_leader", ())] == 1
    assert samples[("sendstatus_engine_lease_expires_timestamp_seconds", ())] > 0
    assert ("sendstatus_engine_relay_connections", (relay,)) in samples
    # no recipient, no mailing in any label
    assert not any(
        "example.com" in str(labels) or "mailing" in str(labels) for _, labels in samples
    )
    assert engine.poll() is None


@pytest.mark.idle  # mostly waits, under half a core (docs/maintenance.md)
def test_workers_serve_their_metrics_at_port_plus_their_number(
    store, make_mailing, engines, refusing_relay
):
    port = free_port(3)
    engines.start("--workers", "2", "--metrics", f"127.0.0.1:{port}")
    for worker in (1, 2):
        wait_until(lambda worker=worker: scrapes(port + worker), 30, f"worker {worker}'s metrics")
    mailing_id = make_mailing("Shared", recipients=40)
    act(store, lifecycle.send_now, mailing_id)
    wait_until(lambda: mailing(store, mailing_id).state == "completed", 30, "the send to end")

    def accepted_by_both() -> float:
        return sum(messages(scrape(port + worker), "accepted") for worker in (1, 2))

    # a sum over the engines is the mailing's count: none counts another's work
    assert mailing(store, mailing_id).sent == 37
    wait_until(lambda: accepted_by_both() >= 37, 5, "the engines' counts")
    by_worker = [scrape(port + worker) for worker in (1, 2)]
    assert sum(messages(samples, "accepted") for samples in by_worker) == 37, by_worker
    assert not scrapes(port)  # the supervisor itself serves none


@pytest.mark.parametrize(
    ("address", "error"),
    [
        ("9101", "--metrics '9101': expected HOST:PORT, e.g. 127.0.0.1:9101"),
        ("127.0.0.1:99999", "--metrics '127.0.0.1:99999': expected HOST:PORT"),
        ("127.0.0.1:", "--metrics '127.0.0.1:': expected HOST:PORT"),
    ],
)
def test_a_metrics_address_that_is_none_is_refused_before_anything_starts(run, address, error):
    status, out, err = run("engine", "--metrics", address)
    assert status != 0 and out == ""
    assert err.startswith(f"error: {error}")


def test_a_metrics_port_taken_ends_the_engine_with_one_line(engines, db_url):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        engine = engines.start("--metrics", f"127.0.0.1:{port}")
        assert engine.wait(30) != 0
    log = engines.log(engine)
    assert f"error: --metrics 127.0.0.1:{port}: cannot listen there" in log
    assert "Traceback" not in log


@pytest.fixture
def serve_process(db_url):
    started = []

    def start(*options: str) -> subprocess.Popen:
        process = subprocess.Popen(
            [sys.executable, "-m", "sendstatus_tui.cli.main", "--db", db_url, "serve", *options],
            stderr=subprocess.PIPE,
            text=True,
        )
        started.append(process)
        return process

    yield start
    for process in started:
        process.terminate()
        process.wait(30)


def mailing_samples(samples, name: str) -> dict[str, float]:
    """A per-mailing metric, by the mailing's id."""
    found = {}
    for (sample, labels), value in samples.items():
        if sample == name:
            found[dict(labels)["mailing"]] = value
    return found


def test_serve_gives_the_figures_of_the_mailings_sending_and_the_engines_alive(
    store, make_mailing, engines, serve_process
):
    listen, port = free_port(), free_port()
    sending = make_mailing("Sending", recipients=20)
    make_mailing("Parked")  # not sending: no label of its own
    act(store, lifecycle.send_now, sending)
    serve_process("--listen", f"127.0.0.1:{listen}", "--metrics", f"127.0.0.1:{port}")
    wait_until(lambda: scrapes(port), 30, "serve's metrics to answer")

    samples = scrape(port)
    assert samples[("sendstatus_database_up", ())] == 1
    assert samples[("sendstatus_engines_live", ())] == 0
    assert mailing_samples(samples, "sendstatus_mailing_remaining") == {str(sending): 20}
    assert mailing_samples(samples, "sendstatus_mailing_speed") == {str(sending): 0}  # no engine
    assert ("sendstatus_mailing_remaining", (("mailing", str(sending)), ("name", "Sending"))) in (
        samples
    )

    engines.start()
    wait_until(lambda: mailing(store, sending).state == "completed", 30, "the send to end")
    samples = scrape(port)
    assert samples[("sendstatus_engines_live", ())] == 1
    # completed, it is no longer a label: labels stay as few as the mailings sending
    assert mailing_samples(samples, "sendstatus_mailing_remaining") == {}


# --- stored relays, their breakers, and what a mailing waits for ------------------------------


def add_relay(store, name: str, relay) -> None:
    with store.write() as session:
        stored_relays.add(session, name, RelayChange(url=relay.url))


def by_relay(samples, name: str, outcome: str | None = None) -> dict[str, float]:
    """A per-relay metric (of one outcome, for the messages), by the relay's label."""
    return {
        dict(labels)["relay"]: value
        for (sample, labels), value in samples.items()
        if sample == name and (outcome is None or ("outcome", outcome) in labels)
    }


def test_each_outcome_is_counted_against_the_relay_that_answered(
    store, make_mailing, relays, engines, run
):
    """Two stored relays, by their names: one takes every message it is given, the other
    refuses every recipient; each count goes to the relay that gave the answer."""
    taking = relays()
    refusing = relays(
        RelayScript(
            rcpt_replies={f"person{i}@example.com": ["550 5.7.1 not here"] for i in range(20)}
        )
    )
    add_relay(store, "taking", taking)
    add_relay(store, "refusing", refusing)
    port = free_port()
    engines.start("--metrics", f"127.0.0.1:{port}", stored_relays=True)
    wait_until(lambda: scrapes(port), 20, "the metrics to answer")
    mailing_id = make_mailing("Two relays", recipients=20)
    act(store, lifecycle.send_now, mailing_id)
    wait_until(lambda: mailing(store, mailing_id).state == "completed", 30, "the send to end")
    shown = json.loads(run("show", str(mailing_id), "--json")[1])
    wait_until(lambda: messages(scrape(port), "accepted") == shown["sent"], 5, "the counts")

    samples = scrape(port)
    accepted = by_relay(samples, "sendstatus_engine_messages_total", "accepted")
    refused = by_relay(samples, "sendstatus_engine_messages_total", "refused")
    assert accepted == {"taking": len(taking.recipients()), "refusing": 0}
    assert refused == {"taking": 0, "refusing": shown["failed"]}
    assert shown["sent"] > 0 and shown["failed"] > 0 and shown["sent"] + shown["failed"] == 20
    replies = by_relay(samples, "sendstatus_engine_reply_seconds_count")
    assert replies == {"taking": shown["sent"], "refusing": shown["failed"]}
    # both up for this engine, each with its own connections
    assert by_relay(samples, "sendstatus_engine_relay_up") == {"taking": 1, "refusing": 1}
    assert set(by_relay(samples, "sendstatus_engine_relay_connections")) == {"taking", "refusing"}


@pytest.mark.slow  # engine processes: run serially
def test_a_relay_killed_is_down_in_the_engines_breaker_until_it_answers_again(
    store, make_mailing, relays, engines
):
    first, second = relays(), relays()
    add_relay(store, "first", first)
    add_relay(store, "second", second)
    port = free_port()
    engines.start("--metrics", f"127.0.0.1:{port}", stored_relays=True)
    wait_until(lambda: scrapes(port), 20, "the metrics to answer")
    before = make_mailing("Before", recipients=10)
    act(store, lifecycle.send_now, before)
    wait_until(lambda: mailing(store, before).state == "completed", 30, "the first send")
    assert first.recipients() and second.recipients()  # both took a share

    second.stop()
    after = make_mailing("After", recipients=10)
    act(store, lifecycle.send_now, after)
    wait_until(lambda: mailing(store, after).state == "completed", 30, "the second send")
    samples = scrape(port)
    assert by_relay(samples, "sendstatus_engine_relay_up") == {"first": 1, "second": 0}
    accepted = by_relay(samples, "sendstatus_engine_messages_total", "accepted")
    # every message went where the counts say, none counted against the relay down
    assert accepted == {"first": len(first.recipients()), "second": len(second.recipients())}
    assert sum(accepted.values()) == 20

    second.start()
    wait_until(
        lambda: by_relay(scrape(port), "sendstatus_engine_relay_up") == {"first": 1, "second": 1},
        30,
        "the relay probed up again",
    )


def test_serve_tells_the_kind_a_mailing_waits_for(store, make_mailing, engines, serve_process):
    """A mailing sent now outside its window: serve's metrics say it waits for its window,
    one series per kind; a parked mailing has none."""
    listen, port = free_port(), free_port()
    closed_today = DAY_NAMES[(datetime.now(UTC).weekday() + 2) % 7]
    outside = make_mailing("Outside", recipients=5)
    act(store, lifecycle.set_window, outside, parse_window(f"{closed_today} 09:00-10:00 UTC").text)
    act(store, lifecycle.send_now, outside)
    make_mailing("Parked")
    engines.start()
    wait_until(
        lambda: mailing(store, outside).waiting_kind == WaitingKind.WINDOW,
        30,
        "the mailing waiting for its window",
    )
    serve_process("--listen", f"127.0.0.1:{listen}", "--metrics", f"127.0.0.1:{port}")
    wait_until(lambda: scrapes(port), 30, "serve's metrics to answer")

    waiting = {
        (dict(labels)["mailing"], dict(labels)["kind"]): value
        for (sample, labels), value in scrape(port).items()
        if sample == "sendstatus_mailing_waiting"
    }
    assert waiting == {
        (str(outside), "window"): 1,
        (str(outside), "relay_down"): 0,
        (str(outside), "domain_limit"): 0,
    }
