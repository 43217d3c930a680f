"""One connection to an SMTP relay, and the transactions that go through it.

aiosmtplib opens the connection (greeting, EHLO, STARTTLS, AUTH); the transactions then go
through our ``ReplyReader``. When the relay offers PIPELINING (RFC 2920), MAIL, RCPT and
DATA go out in one write, and as soon as a message's content and its final dot are written
the next message's MAIL, RCPT and DATA may follow without waiting for the relay's answer
to the first (the RFC allows it: the content ends a group, DATA ends the next). A stream of
messages then costs about one round trip each instead of four. Every reply is still read
and checked for the recipient it belongs to.
"""

import asyncio
import ssl
import time
from collections.abc import Callable
from typing import cast

import aiosmtplib

from sendstatus_tui.core.model.addresses import with_ascii_domain
from sendstatus_tui.core.model.relay_url import SmtpSettings
from sendstatus_tui.engine.smtp.credentials import Credentials
from sendstatus_tui.engine.smtp.errors import (
    NotDeliverable,
    RelayError,
    RelayRefused,
    RelayUnavailable,
    ReplyLost,
)
from sendstatus_tui.engine.smtp.verdict import recipient_error, sender_error, setup_error
from sendstatus_tui.engine.smtp.wire import ConnectionClosed, Reply, ReplyReader, wire_data


