"""``sendstatus mailing copy``: a new parked mailing with another's message, recipients and
settings, none of its outcomes; on SQLite and PostgreSQL."""

import json

from sqlmodel import col, select

from sendstatus_tui.core.importing import copying
from sendstatus_tui.core.model.models import AuditEntry, Mailing, Recipient

from .helpers import FIXED_NOW, Mailings, write_file


def _recipients(store, mailing_id) -> list[tuple]:
    with store.read() as session:
        rows = session.exec(
            select(Recipient).where(Recipient.mailing_id == mailing_id).order_by(col(Recipient.id))
        ).all()
    return [(r.email, r.field_values, r.status, r.attempts, r.failure_class) for r in rows]


def test_copy_is_parked_with_the_same_message_recipients_and_settings(run, store, tmp_path):
    body = write_file(tmp_path, "body.txt", "Hello {first_name}\n")
    csv = write_file(
        tmp_path,
        "people.csv",
        "email,first_name\nann@example.com,Ann\nbob@example.com,Bob\ncid@example.com,Cid\n"
        "not an address,Dan\n",
    )
    status, out, err = run(
        "mailing", "add", "--name", "Spring", "--subject", "Hi {first_name}",
        "--from", "Shop <news@shop.example.com>", "--text", str(body), "--recipients", str(csv),
        "--skip-invalid", "--unsubscribe-url", "https://shop.example.com/u/{unsubscribe_token}",
        "--unsubscribe-mailto", "unsubscribe@shop.example.com", "--now",
    )  # fmt: skip
    assert status == 0, err
    source_id = int(out.split()[1])
    Mailings(store, tmp_path).deliver(source_id, sent=1, failed=1, now=FIXED_NOW)

    status, out, err = run("mailing", "copy", str(source_id))
    assert (status, err) == (0, "")
    copy_id = int(out.split()[1])
    assert copy_id != source_id
    assert out == (
        f"mailing {copy_id} 'Spring (copy)' created as a copy of mailing {source_id} with 3"
        " recipients; parked in Sends to schedule (decide later)\n"
    )
    with store.read() as session:
        source, copy = session.get(Mailing, source_id), session.get(Mailing, copy_id)
    assert (copy.state, copy.state_reason, copy.mode) == ("standby", "decided later", None)
    for same in (
        "subject",
        "sender",
        "text_body",
        "html_body",
        "field_names",
        "unsubscribe_url",
        "unsubscribe_mailto",
        "total",
    ):
        assert getattr(copy, same) == getattr(source, same), same
    assert (copy.sent, copy.failed, copy.started_at, copy.tries) == (0, 0, None, 0)
    # the invalid row skipped at import stays skipped; everyone is pending again
    assert _recipients(store, copy_id) == [
        ("ann@example.com", '["Ann"]', "pending", 0, None),
        ("bob@example.com", '["Bob"]', "pending", 0, None),
        ("cid@example.com", '["Cid"]', "pending", 0, None),
    ]
    [listed] = [m for m in json.loads(run("ls", "--json")[1]) if m["id"] == copy_id]
    assert (listed["area"], listed["remaining"]) == ("standby", 3)
    with store.read() as session:
        entry = session.exec(select(AuditEntry).where(AuditEntry.mailing_id == copy_id)).one()
    assert (entry.action, entry.detail, entry.source) == (
        "created",
        f"3 recipients, a copy of {source_id}",
        "cli",
    )


def test_copy_takes_a_name_and_leaves_out_addresses_suppressed_since(run, store, tmp_path):
    source_id = Mailings(store, tmp_path).add("Autumn", recipients=3)
    assert run("suppress", "add", "person1@example.com")[0] == 0
    status, out, err = run("mailing", "copy", str(source_id), "--name", "Autumn again")
    assert status == 0, err
    copy_id = int(out.split()[1])
    assert f"'Autumn again' created as a copy of mailing {source_id} with 2 recipients," in out
    assert "1 suppressed dropped" in out
    assert [email for email, *_ in _recipients(store, copy_id)] == [
        "person0@example.com",
        "person2@example.com",
    ]


def test_copy_of_an_unknown_mailing_is_one_error_and_creates_nothing(run, store, tmp_path):
    source_id = Mailings(store, tmp_path).add("Only one")
    status, out, err = run("mailing", "copy", "999")
    assert (status, out) == (1, "")
    assert err == "error: no mailing with id 999\n"
    with store.read() as session:
        assert [m.id for m in session.exec(select(Mailing))] == [source_id]


def test_copy_with_every_recipient_suppressed_since_is_refused(run, store, tmp_path):
    source_id = Mailings(store, tmp_path).add("Gone", recipients=1)
    assert run("suppress", "add", "person0@example.com")[0] == 0
    status, out, err = run("mailing", "copy", str(source_id))
    assert (status, out) == (1, "")
    assert err.startswith(f"error: mailing {source_id}: no recipients left to copy")
    with store.read() as session:
        assert [m.id for m in session.exec(select(Mailing))] == [source_id]


def test_a_copy_goes_a_range_of_ids_at_a_time_and_keeps_the_order(store, tmp_path, monkeypatch):
    first = Mailings(store, tmp_path).add("First", recipients=3)
    monkeypatch.setattr(copying, "_RANGE", 2)  # many short transactions
    copied = copying.copy_mailing(store, first, "Again")
    assert (copied.name, copied.recipients, copied.suppressed) == ("Again", 3, 0)
    assert [email for email, *_ in _recipients(store, copied.mailing_id)] == [
        "person0@example.com",
        "person1@example.com",
        "person2@example.com",
    ]
