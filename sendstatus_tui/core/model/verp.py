"""VERP return paths: each message's envelope sender names its mailing and recipient, so
that a bounce is matched by the address it comes back to, never by what it says.

``bounces@bounce.example.com`` (the ``return_path`` setting) becomes
``bounces+CODE@bounce.example.com`` for each message. CODE is the mailing id and the
recipient id (varints) followed by a MAC of them under the database's key, in lowercase
base32: it survives case folding, and a code nobody signed (forged, mistyped, of another
database) matches nothing. The same code goes into the message's RECIPIENT_HEADER, for
reports that quote only the original's headers.
"""

import base64
import binascii
import hashlib
import hmac
from dataclasses import dataclass

from sendstatus_tui.core.model.addresses import (
    InvalidAddress,
    normalize_address,
    with_ascii_domain,
)

RECIPIENT_HEADER = "X-Sendstatus-Recipient"
KEY_NAME = "feedback"  # the Secret row of the key
_MAC_BYTES = 10  # 80 bits: no forger finds a valid code by trying
_MAC_CONTEXT = b"sendstatus return path v1:"
# the longest code: two 64-bit ids as varints (9 bytes each) and the MAC, in base32
MAX_CODE = -(-(9 + 9 + _MAC_BYTES) * 8 // 5)
_MAX_LOCAL = 64  # octets in a local part (RFC 5321)


class ReturnPathError(InvalidAddress):
    pass


def _varint(number: int) -> bytes:
    if number < 0:
        raise ValueError(f"negative id {number}")
    out = bytearray()
    while True:
        byte, number = number & 0x7F, number >> 7
        out.append(byte | (0x80 if number else 0))
        if not number:
            return bytes(out)


def _read_varint(data: bytes, at: int) -> tuple[int, int]:
    number = shift = 0
    while at < len(data) and shift <= 63:
        byte = data[at]
        at += 1
        number |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return number, at
        shift += 7
    raise ValueError("truncated id")


def _mac(key: bytes, payload: bytes, context: bytes) -> bytes:
    return hmac.new(key, context + payload, hashlib.sha256).digest()[:_MAC_BYTES]


def sign(key: bytes, mailing_id: int, recipient_id: int, context: bytes = _MAC_CONTEXT) -> str:
    """The code naming (mailing, recipient), signed with ``key``; ``context`` keeps codes of
    one use (return paths, unsubscribe tokens) from being valid for another."""
    payload = _varint(mailing_id) + _varint(recipient_id)
    mac = _mac(key, payload, context)
    return base64.b32encode(payload + mac).decode("ascii").rstrip("=").lower()


def verify(key: bytes, code: str, context: bytes = _MAC_CONTEXT) -> tuple[int, int] | None:
    """(mailing id, recipient id) of a code signed with ``key``; None for anything else."""
    text = code.strip().upper()
    if not text or len(text) > MAX_CODE or not text.isascii():
        return None
    try:
        data = base64.b32decode(text + "=" * (-len(text) % 8))
        mailing_id, at = _read_varint(data, 0)
        recipient_id, at = _read_varint(data, at)
    except (binascii.Error, ValueError):
        return None
    # the last character of an unpadded code carries bits the bytes do not use: only the
    # one canonical spelling is the code (another decodes to the same bytes: a forgery)
    if base64.b32encode(data).decode("ascii").rstrip("=") != text:
        return None
    payload, mac = data[:at], data[at:]
    if len(mac) != _MAC_BYTES or not hmac.compare_digest(mac, _mac(key, payload, context)):
        return None
    return mailing_id, recipient_id


def code_in(address: str) -> str | None:
    """The code in a VERP address (``local+CODE@domain``), case folded; None without one."""
    local = address.strip().strip("<>").rpartition("@")[0]
    _, plus, code = local.partition("+")
    return code.lower() if plus and code else None


@dataclass(frozen=True)
class ReturnPath:
    """The ``return_path`` setting with the key that signs its codes."""

    local: str
    domain: str
    key: bytes

    @property
    def plain(self) -> str:
        return f"{self.local}@{self.domain}"

    def code(self, mailing_id: int, recipient_id: int) -> str:
        return sign(self.key, mailing_id, recipient_id)

    def address_for(self, mailing_id: int, recipient_id: int) -> str:
        return f"{self.local}+{self.code(mailing_id, recipient_id)}@{self.domain}"


def check_return_path(value: str) -> str:
    """The ``return_path`` setting as stored: an ASCII address in lowercase, with room in its
    local part for ``+CODE``; ReturnPathError says why not."""
    address = with_ascii_domain(normalize_address(value.strip().strip("<>"))).lower()
    local = address.rpartition("@")[0]
    if not address.isascii():
        raise ReturnPathError(f"{value!r}: the return path must be ASCII (it is an envelope)")
    if "+" in local:
        raise ReturnPathError(
            f"{value!r}: no '+' in the return path: sendstatus adds +CODE to it per message"
        )
    room = _MAX_LOCAL - 1 - MAX_CODE
    if len(local) > room:
        raise ReturnPathError(
            f"{value!r}: its local part may have {room} characters at most (with +CODE it"
            f" must stay within {_MAX_LOCAL})"
        )
    return address


def parse_return_path(stored: str, key: bytes) -> ReturnPath:
    local, _, domain = stored.rpartition("@")
    return ReturnPath(local, domain, key)