class RelayConnection:
    """A connection ready to send. One send at a time holds its write turn (the pool sees
    to it); when it pipelines, the turn passes on once a message's content is written, so
    the next message's envelope follows while the first awaits its answer."""

    def __init__(self, reader: ReplyReader, *, pipelining: bool, smtputf8: bool):
        self._wire = reader
        self.pipelining = pipelining
        self.smtputf8 = smtputf8
        # how long this connection had a message in flight, for the pool's sizing
        self._in_flight = 0
        self._busy_since = 0.0
        self._busy_seconds = 0.0
        self.idle_since = time.monotonic()  # when its last message ended

    @property
    def usable(self) -> bool:
        return self._wire.closed is None

    def busy_seconds(self, now: float) -> float:
        """Seconds with at least one message in flight, up to ``now`` (monotonic)."""
        current = now - self._busy_since if self._in_flight else 0.0
        return self._busy_seconds + current

    async def send(
        self, sender: str, recipient: str, message: bytes, turn_done: Callable[[], None]
    ) -> str:
        """One message: MAIL, RCPT, DATA and its content. The caller holds the write turn
        and ``turn_done`` gives it back (called exactly once). Returns the relay's final
        reply; raises a RelayError that says what the outcome means (ReplyLost once the
        content went out and no reply came)."""
        holding_turn, handed = True, False
        self._began()
        try:
            envelope = self._envelope(sender, recipient)  # may refuse before any write
            replies = await self._envelope_replies(envelope)
            if (problem := _envelope_problem(sender, replies)) is not None:
                await self._end_transaction(replies, problem)
                raise problem
            # pipelining, the next message's envelope may follow at once, and goes out in
            # the same write as this content: as two writes, the relay answers the dot
            # alone, and its answer to that envelope waits (Nagle) for our ACK, which
            # waits (delayed ACK) up to 40 ms for data to ride with
            (final,) = self._wire.send(wire_data(message), 1, hold=self.pipelining)
            handed = True
            if self.pipelining:
                holding_turn = False
                turn_done()  # a send waiting for this connection writes its envelope now
                self._wire.flush_soon()  # or, if none did, the content goes alone
            reply = await final
            if reply.code != 250:
                if reply.code == 421:  # the relay is closing this connection
                    self.close(str(reply))
                raise recipient_error(reply)
            return str(reply)
        except RelayError:
            raise
        except ConnectionClosed as exc:  # the relay closed, broke, or kept silent too long
            self.close(f"broken: {exc}")
            why = str(exc)
            if handed:
                raise ReplyLost(f"no reply after DATA: {why}") from None
            raise RelayUnavailable(why) from None
        except BaseException:
            # cancelled in mid-exchange: a reply still on its way would be read as the
            # next message's, so the connection goes
            self.close("a send was cancelled in mid-exchange")
            raise
        finally:
            self._ended()
            if holding_turn:
                turn_done()

    async def check_sender(self, sender: str) -> None:
        """MAIL FROM ``sender``, then RSET: the relay takes us and the sender (on a
        connection of its own, which nothing else uses)."""
        try:
            reply = await self._wire.send(_mail_from(sender, []), 1)[0]
            if reply.code != 250:
                raise sender_error(sender, reply)
            await self._wire.send(b"RSET\r\n", 1)[0]
        except ConnectionClosed as exc:
            self.close(f"broken: {exc}")
            raise RelayUnavailable(str(exc)) from None

    async def retire(self, timeout: float) -> None:
        """QUIT once the messages in flight are answered (or ``timeout`` passed)."""
        deadline = time.monotonic() + timeout
        while self._in_flight and self.usable and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await self.quit(2.0)

    async def quit(self, timeout: float) -> None:
        """QUIT, waiting at most ``timeout`` for the answer; then closed either way."""
        if self.usable:
            try:
                (bye,) = self._wire.send(b"QUIT\r\n", 1)
                async with asyncio.timeout(timeout):
                    await bye
            except (ConnectionClosed, TimeoutError):
                pass
        self.close("quit")

    def close(self, reason: str) -> None:
        if self.usable:
            self._wire.close(reason)

    # --- internals --------------------------------------------------------------------

    def _envelope(self, sender: str, recipient: str) -> list[bytes]:
        """MAIL, RCPT and DATA for one message. Addresses were checked when imported. A
        recipient that is not ASCII goes with SMTPUTF8 when the relay offers it, else with
        its domain in ASCII (IDNA); a local part that is not ASCII then cannot go at all."""
        options: list[bytes] = []
        if not recipient.isascii():  # the sender is ASCII: checked when the mailing was made
            if self.smtputf8:
                options.append(b"SMTPUTF8")
            else:
                recipient = with_ascii_domain(recipient)
                if not recipient.isascii():
                    raise NotDeliverable(
                        "the relay does not offer SMTPUTF8, which this address needs (its"
                        " part before the @ is not ASCII)"
                    )
        return [
            _mail_from(sender, options),
            b"RCPT TO:<" + recipient.encode() + b">\r\n",
            b"DATA\r\n",
        ]

    async def _envelope_replies(self, envelope: list[bytes]) -> list[Reply]:
        """The replies to MAIL, RCPT and DATA: all three at once when pipelining, else one
        command at a time, stopping at the first refusal."""
        if self.pipelining:
            futures = self._wire.send(b"".join(envelope), len(envelope))
            return [await future for future in futures]
        replies: list[Reply] = []
        for command, expected in zip(envelope, (250, 250, 354), strict=True):
            replies.append(await self._wire.send(command, 1)[0])
            if replies[-1].code != expected and not (expected == 250 and replies[-1].code == 251):
                break
        return replies

    async def _end_transaction(self, replies: list[Reply], problem: RelayError) -> None:
        """After a refusal in the envelope: RSET, so the next message starts clean. A relay
        that said 354 to DATA all the same (it took a pipelined DATA despite the refusal)
        waits for content we will not send: that connection goes."""
        closing = any(reply.code == 421 for reply in replies)  # a 421 4.7.x too
        if replies[-1].code == 354 or closing or isinstance(problem, RelayUnavailable):
            self.close(f"transaction ended by {problem.reply}")
            return
        reset = await self._wire.send(b"RSET\r\n", 1)[0]
        if reset.code != 250:
            self.close(f"RSET answered {reset}")

    def _began(self) -> None:
        if self._in_flight == 0:
            self._busy_since = time.monotonic()
        self._in_flight += 1

    def _ended(self) -> None:
        self._in_flight -= 1
        if self._in_flight == 0:
            self.idle_since = time.monotonic()
            self._busy_seconds += self.idle_since - self._busy_since


def _mail_from(sender: str, options: list[bytes]) -> bytes:
    return b" ".join([b"MAIL FROM:<" + sender.encode() + b">", *options]) + b"\r\n"


def _envelope_problem(sender: str, replies: list[Reply]) -> RelayError | None:
    """What the first refusal among MAIL, RCPT and DATA means, or None if all went well."""
    mail, *rest = replies
    if mail.code != 250:
        return sender_error(sender, mail)
    rcpt, *data = rest
    if rcpt.code not in (250, 251):
        return recipient_error(rcpt)
    if data and data[0].code != 354:
        return recipient_error(data[0])
    return None


