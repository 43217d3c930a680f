"""Recipients from CSV, as stored: fields, normal forms, duplicates, all or nothing."""

import json

import pytest
from sqlmodel import select

from sendstatus_tui.core.importing.drafts import MailingDraft, create_mailing
from sendstatus_tui.core.importing.recipients import RecipientsRefused
from sendstatus_tui.core.model.models import Mailing, Recipient

from .helpers import write_file

DRAFT = MailingDraft(name="N", subject="S", sender="news@shop.example.com", text_body="B")


def add(store, csv, **options):
    with store.write() as session:
        mailing, report = create_mailing(session, DRAFT, csv, **options)
    return mailing, report


def stored(store) -> list[tuple]:
    with store.read() as session:
        rows = session.exec(select(Recipient).order_by(Recipient.id)).all()
        return [(r.email, r.field_values, r.status) for r in rows]


def test_fields_follow_the_header_wherever_the_email_column_is(store, tmp_path):
    csv = write_file(
        tmp_path,
        "p.csv",
        "\ufefffirst_name,Email,city\nAnn,ann@Example.COM,Roma\n"
        '"Bob, Jr.",bob@example.com,"New\nYork"\n',
    )
    mailing, report = add(store, csv)
    assert (report.imported, report.duplicates, report.skipped) == (2, 0, [])
    assert json.loads(mailing.field_names) == ["first_name", "city"]
    assert stored(store) == [
        ("ann@example.com", json.dumps(["Ann", "Roma"]), "pending"),
        ("bob@example.com", json.dumps(["Bob, Jr.", "New\nYork"]), "pending"),
    ]


def test_only_an_email_column_stores_no_fields(store, tmp_path):
    csv = write_file(tmp_path, "p.csv", "email\nann@example.com\n\n\nbob@example.com\n")
    mailing, _ = add(store, csv)
    assert json.loads(mailing.field_names) == []
    assert stored(store) == [
        ("ann@example.com", None, "pending"),
        ("bob@example.com", None, "pending"),
    ]


def test_duplicates_ignoring_case_are_dropped_and_counted(store, tmp_path):
    csv = write_file(
        tmp_path, "p.csv", "email\nann@example.com\nANN@example.com\n ann@EXAMPLE.com \n"
    )
    mailing, report = add(store, csv)
    assert (report.imported, report.duplicates, mailing.total) == (1, 2, 1)


def test_an_invalid_row_after_many_good_ones_leaves_nothing(store, tmp_path):
    """Rows are written in batches as the file is read; a late error must undo them all."""
    good = "".join(f"p{i}@example.com\n" for i in range(50_000))
    csv = write_file(tmp_path, "p.csv", "email\n" + good + "broken@\n")
    with pytest.raises(RecipientsRefused) as refused:
        add(store, csv)
    assert [str(e) for e in refused.value.errors][0].startswith("line 50002: 'broken@'")
    with store.read() as session:
        assert session.exec(select(Mailing)).all() == []
        assert session.exec(select(Recipient.id).limit(1)).all() == []


def test_skip_invalid_keeps_the_good_rows(store, tmp_path):
    csv = write_file(tmp_path, "p.csv", "email,n\na@example.com,1\nnope,2\nb@example.com\n")
    mailing, report = add(store, csv, skip_invalid=True)
    assert [str(e) for e in report.skipped] == [
        "line 3: 'nope': An email address must have an @-sign.",
        "line 4: 1 fields, the header has 2",
    ]
    assert (mailing.total, [row[0] for row in stored(store)]) == (1, ["a@example.com"])


def test_a_file_that_is_not_utf8_is_refused(store, tmp_path):
    csv = tmp_path / "latin1.csv"
    csv.write_bytes("email,name\nann@example.com,Andr\xe9\n".encode("latin-1"))
    with pytest.raises(RecipientsRefused, match="not UTF-8 text"):
        add(store, csv)


def test_a_line_break_in_a_field_the_subject_uses_is_found_at_import(store, tmp_path):
    """Issue 7 item 11: found with its line number, not as a failed message at send time;
    the same break in a field only the body uses is fine."""
    csv = write_file(
        tmp_path,
        "p.csv",
        'email,name,address\na@example.com,Ann,"1 Main St\nRome"\n'
        'b@example.com,"Bob\r\nBcc: victim@example.com",Milan\nc@example.com,"Cy\rX",Oslo\n',
    )
    draft = MailingDraft(
        name="N", subject="Hi {name}", sender="news@shop.example.com", text_body="{address}"
    )
    with pytest.raises(RecipientsRefused) as refused, store.write() as session:
        create_mailing(session, draft, csv)
    assert [str(error) for error in refused.value.errors] == [
        "line 5: a line break in 'name', which the subject uses",
        "line 7: a line break in 'name', which the subject uses",  # a lone CR ends line 6
    ]
    with store.write() as session:
        mailing, report = create_mailing(session, draft, csv, skip_invalid=True)
    assert report.imported == 1 and [e.line for e in report.skipped] == [5, 7]


def test_blank_lines_before_the_header_are_skipped(store, tmp_path):
    csv = write_file(tmp_path, "p.csv", "\n\r\n\nemail,name\n\nann@example.com,Ann\n")
    mailing, report = add(store, csv)
    assert report.imported == 1
    assert json.loads(mailing.field_names) == ["name"]
