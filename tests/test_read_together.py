"""Several reads as one statement (core/store/together.py): the same answers as each read
alone, in one statement on SQLite, and what the dashboard's refresh reads that way."""

from datetime import timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import event

from sendstatus_tui.core.coordination import heartbeats, lease, relay_breakers
from sendstatus_tui.core.model import audit, guard, lifecycle, send_minutes, settings
from sendstatus_tui.core.model.models import utc_now
from sendstatus_tui.core.reads import activity
from sendstatus_tui.core.store.together import read_one, read_together
from sendstatus_tui.views.activity import AuditWatch
from sendstatus_tui.views.panes import PANE_AREAS
from sendstatus_tui.views.snapshot import StallWatch, read_snapshot, refresh_readings

from .helpers import engine_beat


def statements_of(store):
    """A list that every statement sent to ``store``'s database is added to."""
    sent: list[str] = []
    event.listen(
        store.engine, "before_cursor_execute", lambda *args: sent.append(args[2]), retval=False
    )
    return sent


def a_busy_database(store, make_mailing) -> None:
    """A mailing sending with minutes stored, a parked one, a leader and a sender, a relay
    found down, settings, and audit entries."""
    now = utc_now()
    sending, parked = make_mailing(recipients=5), make_mailing(recipients=2)
    with store.write() as session:
        lifecycle.send_now(session, sending)
        lifecycle.mark_prepared(session, sending)
        settings.write(session, "rate", "600/min")
        settings.write(session, guard.COMPLAINTS.key, "0.5%")
        lease.acquire(session, "vm:1:abcd1234", timedelta(seconds=30), now)
        for pid, role in ((1, "leader"), (2, "sender")):
            heartbeats.beat(
                session, engine_beat("vm", pid, role, now - timedelta(minutes=pid)), fresh=True
            )
        relay_breakers.publish(
            session, "vm:2:abcd1234", {"backup": relay_breakers.Down(now, "refused")}
        )
        send_minutes.add_outcomes(session, sending, 3, 1, now - timedelta(minutes=2))
        send_minutes.add_outcomes(session, sending, 1, 0, now)
        audit.record(session, audit.Change.SETTING, detail="rate = 600/min")
    assert parked


def fields(answer):
    """An answer with its model objects as their fields (they compare by identity)."""
    if isinstance(answer, list):
        return [fields(item) for item in answer]
    return answer.model_dump() if hasattr(answer, "model_dump") else answer


def test_reads_together_answer_as_each_alone_in_one_statement_on_sqlite(store, make_mailing):
    a_busy_database(store, make_mailing)
    watch = AuditWatch(session="this dashboard")
    watch.last_entry_id = 0  # all the entries are news
    # what a refresh reads, the audit entries after the first included; and the latest id
    readings = [*refresh_readings(utc_now(), watch), activity.latest_entry_reading()]
    with store.read() as session:
        alone = [read_one(session, reading) for reading in readings]
    sent = statements_of(store)
    with store.read() as session:
        together = read_together(session, readings)

    assert [fields(answer) for answer in together] == [fields(answer) for answer in alone]
    panes, holder, rate, beats, breakers, share, minutes, entries, _, latest = together
    assert len(panes) == 2 and holder.holder == "vm:1:abcd1234" and rate == "600/min"
    assert [beat.role for beat in beats] == ["leader", "sender"]
    assert [breaker.relay for breaker in breakers] == ["backup"]
    assert share == 0.005
    ((mailing_id, throughput),) = minutes.items()
    assert [(m.sent, m.failed) for m in throughput.minutes] == [(3, 1), (1, 0)]
    assert entries[-1].detail == "rate = 600/min" and latest == entries[-1].id  # oldest first
    assert [entry.id for entry in entries] == sorted(entry.id for entry in entries)
    reads = [statement for statement in sent if statement.lstrip().upper().startswith("SELECT")]
    if store.engine.dialect.name == "sqlite":
        assert len(reads) == 1
    else:
        assert len(reads) == len(readings)


def test_a_refresh_is_one_statement_on_sqlite_once_it_knows_where_the_audit_stands(
    store, make_mailing
):
    a_busy_database(store, make_mailing)
    zone = ZoneInfo("Europe/Rome")
    stalls, watch = StallWatch(), AuditWatch(session="this dashboard")
    first = read_snapshot(store, zone, utc_now(), stalls, watch=watch)
    assert len(first.rows[PANE_AREAS[0]]) == 1  # the sending one
    sent = statements_of(store)
    snapshot = read_snapshot(store, zone, utc_now(), stalls, watch=watch)
    reads = [statement for statement in sent if statement.lstrip().upper().startswith("SELECT")]
    assert snapshot.rate == "600/min" and snapshot.engine_holder == "vm:1:abcd1234"
    assert snapshot.engines_running == 2 and list(snapshot.relays_down) == ["backup"]
    if store.engine.dialect.name == "sqlite":
        assert len(reads) == 1
