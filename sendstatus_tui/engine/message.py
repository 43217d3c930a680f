"""One recipient's message: personalised, with a Message-ID derived from (mailing, recipient)
so that a downstream server can drop a duplicate sent after a crash.

Building each message with ``email.message.EmailMessage`` costs about 1.7 ms, more than
sending it; the MIME skeleton is therefore built once per mailing, and each message only
fills in its values and encodes its bodies (quoted-printable, in C via binascii).
A test parses the result with the ``email`` package to check it.
"""

import binascii
import hashlib
import html
import json
import secrets
from dataclasses import dataclass, field
from email.policy import SMTP
from email.utils import formatdate, parseaddr
from functools import cached_property
from urllib.parse import quote

from sendstatus_tui.core.importing.personalise import Compiled, compile_text, fill, placeholders
from sendstatus_tui.core.model import unsubscribe
from sendstatus_tui.core.model.addresses import with_ascii_domain
from sendstatus_tui.core.model.models import Mailing
from sendstatus_tui.core.model.verp import RECIPIENT_HEADER, ReturnPath

CRLF = b"\r\n"
TEST_PREFIX = "[TEST] "  # a test send's subject starts with it


@dataclass(frozen=True)
class Template:
    """What a mailing's messages share, ready to be filled per recipient."""

    mailing_id: int
    subject: str
    sender: str
    text_body: str | None
    html_body: str | None
    field_names: tuple[str, ...]
    # List-Unsubscribe: an https URL template with {field} placeholders, and an address
    unsubscribe_url: str | None = None
    unsubscribe_mailto: str | None = None
    # VERP (``config set return_path``): each message's envelope sender and signed header
    # name its recipient; None: the sender's address, as before
    return_path: ReturnPath | None = None
    # the database's key, which signs the one-click unsubscribe tokens
    # (core/model/unsubscribe.py); None: a URL using {unsubscribe_token} cannot be built
    unsubscribe_key: bytes | None = None
    # "=_" never appears in quoted-printable text, so the boundary cannot clash with a body
    boundary: str = field(default_factory=lambda: f"=_sendstatus_{secrets.token_hex(12)}")

    @cached_property
    def sender_address(self) -> str:  # read twice per message: parseaddr costs ~10 µs
        return parseaddr(self.sender)[1]

    @property
    def check_sender(self) -> str:
        """The envelope sender a relay check tries: the return path, else the sender."""
        return self.return_path.plain if self.return_path else self.sender_address

    def envelope_sender(self, recipient_id: int) -> str:
        """MAIL FROM of one recipient's message: its VERP address, else the sender."""
        if self.return_path is None:
            return self.sender_address
        return self.return_path.address_for(self.mailing_id, recipient_id)

    @cached_property
    def uses_token(self) -> bool:
        return self.unsubscribe_url is not None and unsubscribe.PLACEHOLDER in placeholders(
            self.unsubscribe_url
        )

    def token(self, recipient_id: int, *, test: bool) -> str:
        """The recipient's signed one-click unsubscribe token (a test send's: no effect)."""
        if self.unsubscribe_key is None:
            raise ValueError("no signing key in the database for {unsubscribe_token}")
        return unsubscribe.token_for(self.unsubscribe_key, self.mailing_id, recipient_id, test=test)

    @cached_property
    def parts(self) -> tuple[Compiled, Compiled | None, Compiled | None]:
        """Subject and bodies split at their placeholders, once per mailing."""

        def compiled(body: str | None) -> Compiled | None:
            return None if body is None else compile_text(body)

        return compile_text(self.subject), compiled(self.text_body), compiled(self.html_body)

    @cached_property
    def from_header(self) -> bytes:
        return _header("From", self.sender)

    @cached_property
    def unsubscribe(self) -> tuple[Compiled | None, str | None]:
        """The URL template split at its placeholders, and the mailto URI."""
        url = None if self.unsubscribe_url is None else compile_text(self.unsubscribe_url)
        mailto = None
        if self.unsubscribe_mailto is not None:
            # a URI takes ASCII only: the domain in IDNA form, the rest percent-encoded
            mailto = "mailto:" + quote(with_ascii_domain(self.unsubscribe_mailto), safe="@")
        return url, mailto


