"""An SNS message (Notification, SubscriptionConfirmation, UnsubscribeConfirmation) and its
signature, checked as SNS defines it: the fields of its type, each ``Name\\nvalue\\n`` in
a fixed order, signed with SHA1withRSA (SignatureVersion 1) or SHA256withRSA (2) by the key
of the certificate at ``SigningCertURL``, which must be an https URL of an
``sns.<region>.amazonaws.com`` host. The certificate comes from a source the caller gives
(HttpsCertificates in production: fetched over verified TLS, kept in memory).

A valid signature proves that SNS sent the message, not that the topic is the operator's:
what it says about a recipient is matched by our own signed codes (core/feedback), and
subscriptions are confirmed only for the topics the operator named (endpoint.py)."""

import base64
import binascii
import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

NOTIFICATION = "Notification"
SUBSCRIPTION = "SubscriptionConfirmation"
UNSUBSCRIBED = "UnsubscribeConfirmation"
# the fields signed, in the order SNS signs them; "Subject" only when the message has one
_SIGNED_FIELDS = {
    NOTIFICATION: ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    SUBSCRIPTION: (
        "Message",
        "MessageId",
        "SubscribeURL",
        "Timestamp",
        "Token",
        "TopicArn",
        "Type",
    ),
    UNSUBSCRIBED: (
        "Message",
        "MessageId",
        "SubscribeURL",
        "Timestamp",
        "Token",
        "TopicArn",
        "Type",
    ),
}
_HASHES: dict[str, Callable[[], hashes.HashAlgorithm]] = {"1": hashes.SHA1, "2": hashes.SHA256}
_SNS_HOST = re.compile(r"sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?")
_MAX_CERTIFICATE = 16 * 1024

# where a certificate comes from: its URL (checked already) → its PEM bytes
CertificateSource = Callable[[str], Awaitable[bytes]]


class SnsError(ValueError):
    """Not a message SNS signed (the reason is for the log, never for the sender)."""


@dataclass(frozen=True)
class SnsMessage:
    type: str
    message_id: str
    topic_arn: str
    message: str
    subscribe_url: str | None


def sns_url(url: str, what: str) -> str:
    """``url`` if it is https on an SNS host (port 443, no user part); SnsError otherwise."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise SnsError(f"{what} {url!r} is no URL") from None
    host = parts.hostname or ""
    if parts.scheme != "https" or port not in (None, 443) or parts.username is not None:
        raise SnsError(f"{what} {url!r} is not https on port 443")
    if not _SNS_HOST.fullmatch(host):
        raise SnsError(f"{what} {url!r} is not on an sns.<region>.amazonaws.com host")
    return url


def canonical(fields: dict[str, Any], kind: str) -> bytes:
    """The bytes SNS signs for a message of type ``kind``."""
    lines = []
    for name in _SIGNED_FIELDS[kind]:
        value = fields.get(name)
        if value is None and name == "Subject":
            continue
        if not isinstance(value, str):
            raise SnsError(f"no {name} in the message")
        lines.append(f"{name}\n{value}\n")
    return "".join(lines).encode()


async def verified(body: bytes, certificates: CertificateSource) -> SnsMessage:
    """The SNS message ``body`` is, once its signature checks out; SnsError otherwise."""
    try:
        fields = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise SnsError("not JSON") from None
    if not isinstance(fields, dict):
        raise SnsError("not a JSON object")
    kind = fields.get("Type")
    if kind not in _SIGNED_FIELDS:
        raise SnsError(f"unknown Type {kind!r}")
    hashing = _HASHES.get(str(fields.get("SignatureVersion")))
    if hashing is None:
        raise SnsError(f"unknown SignatureVersion {fields.get('SignatureVersion')!r}")
    try:
        signature = base64.b64decode(str(fields.get("Signature", "")), validate=True)
    except (binascii.Error, ValueError):
        raise SnsError("Signature is not base64") from None
    signed = canonical(fields, kind)
    url = sns_url(str(fields.get("SigningCertURL", "")), "SigningCertURL")
    if not urlsplit(url).path.endswith(".pem"):
        raise SnsError(f"SigningCertURL {url!r} names no .pem file")
    try:
        pem = await certificates(url)
    except (OSError, aiohttp.ClientError, TimeoutError) as exc:
        raise SnsError(f"cannot fetch {url}: {exc}") from None
    _check(pem, signature, signed, hashing())
    subscribe_url = fields.get("SubscribeURL") if kind != NOTIFICATION else None
    return SnsMessage(
        type=kind,
        message_id=fields["MessageId"],
        topic_arn=fields["TopicArn"],
        message=fields["Message"],
        subscribe_url=subscribe_url,
    )


def _check(pem: bytes, signature: bytes, signed: bytes, hashing: hashes.HashAlgorithm) -> None:
    try:
        certificate = x509.load_pem_x509_certificate(pem)
    except ValueError:
        raise SnsError("the signing certificate is unreadable") from None
    now = datetime.now(UTC)
    if not certificate.not_valid_before_utc <= now <= certificate.not_valid_after_utc:
        raise SnsError("the signing certificate is not valid now")
    key = certificate.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise SnsError("the signing certificate's key is not RSA")
    try:
        key.verify(signature, signed, padding.PKCS1v15(), hashing)
    except InvalidSignature:
        raise SnsError("the signature does not match") from None


class HttpsCertificates:
    """The signing certificates, fetched over https (TLS verified) and kept in memory: SNS
    signs with one certificate for months."""

    def __init__(self) -> None:
        self._cache: dict[str, bytes] = {}

    async def __call__(self, url: str) -> bytes:
        cached = self._cache.get(url)
        if cached is not None:
            return cached
        timeout = aiohttp.ClientTimeout(total=10)
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.get(url, allow_redirects=False) as reply,
        ):
            reply.raise_for_status()
            pem = await reply.content.read(_MAX_CERTIFICATE + 1)
        if len(pem) > _MAX_CERTIFICATE:
            raise SnsError(f"{url}: larger than a certificate")
        if len(self._cache) >= 16:  # a handful of regions at most; never grows unbounded
            self._cache.clear()
        self._cache[url] = pem
        return pem


async def confirm_over_https(url: str) -> None:
    """Confirms a subscription: a GET of its SubscribeURL, as SNS asks."""
    timeout = aiohttp.ClientTimeout(total=10)
    async with (
        aiohttp.ClientSession(timeout=timeout) as session,
        session.get(url, allow_redirects=False) as reply,
    ):
        reply.raise_for_status()
