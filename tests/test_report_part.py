"""The intake reads a multipart/report's report part without parsing the whole message
(engine/intake/report_part.py): what it reads must be what the email package's parse of
the whole message gives, for the reports providers send and for damaged ones."""

import email
import random
from email.message import Message

import pytest

from sendstatus_tui.engine.intake.parse import parse
from sendstatus_tui.engine.intake.report_part import report_part

from .feedback_reports import arf, auto_reply, dsn, qmail_bounce

ORIGINAL = (
    b"From: Shop <news@shop.example.org>\r\nTo: ann@example.com\r\nSubject: Hello\r\n"
    b"X-Sendstatus-Recipient: abcdefghijklmnop\r\nMessage-ID: <1@shop.example.org>\r\n\r\n"
    b"Hello Ann\r\n"
)
# as Postfix writes one into a bounce maildir: folded Content-Type, a preamble, three parts
POSTFIX = (
    "Return-Path: <>\r\nDelivered-To: bounces+abcdefghijklmnop@bounce.example.com\r\n"
    "Date: Thu, 3 Dec 2026 10:00:00 +0000\r\n"
    "From: MAILER-DAEMON@mx.example.net (Mail Delivery System)\r\n"
    "Subject: Undelivered Mail Returned to Sender\r\n"
    "To: bounces+abcdefghijklmnop@bounce.example.com\r\nMIME-Version: 1.0\r\n"
    "Content-Type: multipart/report; report-type=delivery-status;\r\n"
    '\tboundary="B1/mx.example.net"\r\nMessage-Id: <1.A1@mx.example.net>\r\n\r\n'
    "This is a MIME-encapsulated message.\r\n\r\n"
    "--B1/mx.example.net\r\nContent-Description: Notification\r\n"
    "Content-Type: text/plain; charset=us-ascii\r\n\r\nYour message could not be delivered.\r\n\r\n"
    "--B1/mx.example.net\r\nContent-Description: Delivery report\r\n"
    "Content-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.net\r\n"
    "Arrival-Date: Thu, 3 Dec 2026 10:00:00 +0000\r\n\r\n"
    "Final-Recipient: rfc822; ann@example.com\r\nAction: failed\r\nStatus: 5.1.1\r\n"
    "Diagnostic-Code: smtp; 550 5.1.1 <ann@example.com>:\r\n Recipient address rejected\r\n\r\n"
    "--B1/mx.example.net\r\nContent-Description: Undelivered Message Headers\r\n"
    "Content-Type: text/rfc822-headers\r\n\r\n" + ORIGINAL.decode().split("\r\n\r\n")[0] + "\r\n"
    "\r\n--B1/mx.example.net--\r\n"
)
VARIANTS = [  # (what to replace in POSTFIX, with what)
    ("\r\n", "\n"),
    ("\r\n", "\r"),
    ("--B1/mx.example.net--\r\n", ""),  # cut off before the closing boundary
    ("Reporting-MTA", "\r\n\r\nReporting-MTA"),  # empty blocks first
    ("Action: failed", "Action: failed\r\nnot a field\r\nStatus: 5.7.1"),
    ("\r\n\r\nThis is a MIME", "\r\nThis is a MIME"),  # no blank line after the headers
    (
        "--B1/mx.example.net\r\nContent-Description: Delivery",
        "--B1/mx.example.net  \r\n--B1/mx.example.net\r\nContent-Description: Delivery",
    ),
    ("This is a MIME-encapsulated message.", "--B1/mx.example.net--"),  # closed too soon
    ("Content-Type: text/plain; charset=us-ascii", "Content-Type: message/rfc822"),
    (
        "Content-Type: text/plain; charset=us-ascii",
        'Content-Type: multipart/mixed; boundary="X"\r\n\r\n--X\r\n'
        "Content-Type: message/delivery-status\r\n\r\nAction: delayed\r\n--X--",
    ),
    ("report-type=delivery-status", "report-type=feedback-report"),
    ('\tboundary="B1/mx.example.net"', "\tx=y"),
    (
        "Content-Type: message/delivery-status",
        "content-type: Message/Delivery-Status\r\nContent-Transfer-Encoding: base64",
    ),
    ("Return-Path: <>", "From someone Thu Dec  3 10:00:00 2026\r\nReturn-Path: <>"),
    ("Reporting-MTA", " folded first\r\n:no name\r\nReporting-MTA"),
    ("Action: failed", "Action: failed\r\nFrom x\r\n\xff\xfe: bytes"),
]