def template_of(
    mailing: Mailing, return_path: ReturnPath | None = None, unsubscribe_key: bytes | None = None
) -> Template:
    """What the messages of ``mailing`` share (``return_path`` and ``unsubscribe_key``:
    core/model/signing.py)."""
    assert mailing.id is not None
    return Template(
        mailing_id=mailing.id,
        subject=mailing.subject,
        sender=mailing.sender,
        text_body=mailing.text_body,
        html_body=mailing.html_body,
        field_names=tuple(json.loads(mailing.field_names)),
        unsubscribe_url=mailing.unsubscribe_url,
        unsubscribe_mailto=mailing.unsubscribe_mailto,
        return_path=return_path,
        unsubscribe_key=unsubscribe_key,
    )


def message_id(mailing_id: int, recipient_id: int, sender_address: str) -> str:
    domain = sender_address.rpartition("@")[2] or "sendstatus.invalid"
    digest = hashlib.sha256(f"{mailing_id}:{recipient_id}".encode()).hexdigest()[:16]
    return f"<m{mailing_id}.r{recipient_id}.{digest}@{domain}>"


def render(
    template: Template,
    recipient_id: int,
    email: str,
    field_values: str | None,
    *,
    test_to: str | None = None,
) -> bytes:
    """The message for one recipient, as bytes ready for the relay. ``test_to``: a test
    send of it to that address, with a Message-ID of its own, its subject marked as a test
    and an unsubscribe token that unsubscribes nobody."""
    values = (
        dict(zip(template.field_names, json.loads(field_values), strict=True))
        if field_values
        else {}
    )
    values["email"] = email
    if template.uses_token:
        values[unsubscribe.PLACEHOLDER] = template.token(recipient_id, test=test_to is not None)
    subject, text_body, html_body = template.parts
    if test_to is None:
        the_id = message_id(template.mailing_id, recipient_id, template.sender_address)
    else:
        domain = template.sender_address.rpartition("@")[2] or "sendstatus.invalid"
        the_id = f"<test.m{template.mailing_id}.{secrets.token_hex(8)}@{domain}>"
    headers = [
        template.from_header,
        _to_header(test_to or email),
        _unstructured("Subject", (TEST_PREFIX if test_to else "") + fill(subject, values)),
        b"Date: " + formatdate(usegmt=True).encode(),
        b"Message-ID: " + the_id.encode(),
        b"MIME-Version: 1.0",
        *_unsubscribe_headers(template, values),
        *([] if test_to is not None else _feedback_headers(template, recipient_id)),
    ]
    parts = []
    if text_body is not None:
        parts.append((b"text/plain", fill(text_body, values)))
    if html_body is not None:
        escaped = {name: html.escape(value) for name, value in values.items()}
        parts.append((b"text/html", fill(html_body, escaped)))
    if len(parts) == 1:
        (subtype, body) = parts[0]
        return CRLF.join([*headers, *_part_headers(subtype), b"", _encode(body)]) + CRLF
    boundary = template.boundary.encode()
    lines = [*headers, b'Content-Type: multipart/alternative; boundary="' + boundary + b'"', b""]
    for subtype, body in parts:
        lines += [b"--" + boundary, *_part_headers(subtype), b"", _encode(body)]
    lines.append(b"--" + boundary + b"--")
    return CRLF.join(lines) + CRLF


def _unsubscribe_headers(template: Template, values: dict[str, str]) -> list[bytes]:
    """List-Unsubscribe (RFC 2369) with the URL and the address, and with a URL the
    one-click List-Unsubscribe-Post (RFC 8058)."""
    url_template, mailto = template.unsubscribe
    if url_template is None and mailto is None:
        return []
    uris = []
    if url_template is not None:
        # each value percent-encoded: a field cannot add a path, a query or a line break
        escaped = {name: quote(value, safe="") for name, value in values.items()}
        # anything left outside ASCII in the template itself (an IDN path) is encoded too
        uris.append(quote(fill(url_template, escaped), safe="/:?#[]@!$&'()*+,;=%~"))
    if mailto is not None:
        uris.append(mailto)
    headers = [_uri_list_header("List-Unsubscribe", uris)]
    if url_template is not None:
        headers.append(b"List-Unsubscribe-Post: List-Unsubscribe=One-Click")
    return headers


