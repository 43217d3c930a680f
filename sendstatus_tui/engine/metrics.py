"""What one engine did itself, for Prometheus (``sendstatus engine --metrics HOST:PORT``).

Only this engine's own work is counted here, so that a ``sum()`` over engines adds up: the
database's figures per mailing (remaining, speed, bounces) come from ``sendstatus serve``
alone. Labels stay bounded: an outcome and the relay (its name in the relay table, as few
as the relays an operator adds), never a recipient or a mailing. Without ``--metrics`` the
engine gets ``NoMetrics``, whose calls do nothing.
"""

import logging
from bisect import bisect_left
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime
from itertools import accumulate

from prometheus_client import CollectorRegistry, Gauge, start_http_server
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from sendstatus_tui.core.coordination import deliveries
from sendstatus_tui.core.coordination.deliveries import Outcome
from sendstatus_tui.core.model.models import FailureClass
from sendstatus_tui.core.model.relay_url import MaildirSettings, parse_relay_url
from sendstatus_tui.engine.routes import FIXED, RouteState
from sendstatus_tui.errors import SendStatusError

log = logging.getLogger("sendstatus.engine")

# what a recorded outcome counts as: the relay accepted it, refused it (5xx), deferred it
# (4xx, to retry), left it in doubt (no reply); or it failed here (a message that cannot be
# built, or too many deferrals)
OUTCOMES = ("accepted", "refused", "deferred", "in_doubt", "failed")
# a reply takes milliseconds on loopback and up to the relay timeout (30 s) elsewhere
REPLY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
# under a rate, a claimed message waits for its send slot: up to a batch's worth of slots
CLAIM_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 120, 300, 600)
# the relay label of what went to no relay (a message that cannot be built)
NO_RELAY = ""


class MetricsError(SendStatusError):
    pass


def relay_label(relay_url: str | None) -> str:
    """The relay as a label: ``host:port``, or ``maildir`` (never a user or a password)."""
    settings = parse_relay_url(relay_url)
    if isinstance(settings, MaildirSettings):
        return "maildir"
    return f"{settings.host}:{settings.port}"


