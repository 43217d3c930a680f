"""Where messages go: an SMTP relay (``smtp://``, ``smtps://``) or a maildir (``maildir:``).

Failures are sorted by what they mean for the recipient and the mailing:
TemporaryFailure (4xx: defer and retry), PermanentFailure (5xx: this recipient failed),
RelayUnavailable (down or dropped: wait and retry, nobody's fault), RelayRefused (bad
credentials or sender: the mailing cannot go out until an operator acts).
"""

import asyncio
import mailbox
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import parse_qs, urlsplit

import aiosmtplib

from .credentials import Credentials

DEFAULT_POOL_SIZE = 4


class DeliveryError(Exception):
    def __init__(self, reply: str):
        super().__init__(reply)
        self.reply = reply


class TemporaryFailure(DeliveryError):
    """The relay said 4xx for this recipient."""


class PermanentFailure(DeliveryError):
    """The relay said 5xx for this recipient."""


class RelayUnavailable(DeliveryError):
    """The relay cannot be reached or dropped the connection."""


class ReplyLost(RelayUnavailable):
    """The message went out (DATA and its final dot) but no reply came: the connection
    dropped or the reply was slower than the timeout. The relay may have stored it."""


class RelayRefused(DeliveryError):
    """The relay refuses us (credentials, sender): no message of the mailing can go."""


class Transport(Protocol):
    pool_size: int
    reply_timeout: float  # the longest one relay command may take to answer

    async def check(self, sender: str) -> None:
        """Reaches the relay and checks that it accepts us and ``sender``."""

    async def send(self, sender: str, recipient: str, message: bytes) -> str:
        """Hands one message over; returns the relay's reply."""

    async def close(self) -> None: ...


class TransportConfigError(ValueError):
    pass


def transport_for(url: str | None, credentials: Credentials | None = None) -> Transport:
    """The transport a ``--smtp`` URL names (default: a maildir in the user's data dir)."""
    if not url or url.startswith("maildir:"):
        return MaildirTransport(Path(url.removeprefix("maildir:")) if url else None)
    parts = urlsplit(url)
    if parts.scheme not in ("smtp", "smtps"):
        raise TransportConfigError(
            f"unknown relay {url!r}:"
            " expected smtp://HOST[:PORT], smtps://HOST[:PORT] or maildir:DIR"
        )
    if parts.password is not None or parts.username is not None:
        raise TransportConfigError(
            "the relay URL must not carry credentials (every user can read a command line):"
            " set SENDSTATUS_SMTP_USER and SENDSTATUS_SMTP_PASSWORD, or use the credentials file"
        )
    if not parts.hostname:
        raise TransportConfigError(f"no host in relay URL {url!r}")
    options = {key: values[-1] for key, values in parse_qs(parts.query).items()}
    unknown = set(options) - {"starttls", "verify", "pool", "timeout"}
    if unknown:
        raise TransportConfigError(f"unknown relay URL option(s): {', '.join(sorted(unknown))}")
    return SmtpTransport(
        SmtpSettings(
            host=parts.hostname,
            port=parts.port or (465 if parts.scheme == "smtps" else 25),
            implicit_tls=parts.scheme == "smtps",
            starttls=_choice(options, "starttls", ("auto", "require", "off"), "auto"),
            verify_certificates=_choice(options, "verify", ("on", "off"), "on") == "on",
            pool_size=_positive_int(options, "pool", DEFAULT_POOL_SIZE),
            timeout=float(_positive_int(options, "timeout", 30)),
        ),
        credentials,
    )


def _choice(options: dict, key: str, allowed: tuple[str, ...], default: str) -> str:
    value = options.get(key, default)
    if value not in allowed:
        raise TransportConfigError(f"relay option {key}={value!r}: expected one of {allowed}")
    return value


def _positive_int(options: dict, key: str, default: int) -> int:
    value = options.get(key, str(default))
    if not value.isdigit() or int(value) < 1:
        raise TransportConfigError(f"relay option {key}={value!r}: expected a positive number")
    return int(value)


# --- maildir ------------------------------------------------------------------------------


