"""The database as a whole, for Prometheus (``sendstatus serve --metrics HOST:PORT``): per
mailing in Sending now, what remains, what was sent, what bounced and what it waits for;
and the engines alive. Read at each scrape, from one place only (never from every engine, so
that no ``sum()`` multiplies them). A mailing is a label only while it is sending."""

import logging
from collections.abc import Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily, Metric

from sendstatus_tui.core.model.waiting import WaitingKind
from sendstatus_tui.core.reads.sending_figures import SendingFigures, sending_figures
from sendstatus_tui.core.store.store import Store
from sendstatus_tui.engine.metrics import serve_metrics
from sendstatus_tui.errors import SendStatusError

log = logging.getLogger("sendstatus.serve")

PER_MAILING = (
    ("remaining", "Recipients not yet sent or failed"),
    ("sent", "Recipients the relay accepted that did not bounce since (show's sent)"),
    ("failed", "Recipients failed: refused, deferred too often, bounced, blocked"),
    ("bounced", "Recipients whose message bounced after the relay accepted it"),
    ("complained", "Recipients who reported the message as spam"),
    ("speed", "Messages per second now, by every engine (from the minutes they store)"),
)


class DatabaseCollector:
    def __init__(self, store: Store):
        self.store = store

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "sendstatus_database_up", "1 when the last scrape could read the database"
        )
        try:
            with self.store.read() as session:
                figures = sending_figures(session)
        except SendStatusError as exc:  # the scrape says so; the server goes on
            log.warning("metrics: cannot read the database: %s", exc)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from _families(figures)


def _families(figures: SendingFigures) -> Iterator[Metric]:
    engines = GaugeMetricFamily(
        "sendstatus_engines_live", "Engines whose heartbeat is fresh (none lost)"
    )
    engines.add_metric([], figures.live_engines)
    yield engines
    for field, help_text in PER_MAILING:
        family = GaugeMetricFamily(
            f"sendstatus_mailing_{field}", help_text, labels=["mailing", "name"]
        )
        for mailing in figures.mailings:
            family.add_metric([str(mailing.id), mailing.name], float(getattr(mailing, field)))
        yield family
    # one series per kind, 1 for the kind it waits for: a wait that ends, or changes kind,
    # changes a value rather than ending a series
    waiting = GaugeMetricFamily(
        "sendstatus_mailing_waiting",
        "1 for what keeps the engine from sending the mailing: relay_down (no relay it uses"
        " takes its messages), window (outside its sending window), domain_limit; else 0",
        labels=["mailing", "name", "kind"],
    )
    for mailing in figures.mailings:
        for kind in WaitingKind:
            value = 1.0 if mailing.waiting == kind else 0.0
            waiting.add_metric([str(mailing.id), mailing.name, kind.value], value)
    yield waiting


def serve_database_metrics(store: Store, address: str) -> None:
    """Serves the database's figures at ``address`` (HOST:PORT) on a thread of its own."""
    registry = CollectorRegistry()
    registry.register(DatabaseCollector(store))
    serve_metrics(registry, address)
