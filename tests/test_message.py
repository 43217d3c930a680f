"""Rendered messages, read back with the email package as a mail client would."""

import email
import email.policy
import json
from pathlib import Path

import pytest

from sendstatus_tui.engine import message
from sendstatus_tui.engine.message import Template, message_id, render

TEMPLATE = Template(
    mailing_id=7,
    subject="News for {first_name}",
    sender="Bücher & Co <news@shop.example.com>",
    text_body="Hello {first_name},\nyour city: {city}\n" + "long line " * 30,
    html_body="<p>Hello {first_name} from {city}</p>",
    field_names=("first_name", "city"),
)


def parse(data: bytes):
    return email.message_from_bytes(data, policy=email.policy.default)


def test_a_message_reads_back_with_its_values():
    values = json.dumps(["Zoë <admin>", "Kraków"])
    message = parse(render(TEMPLATE, 42, "zoe@example.com", values))
    assert message["Subject"] == "News for Zoë <admin>"
    assert message["From"] == "Bücher & Co <news@shop.example.com>"
    assert message["To"] == "zoe@example.com"
    assert message["Message-ID"] == message_id(7, 42, "news@shop.example.com")
    # on the wire every line ends in CRLF, as SMTP wants; a mail client reads line breaks
    text = message.get_body(("plain",)).get_content().replace("\r\n", "\n")
    assert text.startswith("Hello Zoë <admin>,\nyour city: Kraków\nlong line")
    assert text.rstrip().endswith("long line")
    html = message.get_body(("html",)).get_content()
    assert html.strip() == "<p>Hello Zoë &lt;admin&gt; from Kraków</p>"  # values escaped
    assert message.defects == []


def test_every_line_on_the_wire_is_short_and_ends_in_crlf():
    data = render(TEMPLATE, 1, "a@example.com", json.dumps(["A", "B" * 300]))
    lines = data.split(b"\r\n")
    assert lines[-1] == b"" and b"\n" not in b"".join(lines)
    assert max(len(line) for line in lines) <= 998


def test_message_id_is_stable_per_mailing_and_recipient():
    assert message_id(7, 42, "a@x.example") == message_id(7, 42, "a@x.example")
    assert message_id(7, 42, "a@x.example") != message_id(7, 43, "a@x.example")
    assert message_id(7, 42, "a@x.example").endswith("@x.example>")


def test_a_value_with_a_line_break_cannot_reach_a_header():
    with pytest.raises(ValueError, match="line break in the Subject header"):
        render(TEMPLATE, 1, "a@example.com", json.dumps(["Ann\r\nBcc: x@evil.example", "B"]))


def test_text_only_message_is_a_single_part():
    template = Template(1, "S", "a@shop.example.com", "Just text", None, ())
    message = parse(render(template, 1, "b@example.com", None))
    assert message.get_content_type() == "text/plain"
    assert message.get_content().strip() == "Just text"


def test_a_value_that_looks_encoded_is_encoded_not_decoded_by_the_reader():
    template = Template(1, "Hi {first_name}", "a@shop.example.com", "T", None, ("first_name",))
    tricky = "=?utf-8?q?Bob?="
    message = parse(render(template, 1, "b@example.com", json.dumps([tricky])))
    assert message["Subject"] == f"Hi {tricky}"


@pytest.mark.parametrize("control", ["\x00", "\x0b", "\x0c", "\x1b", "\x7f"])
def test_control_characters_from_a_field_never_reach_the_subject_unencoded(control):
    """Issue 7 item 11: a CSV field with NUL, VT, FF... goes into the Subject encoded."""
    value = f"Zoe{control}Smith"
    data = render(TEMPLATE, 1, "zoe@example.com", json.dumps([value, "Rome"]))
    subject = next(line for line in data.split(b"\r\n") if line.startswith(b"Subject:"))
    assert control.encode() not in subject
    assert subject.startswith(b"Subject: =?utf-8?b?")
    assert parse(data)["Subject"] == f"News for {value}"