def _feedback_headers(template: Template, recipient_id: int) -> list[bytes]:
    """With a return path: the signed recipient header, for reports that quote only the
    original's headers, and Feedback-ID (Gmail's feedback loop: campaign, sender)."""
    if template.return_path is None:
        return []
    code = template.return_path.code(template.mailing_id, recipient_id)
    return [
        f"{RECIPIENT_HEADER}: {code}".encode("ascii"),
        f"Feedback-ID: {template.mailing_id}:mailing:sendstatus".encode("ascii"),
    ]


_MAX_LINE = 998  # octets in a header line, CRLF aside (RFC 5322)


def _uri_list_header(name: str, uris: list[str]) -> bytes:
    """``Name: <uri>, <uri>``: ASCII already (percent-encoded), folded between the URIs
    when too long for one line, never inside one. (The email package would turn a long URI
    into RFC 2047 encoded words, which no reader takes for a URI.)"""
    line = f"{name}: " + ", ".join(f"<{uri}>" for uri in uris)
    if len(line) <= _MAX_LINE:
        return line.encode("ascii")
    if any(len(f" <{uri}>,") > _MAX_LINE for uri in uris):
        raise ValueError(f"a {name} URI longer than a header line may be ({_MAX_LINE} octets)")
    return f"{name}:\r\n ".encode("ascii") + ",\r\n ".join(f"<{uri}>" for uri in uris).encode(
        "ascii"
    )


def _part_headers(subtype: bytes) -> list[bytes]:
    return [
        b"Content-Type: " + subtype + b'; charset="utf-8"',
        b"Content-Transfer-Encoding: quoted-printable",
    ]


def _encode(body: str) -> bytes:
    # quoted-printable keeps every line under 76 characters; line breaks become CRLF
    encoded = binascii.b2a_qp(body.encode("utf-8"), istext=True, header=False)
    return encoded.replace(b"\r\n", b"\n").replace(b"\n", CRLF)


def _to_header(address: str) -> bytes:
    """The To header: the domain in ASCII (IDNA), which every reader takes; a non-ASCII
    local part as UTF-8 (RFC 6532), as such a message only goes out with SMTPUTF8. (The
    email package would write encoded words into the address, which no reader decodes.)"""
    return b"To: " + with_ascii_domain(address).encode("utf-8")


def _header(name: str, value: str) -> bytes:
    """``Name: value`` as it goes on the wire (no final CRLF)."""
    if "\r" in value or "\n" in value:
        # a personalised value must never smuggle in headers of its own
        raise ValueError(f"line break in the {name} header: {value!r}")
    if value.isascii() and len(value) < 900:
        return f"{name}: {value}".encode("ascii")
    # RFC 2047 encoding and folding, by the email package, for anything else
    folded: str = SMTP.header_factory(name, value).fold(policy=SMTP)
    return folded.encode("ascii").rstrip(CRLF)


_WORD_BYTES = 36  # 48 base64 characters: every encoded word and folded line stays short


def _unstructured(name: str, value: str) -> bytes:
    """An unstructured header (Subject): non-ASCII text as RFC 2047 base64 encoded words,
    folded between words; ~50 times faster than the email package's folding."""
    if "\r" in value or "\n" in value:
        raise ValueError(f"line break in the {name} header: {value!r}")
    # text that looks like an encoded word would be decoded by the reader: encode it too;
    # so are control characters (NUL, VT, FF... from a CSV field), which readers mangle
    if value.isascii() and value.isprintable() and len(value) < 900 and "=?" not in value:
        return f"{name}: {value}".encode("ascii")
    data = value.encode("utf-8")
    words, start = [], 0
    while start < len(data):
        end = min(start + _WORD_BYTES, len(data))
        while end < len(data) and data[end] & 0xC0 == 0x80:  # not inside a character
            end -= 1
        words.append(b"=?utf-8?b?" + binascii.b2a_base64(data[start:end], newline=False) + b"?=")
        start = end
    return name.encode("ascii") + b": " + b"\r\n ".join(words)
