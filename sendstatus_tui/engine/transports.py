"""Where messages go: an SMTP relay (``smtp://``, ``smtps://``, see smtp_pool.py) or a
maildir (``maildir:``). What can go wrong is in relay_errors.py."""

import mailbox
from dataclasses import replace
from pathlib import Path
from typing import Protocol

from sendstatus_tui.core.model.relay_url import (
    MaildirSettings,
    TransportConfigError,
    parse_relay_url,
)
from sendstatus_tui.engine.smtp.credentials import Credentials
from sendstatus_tui.engine.smtp.errors import RelayRefused, RelayUnavailable
from sendstatus_tui.engine.smtp.pool import SmtpTransport


class Transport(Protocol):
    reply_timeout: float  # the longest one relay command may take to answer

    @property
    def capacity(self) -> int:
        """How many messages it may have in hand at once (it can change while sending)."""

    @property
    def connections(self) -> int:
        """Its connections to the relay now."""

    @property
    def connections_reason(self) -> str:
        """Why it has that many (the last change of its pool)."""

    async def check(self, sender: str) -> None:
        """Reaches the relay and checks that it accepts us and ``sender``."""

    async def send(self, sender: str, recipient: str, message: bytes) -> str:
        """Hands one message over; returns the relay's reply."""

    async def close(self) -> None: ...


def transport_for(
    url: str | None, credentials: Credentials | None = None, max_connections: int | None = None
) -> Transport:
    """The transport a relay URL names (default: a maildir in the user's data dir);
    ``max_connections``: a stored relay's ``--connections``, over the URL's ``?pool=``."""
    settings = parse_relay_url(url)
    if isinstance(settings, MaildirSettings):
        return MaildirTransport(settings.directory)
    if max_connections is not None:
        settings = replace(settings, pool_size=max_connections)
    if credentials is not None and settings.starttls == "off" and not settings.plaintext_auth:
        raise TransportConfigError(
            "starttls=off with credentials would send the password in clear: use TLS, or"
            " plaintext_auth=yes for a relay on loopback"
        )
    return SmtpTransport(settings, credentials)


# --- maildir ------------------------------------------------------------------------------


class MaildirTransport:
    """Writes each message as a file in a maildir: the embedded default, and the demo's."""

    capacity = connections = 1
    connections_reason = "a maildir: one writer"
    reply_timeout = 5.0  # a local file write

    def __init__(self, directory: Path | None):
        if directory is None:
            from platformdirs import user_data_path

            directory = user_data_path("sendstatus", appauthor=False) / "maildir"
        self.directory = directory.expanduser()
        self._maildir: mailbox.Maildir | None = None

    async def check(self, sender: str) -> None:
        try:
            # with its parents (on a fresh machine even the user's data directory is new),
            # and its three folders also when the directory itself exists already (made by
            # hand): mailbox.Maildir creates them only with the directory
            for folder in ("tmp", "new", "cur"):
                (self.directory / folder).mkdir(mode=0o700, parents=True, exist_ok=True)
            self._maildir = mailbox.Maildir(self.directory, create=False)
        except OSError as exc:
            raise RelayRefused(f"cannot write to maildir {self.directory}: {exc}") from None

    async def send(self, sender: str, recipient: str, message: bytes) -> str:
        if self._maildir is None:
            await self.check(sender)
        assert self._maildir is not None  # check() opened it, or raised
        try:
            # as a local delivery agent does: the envelope sender, where bounces would go
            key = self._maildir.add(b"Return-Path: <" + sender.encode() + b">\r\n" + message)
        except OSError as exc:
            raise RelayUnavailable(f"maildir {self.directory}: {exc}") from None
        return f"250 stored as {key}"

    async def close(self) -> None:
        self._maildir = None