class MaildirTransport:
    """Writes each message as a file in a maildir: the embedded default, and the demo's."""

    pool_size = 1
    reply_timeout = 5.0  # a local file write

    def __init__(self, directory: Path | None):
        if directory is None:
            from platformdirs import user_data_path

            directory = user_data_path("sendstatus", appauthor=False) / "maildir"
        self.directory = directory.expanduser()
        self._maildir: mailbox.Maildir | None = None

    async def check(self, sender: str) -> None:
        try:
            self._maildir = mailbox.Maildir(self.directory, create=True)
        except OSError as exc:
            raise RelayRefused(f"cannot write to maildir {self.directory}: {exc}") from None

    async def send(self, sender: str, recipient: str, message: bytes) -> str:
        if self._maildir is None:
            await self.check(sender)
        try:
            key = self._maildir.add(message)
        except OSError as exc:
            raise RelayUnavailable(f"maildir {self.directory}: {exc}") from None
        return f"250 stored as {key}"

    async def close(self) -> None:
        self._maildir = None


# --- SMTP ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int
    implicit_tls: bool = False
    starttls: str = "auto"  # auto (when offered), require, off
    verify_certificates: bool = True
    pool_size: int = DEFAULT_POOL_SIZE
    timeout: float = 30.0


class SmtpTransport:
    """A pool of connections to one relay; a connection that fails is replaced."""

    def __init__(self, settings: SmtpSettings, credentials: Credentials | None = None):
        self.settings = settings
        self.credentials = credentials
        self.pool_size = settings.pool_size
        self.reply_timeout = settings.timeout
        self._idle: asyncio.Queue[aiosmtplib.SMTP | None] = asyncio.Queue()
        for _ in range(settings.pool_size):
            self._idle.put_nowait(None)  # a slot; connected on first use

    async def check(self, sender: str) -> None:
        connection = await self._connect()
        try:
            await connection.mail(sender)
            await connection.rset()
        except aiosmtplib.SMTPSenderRefused as exc:
            raise _sender_refused(sender, exc) from None
        except aiosmtplib.SMTPResponseException as exc:
            raise _classify(exc) from None
        except (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError, OSError) as exc:
            raise RelayUnavailable(f"{self._where()}: {exc}") from None
        finally:
            await _quit(connection)

    async def send(self, sender: str, recipient: str, message: bytes) -> str:
        connection = await self._idle.get()
        try:
            if connection is None or not connection.is_connected:
                connection = await self._connect()
            response = await smtp_transaction(connection, sender, recipient, message)
            return f"{response.code} {response.message}"
        except _NoReplyAfterData as exc:
            connection = await _drop(connection)  # a late reply must not answer the next send
            raise ReplyLost(f"{self._where()}: no reply after DATA: {exc}") from None
        except aiosmtplib.SMTPSenderRefused as exc:
            raise _sender_refused(sender, exc) from None
        except aiosmtplib.SMTPResponseException as exc:
            if exc.code == 421:  # the relay is closing the connection
                connection = await _quit(connection)
            raise _classify(exc) from None
        except (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError, OSError) as exc:
            connection = await _quit(connection)
            raise RelayUnavailable(f"{self._where()}: {exc}") from None
        except BaseException:
            # cancelled in mid-exchange: the reply still on its way would be read by the next
            # send on this connection, so the connection goes
            if connection is not None:
                connection.close()
            connection = None
            raise
        finally:
            self._idle.put_nowait(connection)

    async def close(self) -> None:
        """Says QUIT on every idle connection, all at once and for at most 2 s: a relay that
        hangs must not hold up a stop."""
        connections = []
        while not self._idle.empty():
            connection = self._idle.get_nowait()
            if connection is not None:
                connections.append(connection)
        if not connections:
            return
        quits = [asyncio.ensure_future(_quit(c)) for c in connections]
        _, late = await asyncio.wait(quits, timeout=2)
        for quit_ in late:
            quit_.cancel()
        for connection in connections:
            connection.close()

    async def _connect(self) -> aiosmtplib.SMTP:
        s = self.settings
        connection = aiosmtplib.SMTP(
            hostname=s.host,
            port=s.port,
            use_tls=s.implicit_tls,
            start_tls={"auto": None, "require": True, "off": False}[s.starttls]
            if not s.implicit_tls
            else False,
            validate_certs=s.verify_certificates,
            timeout=s.timeout,
        )
        try:
            await connection.connect()
            if self.credentials is not None:
                await connection.login(self.credentials.username, self.credentials.password)
            if connection.is_ehlo_or_helo_needed:  # send() issues its commands directly
                try:
                    await connection.ehlo()
                except aiosmtplib.SMTPHeloError:
                    await connection.helo()
        except aiosmtplib.SMTPAuthenticationError as exc:
            await _quit(connection)
            raise RelayRefused(f"the relay refused the credentials: {_reply(exc)}") from None
        except aiosmtplib.SMTPResponseException as exc:
            await _quit(connection)
            if 500 <= exc.code < 600:
                raise RelayRefused(f"{self._where()} refused us: {_reply(exc)}") from None
            raise RelayUnavailable(f"{self._where()}: {_reply(exc)}") from None
        except (aiosmtplib.SMTPException, OSError) as exc:
            await _quit(connection)
            raise RelayUnavailable(f"cannot reach {self._where()}: {exc}") from None
        return connection

    def _where(self) -> str:
        return f"relay {self.settings.host}:{self.settings.port}"


