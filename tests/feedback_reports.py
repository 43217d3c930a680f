"""Bounces and complaints as providers send them, built with the email package, and a
maildir to put them in (for the intake's tests)."""

import mailbox
from email.message import Message
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.utils import make_msgid
from pathlib import Path


def maildir(directory: Path) -> Path:
    mailbox.Maildir(directory, create=True)
    return directory


def deliver(directory: Path, name: str, data: bytes) -> None:
    """As a local MTA does: written in tmp/, then moved into new/."""
    (directory / "tmp" / name).write_bytes(data)
    (directory / "tmp" / name).rename(directory / "new" / name)


def _headers_of(original: bytes) -> str:
    return original.split(b"\r\n\r\n", 1)[0].decode() + "\r\n"


def dsn(
    to: str,
    original: bytes,
    *,
    action: str = "failed",
    status: str = "5.1.1",
    diagnostic: str = "smtp; 550 5.1.1 <user@example.com>: Recipient address rejected",
    final_recipient: str = "user@example.com",
    message_id: str | None = None,
) -> bytes:
    """An RFC 3464 delivery status notification to ``to`` about ``original``."""
    report = MIMEMultipart("report")
    report.set_param("report-type", "delivery-status")
    report["From"] = "MAILER-DAEMON@mx.example.net (Mail Delivery System)"
    report["To"] = to
    report["Subject"] = "Undelivered Mail Returned to Sender"
    report["Message-ID"] = message_id or make_msgid(domain="mx.example.net")
    report["Auto-Submitted"] = "auto-replied"
    report["Delivered-To"] = to
    report.attach(
        MIMEText("I'm sorry to have to inform you that your message could not be delivered.\n")
    )
    per_message = Message()
    per_message["Reporting-MTA"] = "dns; mx.example.net"
    per_recipient = Message()
    per_recipient["Final-Recipient"] = f"rfc822; {final_recipient}"
    per_recipient["Action"] = action
    per_recipient["Status"] = status
    per_recipient["Remote-MTA"] = "dns; mail.example.com"
    per_recipient["Diagnostic-Code"] = diagnostic
    status_part = Message()
    status_part.set_type("message/delivery-status")
    status_part.set_payload([per_message, per_recipient])
    report.attach(status_part)
    report.attach(MIMEText(_headers_of(original), "rfc822-headers"))
    return report.as_bytes()


def arf(to: str, original: bytes, feedback_type: str = "abuse") -> bytes:
    """An RFC 5965 feedback report quoting ``original``'s headers."""
    report = MIMEMultipart("report")
    report.set_param("report-type", "feedback-report")
    report["From"] = "feedbackloop@fbl.example.net"
    report["To"] = to
    report["Subject"] = "complaint about message"
    report["Message-ID"] = make_msgid(domain="fbl.example.net")
    report.attach(MIMEText("This is an email abuse report.\n"))
    fields = Message()
    fields.set_type("message/feedback-report")
    block = Message()
    block["Feedback-Type"] = feedback_type
    block["User-Agent"] = "ExampleFBL/1.0"
    block["Version"] = "1"
    block["Original-Rcpt-To"] = "someone-else@example.com"
    fields.set_payload([block])
    report.attach(fields)
    report.attach(MIMEText(_headers_of(original), "rfc822-headers"))
    return report.as_bytes()


def qmail_bounce(to: str, address: str) -> bytes:
    """A qmail bounce (QSBMF, not RFC 3464): flufl.bounce recognises it."""
    body = (
        "Hi. This is the qmail-send program at mx.example.org.\n"
        "I'm afraid I wasn't able to deliver your message to the following addresses.\n"
        "This is a permanent error; I've given up. Sorry it didn't work out.\n\n"
        f"<{address}>:\n"
        "Sorry, no mailbox here by that name. (#5.1.1)\n\n"
        "--- Below this line is a copy of the message.\n"
    )
    message = MIMEText(body)
    message["From"] = "MAILER-DAEMON@mx.example.org"
    message["To"] = to
    message["Subject"] = "failure notice"
    message["Message-ID"] = make_msgid(domain="mx.example.org")
    return message.as_bytes()


def auto_reply(to: str) -> bytes:
    message = MIMEText("I am out of the office until Monday.\n")
    message["From"] = "person@example.com"
    message["To"] = to
    message["Subject"] = "Out of office"
    message["Auto-Submitted"] = "auto-replied"
    return message.as_bytes()