# --- opening ------------------------------------------------------------------------------


async def open_connection(
    settings: SmtpSettings, credentials: Credentials | None = None
) -> RelayConnection:
    """A connection set up and ready: greeting, EHLO, STARTTLS and AUTH as configured."""
    smtp = aiosmtplib.SMTP(
        hostname=settings.host,
        port=settings.port,
        use_tls=settings.implicit_tls,
        start_tls={"auto": None, "require": True, "off": False}[settings.starttls]
        if not settings.implicit_tls
        else False,
        validate_certs=settings.verify_certificates,
        timeout=settings.timeout,
    )
    where = f"relay {settings.host}:{settings.port}"
    try:
        await smtp.connect()
        if credentials is not None:
            _refuse_auth_in_clear(smtp, settings, where)
            await smtp.login(credentials.username, credentials.password)
        if smtp.is_ehlo_or_helo_needed:
            try:
                await smtp.ehlo()
            except aiosmtplib.SMTPHeloError:
                await smtp.helo()
    except RelayRefused:
        await _quit(smtp)
        raise
    except aiosmtplib.SMTPAuthenticationError as exc:
        await _quit(smtp)
        if exc.code < 500:  # 454: it cannot check credentials now, waited out as a 421 is
            raise setup_error(where, exc.code, _reply_text(exc)) from None
        raise RelayRefused(f"the relay refused the credentials: {_reply_text(exc)}") from None
    except aiosmtplib.SMTPResponseException as exc:
        await _quit(smtp)
        raise setup_error(where, exc.code, _reply_text(exc)) from None
    except (aiosmtplib.SMTPException, OSError) as exc:
        await _quit(smtp)
        if (untrusted := _certificate_refused(exc)) is not None:
            # as a relay without STARTTLS when credentials need it: waiting changes nothing
            raise RelayRefused(
                f"{where}: its TLS certificate cannot be verified ({untrusted}); for a relay"
                " you trust, add ?verify=off to its URL"
            ) from None
        raise RelayUnavailable(f"cannot reach {where}: {exc}") from None
    transport = smtp.transport
    if transport is None or transport.is_closing():
        raise RelayUnavailable(f"{where}: the connection closed while it was set up")
    return RelayConnection(
        # a stream transport, whose class uvloop's loop does not derive from asyncio's
        ReplyReader(cast(asyncio.WriteTransport, transport), settings.timeout),
        pipelining=settings.pipelining and smtp.supports_extension("pipelining"),
        smtputf8=smtp.supports_extension("smtputf8"),
    )


def _refuse_auth_in_clear(smtp: aiosmtplib.SMTP, settings: SmtpSettings, where: str) -> None:
    """Credentials go only over TLS (implicit, or STARTTLS in auto mode), or in clear to a
    relay on loopback when the URL says plaintext_auth=yes: a relay (or someone in between)
    that does not offer STARTTLS would otherwise read the password."""
    encrypted = smtp.get_transport_info("sslcontext") is not None
    if encrypted or settings.plaintext_auth:
        return
    raise RelayRefused(
        f"{where} does not offer STARTTLS: the credentials are never sent"
        " without TLS (plaintext_auth=yes allows it for a relay on loopback)"
    )


def _certificate_refused(exc: BaseException) -> str | None:
    """The verification error, when ``exc`` (or what caused it) is a certificate that
    failed verification (self-signed, expired, for another name, of an unknown
    authority)."""
    seen: BaseException | None = exc
    for _ in range(5):  # aiosmtplib may wrap it
        if seen is None:
            return None
        if isinstance(seen, ssl.SSLCertVerificationError):
            return seen.verify_message or seen.reason or str(seen)
        seen = seen.__cause__ or seen.__context__
    return None


def _reply_text(exc: aiosmtplib.SMTPResponseException) -> str:
    return f"{exc.code} {' '.join(exc.message.split())}"


async def _quit(smtp: aiosmtplib.SMTP) -> None:
    if not smtp.is_connected:
        return
    try:
        await smtp.quit()
    except (aiosmtplib.SMTPException, OSError):
        smtp.close()