UNSUBSCRIBING = Template(
    mailing_id=7,
    subject="Hi",
    sender="news@shop.example.com",
    text_body="Hello",
    html_body=None,
    field_names=("token",),
    unsubscribe_url="https://shop.example.com/u/{token}?a={email}",
    unsubscribe_mailto="désinscription@bücher.de",
)


def test_unsubscribe_headers_carry_both_ways_personalised_and_percent_encoded():
    message = parse(render(UNSUBSCRIBING, 1, "ann+news@example.com", json.dumps(["a/b?c&d é"])))
    assert message["List-Unsubscribe"] == (
        "<https://shop.example.com/u/a%2Fb%3Fc%26d%20%C3%A9?a=ann%2Bnews%40example.com>,"
        " <mailto:d%C3%A9sinscription@xn--bcher-kva.de>"
    )
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert message.defects == []


def test_a_long_unsubscribe_url_is_folded_between_uris_never_encoded():
    data = render(UNSUBSCRIBING, 1, "ann@example.com", json.dumps(["x" * 900]))
    assert b"=?" not in data  # no RFC 2047 encoded word: a reader would not decode a URI
    assert max(len(line) for line in data.split(b"\r\n")) <= 998
    header = parse(data)["List-Unsubscribe"]
    assert (
        header.split(",")[0].strip()
        == f"<https://shop.example.com/u/{'x' * 900}?a=ann%40example.com>"
    )


def test_an_unsubscribe_url_too_long_for_a_header_line_is_refused():
    with pytest.raises(ValueError, match="longer than a header line"):
        render(UNSUBSCRIBING, 1, "ann@example.com", json.dumps(["x" * 1000]))


def test_without_unsubscribe_settings_no_header_is_added():
    message = parse(render(TEMPLATE, 1, "ann@example.com", json.dumps(["Ann", "Oslo"])))
    assert message["List-Unsubscribe"] is None and message["List-Unsubscribe-Post"] is None


# --- the bytes on the wire, as the engine rendered them when this file was made --------------

GOLDEN = Path(__file__).parent / "data" / "golden_messages.txt"
GOLDEN_TEXT = (
    "Hello {first_name},\n\nSpring has arrived in {city}. Everything is 20 % off = a bargain.\n"
    "A line with trailing spaces   \n.\n" + "A very long line " * 12 + "\n"
    "Café, naïve, 東京 — {first_name} again: {city}{city}\n\tTabbed line\nLast line {email}"
)
GOLDEN_HTML = (
    '<p>Hello <b>{first_name}</b> from {city}</p>\n<a href="https://x.example/?c={city}">go</a>\n'
    + "<span>"
    + "x" * 200
    + "</span>\n"
    + "<p>fixed</p>\n."
)
GOLDEN_PEOPLE = [
    ("ann@example.com", "Ann", "Paris"),
    ("bo@example.com", "Bø <&>", "Zürich "),
    ("c@example.com", "", "."),
    ("d@example.com", "Line\nbreak", "=3D= " + "y" * 90),
    ("e@example.com", "Tab\there", "trailing\t"),
]


def test_messages_are_the_bytes_rendered_before(monkeypatch):
    """The file holds what the engine rendered (the Date header and the MIME boundary fixed):
    a change to the rendering that changes a byte shows here, to be looked at."""
    monkeypatch.setattr(message, "formatdate", lambda usegmt=True: "Thu, 03 Dec 2026 19:00:00 GMT")
    template = Template(
        mailing_id=7,
        subject="{first_name}, spring in {city}",
        sender="Shop <news@shop.example.com>",
        text_body=GOLDEN_TEXT,
        html_body=GOLDEN_HTML,
        field_names=("first_name", "city"),
        unsubscribe_url="https://shop.example.com/u/{email}",
        unsubscribe_mailto="unsub@shop.example.com",
        boundary="=_sendstatus_fixed",
    )
    rendered = []
    for number, (address, first, city) in enumerate(GOLDEN_PEOPLE, start=1):
        try:
            rendered.append(render(template, number, address, json.dumps([first, city])))
        except ValueError as exc:
            rendered.append(f"ValueError: {exc}".encode())
    assert b"\n=====\n".join(rendered) == GOLDEN.read_bytes()
