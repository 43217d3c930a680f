"""Where messages go: an SMTP relay (``smtp://``, ``smtps://``) or a maildir (``maildir:``).

Failures are sorted by what they mean for the recipient and the mailing:
TemporaryFailure (4xx: defer and retry), PermanentFailure (5xx: this recipient failed),
RelayUnavailable (down or dropped: wait and retry, nobody's fault), RelayRefused (bad
credentials or sender: the mailing cannot go out until an operator acts).
"""

import asyncio
import mailbox
import re
from pathlib import Path
from typing import Protocol

import aiosmtplib

from ..core.addresses import with_ascii_domain
from ..core.relay_url import (
    INITIAL_CONNECTIONS,
    MaildirSettings,
    SmtpSettings,
    TransportConfigError,
    parse_relay_url,
)
from ..errors import SendStatusError
from .credentials import Credentials


class DeliveryError(SendStatusError):
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


class NotDeliverable(PermanentFailure):
    """We do not hand this message to the relay, which could not take it (an address that
    needs SMTPUTF8 when the relay lacks it). Its reason starts with "not sent:" and carries
    no reply code: the relay said nothing. (A PermanentFailure, so that an engine that does
    not know this class records the recipient as failed all the same.)"""

    def __init__(self, reason: str):
        super().__init__(f"not sent: {reason}")


class Transport(Protocol):
    pool_size: int
    reply_timeout: float  # the longest one relay command may take to answer

    async def check(self, sender: str) -> None:
        """Reaches the relay and checks that it accepts us and ``sender``."""

    async def send(self, sender: str, recipient: str, message: bytes) -> str:
        """Hands one message over; returns the relay's reply."""

    async def close(self) -> None: ...


def transport_for(url: str | None, credentials: Credentials | None = None) -> Transport:
    """The transport a relay URL names (default: a maildir in the user's data dir)."""
    settings = parse_relay_url(url)
    if isinstance(settings, MaildirSettings):
        return MaildirTransport(settings.directory)
    if credentials is not None and settings.starttls == "off" and not settings.plaintext_auth:
        raise TransportConfigError(
            "starttls=off with credentials would send the password in clear: use TLS, or"
            " plaintext_auth=yes for a relay on loopback"
        )
    return SmtpTransport(settings, credentials)


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
            key = self._maildir.add(message)
        except OSError as exc:
            raise RelayUnavailable(f"maildir {self.directory}: {exc}") from None
        return f"250 stored as {key}"

    async def close(self) -> None:
        self._maildir = None


# --- SMTP ---------------------------------------------------------------------------------


class SmtpTransport:
    """A pool of connections to one relay; a connection that fails is replaced."""

    def __init__(self, settings: SmtpSettings, credentials: Credentials | None = None):
        self.settings = settings
        self.credentials = credentials
        self.pool_size = (
            min(settings.pool_size, INITIAL_CONNECTIONS) if settings.adapt else settings.pool_size
        )
        self.reply_timeout = settings.timeout
        self._idle: asyncio.Queue[aiosmtplib.SMTP | None] = asyncio.Queue()
        for _ in range(self.pool_size):
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
            await _drop(connection)  # a late reply must not answer the next send
            connection = None
            raise ReplyLost(f"{self._where()}: no reply after DATA: {exc}") from None
        except aiosmtplib.SMTPSenderRefused as exc:
            raise _sender_refused(sender, exc) from None
        except aiosmtplib.SMTPResponseException as exc:
            if exc.code == 421:  # the relay is closing the connection
                await _quit(connection)
                connection = None
            raise _classify(exc) from None
        except (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError, OSError) as exc:
            await _quit(connection)
            connection = None
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
        hangs must not hold up a stop. The pool stays usable: an engine that lost its lease
        and takes it back sends through it again."""
        connections = []
        while not self._idle.empty():
            connection = self._idle.get_nowait()
            if connection is not None:
                connections.append(connection)
        for _ in range(self.pool_size):
            self._idle.put_nowait(None)  # a slot; connected again on first use
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
                self._refuse_auth_in_clear(connection)
                await connection.login(self.credentials.username, self.credentials.password)
            if connection.is_ehlo_or_helo_needed:  # send() issues its commands directly
                try:
                    await connection.ehlo()
                except aiosmtplib.SMTPHeloError:
                    await connection.helo()
        except RelayRefused:
            await _quit(connection)
            raise
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

    def _refuse_auth_in_clear(self, connection: aiosmtplib.SMTP) -> None:
        """Credentials go only over TLS (implicit, or STARTTLS in auto mode), or in clear to
        a relay on loopback when the URL says plaintext_auth=yes: a relay (or someone in
        between) that does not offer STARTTLS would otherwise read the password."""
        encrypted = connection.get_transport_info("sslcontext") is not None
        if encrypted or self.settings.plaintext_auth:
            return
        raise RelayRefused(
            f"{self._where()} does not offer STARTTLS: the credentials are never sent"
            " without TLS (plaintext_auth=yes allows it for a relay on loopback)"
        )

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


async def _quit(connection: aiosmtplib.SMTP | None) -> None:
    if connection is None or not connection.is_connected:
        return
    try:
        await connection.quit()
    except (aiosmtplib.SMTPException, OSError):
        connection.close()


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


def _ascii_recipient(recipient: str) -> str:
    """The recipient for a relay without SMTPUTF8: its domain in ASCII (IDNA). A non-ASCII
    local part has no ASCII form: that message cannot go, and says why without pretending
    that the relay refused it."""
    recipient = with_ascii_domain(recipient)
    if not recipient.isascii():
        raise NotDeliverable(
            "the relay does not offer SMTPUTF8, which this address needs (its part before"
            " the @ is not ASCII)"
        )
    return recipient


async def smtp_transaction(
    connection: aiosmtplib.SMTP, sender: str, recipient: str, message: bytes
) -> aiosmtplib.SMTPResponse:
    """MAIL, RCPT and DATA for one message. The addresses were checked when imported
    (aiosmtplib would parse them again, for each message). A recipient that is not ASCII
    goes with SMTPUTF8 when the relay offers it, else with its domain in ASCII (IDNA)."""
    options = []
    if not recipient.isascii():  # the sender is ASCII: checked when the mailing was made
        if connection.supports_extension("smtputf8"):
            options.append(b"SMTPUTF8")
        else:
            recipient = _ascii_recipient(recipient)
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
