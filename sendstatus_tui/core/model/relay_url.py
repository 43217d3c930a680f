"""What a relay URL means: ``smtp://``, ``smtps://`` or ``maildir:``, with its options.

Only the meaning lives here (a stored ``relay`` setting is checked with it before it is
written); talking to the relay is the engine's. Credentials are never part of a URL.
"""

import ipaddress
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from sendstatus_tui.errors import SendStatusError, mask_url

# the most connections an engine opens to one relay (``?pool=N`` sets another maximum)
DEFAULT_POOL_MAX = 64
# the largest ?pool= and ?timeout= (seconds) a relay URL may give
MAX_POOL = 1000
MAX_TIMEOUT = 3600
# the longest a relay command may take to answer, unless ?timeout= says otherwise
DEFAULT_TIMEOUT = 30
# the connections an adaptive pool starts with
INITIAL_CONNECTIONS = 4
_OPTIONS = {"starttls", "verify", "pool", "timeout", "plaintext_auth", "adapt", "pipelining"}


class TransportConfigError(SendStatusError, ValueError):
    """A relay URL that cannot be used."""


@dataclass(frozen=True)
class MaildirSettings:
    directory: Path | None  # None: the maildir in the user's data directory


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int
    implicit_tls: bool = False
    starttls: str = "auto"  # auto (when offered), require, off
    verify_certificates: bool = True
    # the most connections (adapt) or exactly this many (adapt off)
    pool_size: int = DEFAULT_POOL_MAX
    adapt: bool = True
    pipelining: bool = True  # used when the relay offers it (RFC 2920)
    timeout: float = 30.0
    # AUTH without TLS, allowed only for a relay on loopback (a local test or a local MTA)
    plaintext_auth: bool = False


def parse_relay_url(url: str | None) -> SmtpSettings | MaildirSettings:
    """The settings a relay URL names (None or empty: the default maildir)."""
    if not url or url.startswith("maildir:"):
        return MaildirSettings(Path(url.removeprefix("maildir:")) if url else None)
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # e.g. an unclosed [ of an IPv6 address
        raise TransportConfigError(f"not a relay URL: {mask_url(url)!r} ({exc})") from None
    if parts.scheme not in ("smtp", "smtps"):
        raise TransportConfigError(
            f"unknown relay {mask_url(url)!r}:"
            " expected smtp://HOST[:PORT], smtps://HOST[:PORT] or maildir:DIR"
        )
    if parts.password is not None or parts.username is not None:
        raise TransportConfigError(
            "the relay URL must not carry credentials (every user can read a command line):"
            " set SENDSTATUS_SMTP_USER and SENDSTATUS_SMTP_PASSWORD, or use the credentials file"
        )
    if not parts.hostname:
        raise TransportConfigError(f"no host in relay URL {url!r}")
    try:
        port = parts.port
    except ValueError:  # not a number, or out of range
        port = -1
    if port is not None and not 0 < port < 65536:
        raise TransportConfigError(f"relay URL {url!r}: the port must be a number from 1 to 65535")
    options = {key: values[-1] for key, values in parse_qs(parts.query).items()}
    unknown = set(options) - _OPTIONS
    if unknown:
        raise TransportConfigError(f"unknown relay URL option(s): {', '.join(sorted(unknown))}")
    settings = SmtpSettings(
        host=parts.hostname,
        port=port or (465 if parts.scheme == "smtps" else 25),
        implicit_tls=parts.scheme == "smtps",
        starttls=_choice(options, "starttls", ("auto", "require", "off"), "auto"),
        verify_certificates=_choice(options, "verify", ("on", "off"), "on") == "on",
        pool_size=_positive_int(options, "pool", DEFAULT_POOL_MAX, MAX_POOL),
        adapt=_choice(options, "adapt", ("on", "off"), "on") == "on",
        pipelining=_choice(options, "pipelining", ("auto", "off"), "auto") == "auto",
        timeout=float(_positive_int(options, "timeout", DEFAULT_TIMEOUT, MAX_TIMEOUT)),
        plaintext_auth=_choice(options, "plaintext_auth", ("yes", "no"), "no") == "yes",
    )
    if settings.plaintext_auth and not _is_loopback(settings.host):
        raise TransportConfigError(
            f"relay option plaintext_auth=yes is only for a relay on this machine (loopback),"
            f" not {settings.host}: credentials are never sent in clear over a network"
        )
    return settings


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a name other than localhost: it could resolve anywhere
        return False


def _choice(options: dict[str, str], key: str, allowed: tuple[str, ...], default: str) -> str:
    value = options.get(key, default)
    if value not in allowed:
        raise TransportConfigError(f"relay option {key}={value!r}: expected one of {allowed}")
    return value


def _positive_int(options: dict[str, str], key: str, default: int, largest: int) -> int:
    value = options.get(key, str(default))
    # isascii: isdigit() also takes digits int() refuses ("²")
    if not (value.isascii() and value.isdigit()) or not value.strip("0"):
        raise TransportConfigError(f"relay option {key}={value!r}: expected a positive number")
    number = value.lstrip("0")  # its length first: int() of thousands of digits fails
    if len(number) > len(str(largest)) or int(number) > largest:
        shown = value if len(value) <= 20 else f"{value[:12]}... ({len(value)} digits)"
        raise TransportConfigError(
            f"relay option {key}={shown}: too large (give a number from 1 to {largest})"
        )
    return int(number)