def parse_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:9101`` for IPv6) as a host and a port number."""
    host, colon, port = text.rpartition(":")
    host = host.strip("[]")
    if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise MetricsError(f"--metrics {text!r}: expected HOST:PORT, e.g. 127.0.0.1:9101")
    return host, int(port)


def worker_address(text: str, worker: int) -> str:
    """The address worker ``worker`` (1…N) of ``engine --workers`` serves: PORT + worker,
    the same after every restart."""
    host, port = parse_address(text)
    if port + worker > 65535:
        raise MetricsError(f"--metrics {text!r}: worker {worker} would need port {port + worker}")
    return f"[{host}]:{port + worker}" if ":" in host else f"{host}:{port + worker}"


def serve_metrics(registry: CollectorRegistry, address: str) -> None:
    """Serves ``registry`` at http://``address``/metrics (HOST:PORT) on a thread of its
    own; a port that cannot be listened on is one error."""
    host, port = parse_address(address)
    try:
        start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        raise MetricsError(f"--metrics {address}: cannot listen there ({exc})") from None
    log.info("metrics at http://%s/metrics", address)


class NoMetrics:
    """An engine without ``--metrics``: nothing is counted."""

    def recorded(self, outcomes: Iterable[Outcome]) -> None:
        pass

    def handed_over(self, seconds_since_claim: float) -> None:
        pass

    def replied(self, seconds: float, relay: str | None) -> None:
        pass

    def lease(self, leading: bool, expires_at: datetime) -> None:
        pass

    def watch_relays(self, relays: Callable[[], Sequence[RouteState]]) -> None:
        pass


class EngineMetrics(NoMetrics):
    """The engine's metrics. What changes per message is kept in plain numbers, changed on
    the engine's event loop and read at each scrape (``collect``): prometheus_client's own
    counters and histograms take a lock per change, a cost per message we do not pay."""

    def __init__(self, fixed_relay: str):
        """``fixed_relay``: the label of the one relay given by ``--smtp`` (its
        ``host:port``); stored relays are labelled by their names."""
        self.fixed_relay = fixed_relay
        self.registry = CollectorRegistry()
        # by (outcome, relay as the routes name it); every outcome shown from the start
        self._messages: Counter[tuple[str, str | None]] = Counter()
        self._claim_to_send = _Buckets(CLAIM_BUCKETS)
        self._replies: dict[str, _Buckets] = {}
        self._relays: Callable[[], Sequence[RouteState]] = list
        self.registry.register(self)
        self._leader = Gauge(
            "sendstatus_engine_leader",
            "1 while this engine leads (starts scheduled mailings, rescues), else 0",
            registry=self.registry,
        )
        self._lease_expires = Gauge(
            "sendstatus_engine_lease_expires_timestamp_seconds",
            "When the lease this engine last saw expires (its own while it leads)",
            registry=self.registry,
        )

    def serve(self, address: str) -> None:
        serve_metrics(self.registry, address)

    def recorded(self, outcomes: Iterable[Outcome]) -> None:
        for outcome in outcomes:
            name = _outcome_name(outcome)
            if name is not None:
                self._messages[name, outcome.relay] += 1

    def handed_over(self, seconds_since_claim: float) -> None:
        self._claim_to_send.observe(seconds_since_claim)

    def replied(self, seconds: float, relay: str | None) -> None:
        """A relay answered after ``seconds`` (None: none did, nothing to time)."""
        if relay is None:
            return
        buckets = self._replies.get(relay)
        if buckets is None:
            buckets = self._replies[relay] = _Buckets(REPLY_BUCKETS)
        buckets.observe(seconds)

    def lease(self, leading: bool, expires_at: datetime) -> None:
        self._leader.set(1 if leading else 0)
        self._lease_expires.set(expires_at.timestamp())

    def watch_relays(self, relays: Callable[[], Sequence[RouteState]]) -> None:
        self._relays = relays

    def _label(self, relay: str | None) -> str:
        if relay is None:
            return NO_RELAY
        return self.fixed_relay if relay == FIXED else relay

    def collect(self) -> Iterator[Metric]:
        """The metrics as they stand (prometheus_client's Collector protocol)."""
        relays = self._relays()
        messages = CounterMetricFamily(
            "sendstatus_engine_messages",
            "Messages this engine recorded, by outcome and the relay that answered"
            " (accepted counts what the relay took: show's sent is accepted minus what"
            " bounced since)",
            labels=["outcome", "relay"],
        )
        counts = Counter(self._messages)  # a copy: the loop goes on counting
        names = {relay for _, relay in counts} | {state.name for state in relays}
        for relay in sorted(names, key=self._label):
            for outcome in OUTCOMES:
                if relay is not None or counts[outcome, relay]:
                    messages.add_metric([outcome, self._label(relay)], counts[outcome, relay])
        yield messages
        up = GaugeMetricFamily(
            "sendstatus_engine_relay_up",
            "1 while this engine's breaker lets messages through to the relay, 0 while it"
            " finds it down (probed with back-off) or leaves it out (its credentials)",
            labels=["relay"],
        )
        connections = GaugeMetricFamily(
            "sendstatus_engine_relay_connections",
            "This engine's connections to the relay now",
            labels=["relay"],
        )
        for state in relays:
            up.add_metric([self._label(state.name)], 1 if state.up else 0)
            connections.add_metric([self._label(state.name)], state.connections)
        yield up
        yield connections
        claim = HistogramMetricFamily(
            "sendstatus_engine_claim_to_send_seconds",
            "From a recipient's claim to its message going to the relay",
        )
        claim.add_metric([], *self._claim_to_send.exposed())
        yield claim
        reply = HistogramMetricFamily(
            "sendstatus_engine_reply_seconds",
            "From a message going to the relay to the relay's reply",
            labels=["relay"],
        )
        for relay, buckets in list(self._replies.items()):
            reply.add_metric([self._label(relay)], *buckets.exposed())
        yield reply


class _Buckets:
    """A histogram's counts: one per bound, and one above the last."""

    def __init__(self, bounds: tuple[float, ...]):
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    def exposed(self) -> tuple[list[tuple[str, float]], float]:
        """Cumulative buckets, as Prometheus reads them, and the sum."""
        counts, total = list(self.counts), self.sum  # a copy: the loop goes on counting
        cumulative = list(accumulate(counts))
        bounds = [*(str(float(bound)) for bound in self.bounds), "+Inf"]
        return list(zip(bounds, cumulative, strict=True)), total


def _outcome_name(outcome: Outcome) -> str | None:
    """What ``outcome`` counts as (None: handed back untried, not counted)."""
    if outcome.status == deliveries.SENT:
        return "accepted"
    if outcome.status == deliveries.DEFERRED:
        return "deferred"
    if outcome.status == deliveries.IN_DOUBT:
        return "in_doubt"
    if outcome.status == deliveries.FAILED:
        return "refused" if outcome.failure_class == FailureClass.REFUSED else "failed"
    return None