def _reply(exc: aiosmtplib.SMTPResponseException) -> str:
    return f"{exc.code} {' '.join(exc.message.split())}"


def _classify(exc: aiosmtplib.SMTPResponseException) -> DeliveryError:
    reply = _reply(exc)
    if exc.code == 421:  # the relay is shutting the connection: not this recipient's fault
        return RelayUnavailable(reply)
    if 400 <= exc.code < 500:
        return TemporaryFailure(reply)
    return PermanentFailure(reply)


def _sender_refused(sender: str, exc: aiosmtplib.SMTPSenderRefused) -> DeliveryError:
    """A 5xx to MAIL FROM stops the mailing; a 4xx (try later) is waited out."""
    reply = f"the relay refused the sender {sender}: {_reply(exc)}"
    return RelayRefused(reply) if 500 <= exc.code < 600 else RelayUnavailable(reply)


async def _drop(connection: aiosmtplib.SMTP | None) -> None:
    if connection is not None:
        connection.close()
    return None


async def _quit(connection: aiosmtplib.SMTP | None) -> None:
    if connection is None or not connection.is_connected:
        return None
    try:
        await connection.quit()
    except (aiosmtplib.SMTPException, OSError):
        connection.close()
    return None


class _NoReplyAfterData(Exception):
    """Raised by ``smtp_transaction`` when the message went out and no reply came back."""


_LINE_ENDINGS = re.compile(rb"\r\n|\n|\r(?!\n)")


def wire_data(message: bytes) -> bytes:
    """``message`` as DATA sends it: CRLF line endings, dot-stuffed, ended by ``.``.

    aiosmtplib's ``data()`` does this with two regular expressions over the whole message,
    which cost more than everything else about a message; rendered messages already end
    their lines in CRLF, so plain byte replacements (in C) do the work."""
    if not (message.count(b"\r") == message.count(b"\n") == message.count(b"\r\n")):
        message = _LINE_ENDINGS.sub(b"\r\n", message)  # a lone CR or LF: rare, slow path
    if not message.endswith(b"\r\n"):
        message += b"\r\n"
    if message.startswith(b"."):
        message = b"." + message
    return message.replace(b"\r\n.", b"\r\n..") + b".\r\n"


async def smtp_transaction(
    connection: aiosmtplib.SMTP, sender: str, recipient: str, message: bytes
) -> aiosmtplib.SMTPResponse:
    """MAIL, RCPT and DATA for one message. The addresses were checked when imported
    (aiosmtplib would parse them again, for each message); SMTPUTF8 is asked for when
    one of them is not ASCII."""
    options = []
    if not (sender.isascii() and recipient.isascii()):
        if not connection.supports_extension("smtputf8"):
            raise aiosmtplib.SMTPRecipientRefused(
                553, "the relay does not offer SMTPUTF8 for this address", recipient
            )
        options.append(b"SMTPUTF8")
    reply = await connection.execute_command(b"MAIL", b"FROM:<" + sender.encode() + b">", *options)
    if reply.code != 250:
        raise aiosmtplib.SMTPSenderRefused(reply.code, reply.message, sender)
    try:
        reply = await connection.execute_command(b"RCPT", b"TO:<" + recipient.encode() + b">")
        if reply.code not in (250, 251):
            raise aiosmtplib.SMTPRecipientRefused(reply.code, reply.message, recipient)
        reply = await connection.execute_command(b"DATA")
        if reply.code != 354:
            raise aiosmtplib.SMTPDataError(reply.code, reply.message)
        protocol = connection.protocol
        if protocol is None:
            raise aiosmtplib.SMTPServerDisconnected("Connection lost")
        protocol.write(wire_data(message))
        try:
            reply = await protocol.read_response(timeout=connection.timeout)
        except (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError, OSError) as exc:
            raise _NoReplyAfterData(str(exc) or type(exc).__name__) from None
        if reply.code != 250:
            raise aiosmtplib.SMTPDataError(reply.code, reply.message)
    except aiosmtplib.SMTPResponseException:
        await connection.rset()
        raise
    return reply
