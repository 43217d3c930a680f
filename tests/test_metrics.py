"""`sendstatus engine --metrics HOST:PORT`: a running engine scraped as Prometheus would,
its text parsed with prometheus_client's own parser and checked against `show`."""

import http.client
import json
import socket
import subprocess
import sys
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from sendstatus_tui.core.model import lifecycle

from .engine_processes import EngineProcesses
from .helpers import act, free_port, mailing, wait_until
from .smtp_relay import RelayScript

pytestmark = pytest.mark.slow  # engine processes: run serially

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
