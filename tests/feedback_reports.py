"""Bounces and complaints as providers send them, built with the email package, and a
maildir to put them in (for the intake's tests); Amazon SES notifications as SNS posts
them, signed with a key and certificate made here."""

import base64
import json
import mailbox
import uuid
from datetime import UTC, datetime, timedelta
from email.message import Message
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.utils import make_msgid
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID


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


# --- Amazon SES notifications through SNS ---------------------------------------------------

SNS_CERT_URL = "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-test.pem"
SES_TOPIC = "arn:aws:sns:eu-west-1:123456789012:ses-feedback"


def signing_certificate() -> tuple[rsa.RSAPrivateKey, bytes]:
    """An RSA key and a self-signed certificate of it (PEM), as SNS signs with."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.amazonaws.com")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    return key, certificate.public_bytes(serialization.Encoding.PEM)


def sns_signed(
    key: rsa.RSAPrivateKey,
    fields: dict,
    *,
    version: str = "1",
    cert_url: str = SNS_CERT_URL,
) -> bytes:
    """An SNS message's body: ``fields`` signed as the SNS documentation says (the fields of
    its type in alphabetical order, each "Name\\nvalue\\n")."""
    if fields["Type"] == "Notification":
        names = ["Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"]
    else:
        names = ["Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"]
    text = "".join(f"{n}\n{fields[n]}\n" for n in names if n in fields)
    algorithm = hashes.SHA1() if version == "1" else hashes.SHA256()
    signature = key.sign(text.encode(), padding.PKCS1v15(), algorithm)
    signed = {
        **fields,
        "SignatureVersion": version,
        "Signature": base64.b64encode(signature).decode(),
        "SigningCertURL": cert_url,
    }
    return json.dumps(signed).encode()


def sns_notification(ses: dict, topic: str = SES_TOPIC, message_id: str | None = None) -> dict:
    return {
        "Type": "Notification",
        "MessageId": message_id or str(uuid.uuid4()),
        "TopicArn": topic,
        "Message": json.dumps(ses),
        "Timestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z"),
        "UnsubscribeURL": "https://sns.eu-west-1.amazonaws.com/?Action=Unsubscribe",
    }


def sns_subscription(topic: str = SES_TOPIC) -> dict:
    token = uuid.uuid4().hex
    return {
        "Type": "SubscriptionConfirmation",
        "MessageId": str(uuid.uuid4()),
        "Token": token,
        "TopicArn": topic,
        "Message": f"You have chosen to subscribe to the topic {topic}.",
        "SubscribeURL": "https://sns.eu-west-1.amazonaws.com/?Action=ConfirmSubscription"
        f"&TopicArn={topic}&Token={token}",
        "Timestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z"),
    }


def _ses_mail(return_path: str, headers: list[tuple[str, str]]) -> dict:
    return {
        "timestamp": datetime.now(UTC).isoformat(),
        "messageId": uuid.uuid4().hex,
        "source": return_path,
        "destination": ["someone@example.com"],
        "headersTruncated": False,
        "headers": [{"name": name, "value": value} for name, value in headers],
    }


def ses_bounce(
    return_path: str,
    headers: list[tuple[str, str]] = (),
    *,
    bounce_type: str = "Permanent",
    sub_type: str = "General",
    status: str = "5.1.1",
    diagnostic: str = "smtp; 550 5.1.1 user unknown",
    address: str = "someone@example.com",
) -> dict:
    """An SES Bounce notification about a message sent with ``return_path``."""
    return {
        "notificationType": "Bounce",
        "bounce": {
            "bounceType": bounce_type,
            "bounceSubType": sub_type,
            "bouncedRecipients": [
                {
                    "emailAddress": address,
                    "action": "failed",
                    "status": status,
                    "diagnosticCode": diagnostic,
                }
            ],
            "timestamp": datetime.now(UTC).isoformat(),
            "feedbackId": f"{uuid.uuid4().hex}-000000",
            "reportingMTA": "dsn; a1-2.smtp-out.eu-west-1.amazonses.com",
        },
        "mail": _ses_mail(return_path, list(headers)),
    }


def ses_complaint(return_path: str, headers: list[tuple[str, str]] = ()) -> dict:
    return {
        "notificationType": "Complaint",
        "complaint": {
            "complainedRecipients": [{"emailAddress": "someone@example.com"}],
            "timestamp": datetime.now(UTC).isoformat(),
            "feedbackId": f"{uuid.uuid4().hex}-000000",
            "complaintFeedbackType": "abuse",
            "userAgent": "ExampleFBL/1.0",
        },
        "mail": _ses_mail(return_path, list(headers)),
    }


def ses_delivery(return_path: str) -> dict:
    return {
        "notificationType": "Delivery",
        "delivery": {"timestamp": datetime.now(UTC).isoformat(), "recipients": ["a@example.com"]},
        "mail": _ses_mail(return_path, []),
    }
