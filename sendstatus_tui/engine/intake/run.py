"""The intake: each message of a source parsed, applied, and only then acknowledged (a
listener answers its sender then). A message read again (a crash between commit and
acknowledge, two intakes on one source, a sender that did not get the reply) is a duplicate
in the database: its effect counts once.

A source's messages are applied in batches of up to BATCH, one transaction each, and the
guard checks each mailing once per batch: a commit and a guard's check per message cost
many times the parse. A batch that fails for a reason of one of its messages is applied
again one message at a time, so that that one waits and the others go on. A listener's
message is one transaction of its own (its sender waits for the answer).

Every message ends as one log line and one count; none stops the intake."""

import logging
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from sendstatus_tui.core.feedback.effects import Applied, Outcome, apply, apply_all
from sendstatus_tui.core.model.feedback import Report, ReportVerdict
from sendstatus_tui.core.model.guard import check_feedback
from sendstatus_tui.core.store.store import Store, StoreError
from sendstatus_tui.engine.intake.parse import parse
from sendstatus_tui.engine.intake.source import DEFAULT_INTERVAL, Incoming, Listener, Source

log = logging.getLogger("sendstatus.intake")

# messages per transaction: a batch holds SQLite's write lock for a few tenths of a second
BATCH = 100


@dataclass
class Tally:
    """What an intake did, for its closing line."""

    processed: int = 0
    counts: Counter[str] = field(default_factory=Counter)

    def add(self, report: Report, applied: Applied) -> None:
        self.processed += 1
        if applied.outcome in (Outcome.COUNTED, Outcome.RECORDED):
            self.counts[report.verdict.value] += 1
        else:
            self.counts[applied.outcome.value] += 1

    def line(self) -> str:
        c = self.counts
        return (
            f"{self.processed:,} processed: bounces {c[ReportVerdict.BOUNCE.value]:,} hard,"
            f" {c[ReportVerdict.BLOCKED.value]:,} blocked, {c[ReportVerdict.SOFT.value]:,} soft;"
            f" {c[ReportVerdict.COMPLAINT.value]:,} complaints; {c[Outcome.NOT_A_BOUNCE.value]:,}"
            f" not a bounce; {c[Outcome.UNMATCHED.value]:,} unmatched;"
            f" {c[Outcome.NO_EFFECT.value]:,} without effect;"
            f" {c[Outcome.DUPLICATE.value]:,} duplicates"
            + (f"; {c['left']:,} left for later (see the log)" if c["left"] else "")
        )


def run_intake(
    store: Store,
    source: Source | Listener,
    *,
    follow: bool = False,
    interval: float = DEFAULT_INTERVAL,
    stop: threading.Event | None = None,
) -> Tally:
    """Processes what ``source`` holds: once, or with ``follow`` pass after pass every
    ``interval`` seconds until ``stop`` is set (the message in hand is finished first). A
    Listener takes messages until ``stop`` is set, ``follow`` or not."""
    stop = stop or threading.Event()
    tally = Tally()
    if isinstance(source, Listener):
        name = source.name
        source.serve(store, lambda message: _one(store, name, message, tally), stop)
        return tally
    while not stop.is_set():
        batch: list[Incoming] = []
        try:
            for message in source.messages():
                if stop.is_set():
                    break
                batch.append(message)
                if len(batch) == BATCH:
                    _batch(store, source, batch, tally)
                    batch = []
        finally:  # also those read before the source failed
            if batch:
                _batch(store, source, batch, tally)
        if not follow:
            break
        wait = getattr(source, "wait", None)  # a source that can be told of new mail (IMAP IDLE)
        if wait is not None:
            wait(interval, stop)
        else:
            stop.wait(interval)
    return tally


def _batch(store: Store, source: Source, batch: list[Incoming], tally: Tally) -> None:
    """Applies ``batch`` in one transaction, then acknowledges each message."""
    reports = [parse(m.data, m.envelope_to, m.truncated) for m in batch]
    try:
        with store.write() as session:
            applied = apply_all(session, reports)
    except StoreError as exc:
        # left in place: the next pass (or run) reads them again
        log.error("%s: %d messages not applied, left for later: %s", source.name, len(batch), exc)
        tally.counts["left"] += len(batch)
        return
    except Exception:  # noqa: BLE001  one message's fault: each alone, the others go on
        if len(batch) == 1:
            log.exception("%s %s: not applied, left for later", source.name, batch[0].ref)
            tally.counts["left"] += 1
            return
        for message in batch:
            _one(store, source.name, message, tally, source.acknowledge)
        return
    for message, report, outcome in zip(batch, reports, applied, strict=True):
        _done(source.name, message, report, outcome, tally, source.acknowledge(message))
    for mailing_id in _to_guard(applied):
        guard_after(store, mailing_id)


def _to_guard(applied: list[Applied]) -> list[int]:
    """The mailings a bounce or complaint was counted for: the guard checks each once."""
    ids = {a.mailing_id for a in applied if a.outcome == Outcome.COUNTED}
    return sorted(i for i in ids if i is not None)


def _one(
    store: Store,
    name: str,
    message: Incoming,
    tally: Tally,
    acknowledge: Callable[[Incoming], bool] | None = None,
) -> bool:
    """Applies ``message`` in a transaction of its own, then acknowledges it; False when it
    is left for later (not applied: the database could not be written)."""
    report = parse(message.data, message.envelope_to, message.truncated)
    try:
        with store.write() as session:
            applied = apply(session, report)
    except StoreError as exc:
        # left in place: the next pass (or run) reads it again
        log.error("%s %s: not applied, left for later: %s", name, message.ref, exc)
        tally.counts["left"] += 1
        return False
    except Exception:  # a bug must not stop the intake: this message waits, the others go on
        log.exception("%s %s: not applied, left for later", name, message.ref)
        tally.counts["left"] += 1
        return False
    acknowledged = acknowledge(message) if acknowledge is not None else True
    _done(name, message, report, applied, tally, acknowledged)
    for mailing_id in _to_guard([applied]):
        guard_after(store, mailing_id)
    return True


def _done(
    name: str,
    message: Incoming,
    report: Report,
    applied: Applied,
    tally: Tally,
    acknowledged: bool,
) -> None:
    """Counts and logs a message applied (and acknowledged, unless another intake was first)."""
    tally.add(report, applied)
    where = (
        f" mailing {applied.mailing_id} recipient {applied.recipient_id}"
        if applied.recipient_id is not None
        else ""
    )
    note = "" if acknowledged else " (another intake moved it first)"
    log.info(
        "%s %s: %s%s: %s, %s%s",
        name,
        message.ref,
        report.verdict.value,
        where,
        applied.outcome.value,
        applied.why or report.why,
        note,
    )


def guard_after(store: Store, mailing_id: int) -> None:
    """After a report counted: stops the mailing, if still sending, when too many of its last
    recipients bounced or complained (core/model/guard.py): in a transaction of its own,
    after the report's, as a stop takes the transitions lock before the mailing's row."""
    try:
        with store.write() as session:
            reason = check_feedback(session, mailing_id)
    except StoreError as exc:  # the next report about it checks again
        log.error("mailing %s: the guard could not check it: %s", mailing_id, exc)
        return
    if reason is not None:
        log.warning("mailing %s: %s", mailing_id, reason)