def corpus() -> list[bytes]:
    reports = [
        dsn("bounces+abcdefghijklmnop@bounce.example.com", ORIGINAL),
        dsn(
            "bounces+abcdefghijklmnop@bounce.example.com",
            ORIGINAL,
            action="delayed",
            status="4.4.1",
        ),
        arf("fbl+abcdefghijklmnop@bounce.example.com", ORIGINAL),
        arf("fbl@bounce.example.com", ORIGINAL, feedback_type="not-spam"),
        qmail_bounce("bounces@bounce.example.com", "ann@example.com"),
        auto_reply("bounces@bounce.example.com"),
        POSTFIX.encode(),
    ]
    return reports + [
        POSTFIX.replace(old, new).encode("utf-8", "surrogateescape") for old, new in VARIANTS
    ]


def mutations(seed: int, count: int) -> list[bytes]:
    """Damaged copies of the corpus: lines, boundaries, blank lines and bytes inserted, cut
    or repeated at random places."""
    rnd, reports = random.Random(seed), corpus()
    pieces = [
        b"\r\n", b"\n", b"\r", b" ", b"--B1/mx.example.net", b"--B1/mx.example.net--", b": ",
        b"From ", b"\xff", b"Content-Type: message/delivery-status\r\n", b"Action: failed\r\n",
        b"Content-Type: multipart/mixed; boundary=B1/mx.example.net\r\n",
    ]  # fmt: skip
    damaged = []
    for _ in range(count):
        data = bytearray(rnd.choice(reports))
        for _ in range(rnd.randint(1, 4)):
            at, how = rnd.randrange(len(data) + 1), rnd.random()
            if how < 0.4:
                data[at:at] = rnd.choice(pieces)
            elif how < 0.7:
                del data[at : at + rnd.randint(1, 40)]
            elif how < 0.85:
                del data[at:]
            else:
                start = rnd.randrange(len(data) + 1)
                data[at:at] = data[start : start + rnd.randint(1, 200)]
        damaged.append(bytes(data))
    return damaged


def fields(message: Message) -> list[tuple[str, str]]:
    return [(name, str(value)) for name, value in message.items()]


def assert_read_as_the_whole(data: bytes) -> bool:
    """Whether ``data``'s report part was read alone; if so, it is as in the whole parse."""
    read = report_part(data)
    if read is None:
        return False
    whole = email.message_from_bytes(data)
    assert fields(read.headers) == fields(whole)
    part = next(p for p in whole.walk() if p.get_content_type() == read.content_type)
    assert [fields(block) for block in read.blocks] == [fields(b) for b in part.get_payload()]
    return True


def test_the_reports_providers_send_are_read_alone_as_in_the_whole_parse():
    reports = corpus()
    read_alone = [assert_read_as_the_whole(data) for data in reports]
    # DSNs and feedback reports are read alone; a qmail bounce and an auto-reply are not
    # reports
    assert read_alone[:7] == [True, True, True, True, False, False, True]
    # left whole: closed before any part, a message or multipart before the report, the
    # wrong report type, no boundary, a Unix From line
    assert read_alone[7:] == [True] * 7 + [False] * 5 + [True, False, True, False]
    assert parse(reports[6]).status == "5.1.1"
    assert parse(reports[6]).diagnostic == (
        "550 5.1.1 <ann@example.com>: Recipient address rejected"
    )


@pytest.mark.parametrize("seed", range(4))
def test_damaged_reports_are_read_alone_as_in_the_whole_parse_or_left_whole(seed):
    damaged = mutations(seed, 1500)
    read_alone = [assert_read_as_the_whole(data) for data in damaged]
    assert sum(read_alone) > len(damaged) // 5  # many are still reports
