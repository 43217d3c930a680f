"""A real SMTP server on loopback (aiosmtpd) that records what it accepts and can be told
to defer, refuse, demand credentials, or go down."""

import asyncio
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

from .ports import free_port


@dataclass
class Received:
    mail_from: str
    rcpt: str
    data: bytes
    at: float  # when the relay accepted it (end of DATA)
    began: float = 0.0  # when the client began the transaction (MAIL FROM)


@dataclass
class RelayScript:
    """How the relay answers. Replies are full SMTP lines like '451 4.7.1 try later'."""

    # per recipient: replies for successive RCPT attempts; None accepts
    rcpt_replies: dict[str, list[str | None]] = field(default_factory=dict)
    # per recipient domain: replies for successive RCPTs to any of its addresses (a provider
    # throttling us, e.g. '421 4.7.28 rate limited'); None accepts
    domain_replies: dict[str, list[str | None]] = field(default_factory=dict)
    refuse_sender: str | None = None  # reply to every MAIL FROM
    credentials: tuple[str, str] | None = None  # required when set
    # replies to successive AUTH commands (e.g. '454 4.7.0 try later'); None checks them
    auth_replies: list[str | None] = field(default_factory=list)
    delay_seconds: float = 0.0  # before accepting DATA
    # per recipient: what happens after the final dot, for successive deliveries; the
    # message is stored first in every case. "drop": the connection is closed without a
    # reply; "late": the reply comes after late_seconds; "hang": no reply while the relay runs
    data_faults: dict[str, list[str | None]] = field(default_factory=dict)
    data_fault_default: str | None = None  # for recipients (or deliveries) not listed
    # per recipient: replies to the final dot for successive deliveries (None accepts); a
    # message refused there is not stored
    data_replies: dict[str, list[str | None]] = field(default_factory=dict)
    late_seconds: float = 2.0
    # before each reply to MAIL, RCPT, DATA and the final dot: a relay slow to answer
    command_delay_seconds: float = 0.0
    # more connections at once than this are greeted with 421 and closed
    max_connections: int | None = None


class _Handler:
    def __init__(self, relay: "SmtpRelay"):
        self.relay = relay

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        if self.relay.pipelining:  # aiosmtpd reads pipelined commands, but does not say so
            responses.insert(-1, "250-PIPELINING")
        return responses

    async def handle_MAIL(self, server, session, envelope, address, options):
        script = self.relay.script
        await self._slow()
        if script.credentials and not session.authenticated:
            return "530 5.7.0 Authentication required"
        if script.refuse_sender:
            return script.refuse_sender
        envelope.mail_from = address
        session.began = time.monotonic()
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, options):
        await self._slow()
        with self.relay.lock:
            replies = self.relay.script.rcpt_replies.get(address)
            reply = replies.pop(0) if replies else None
            by_domain = self.relay.script.domain_replies.get(address.rpartition("@")[2])
            reply = reply or (by_domain.pop(0) if by_domain else None)
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def _slow(self) -> None:
        if self.relay.script.command_delay_seconds:
            await asyncio.sleep(self.relay.script.command_delay_seconds)

    async def handle_DATA(self, server, session, envelope):
        script = self.relay.script
        await self._slow()
        if script.delay_seconds:
            await asyncio.sleep(script.delay_seconds)
        with self.relay.lock:
            for rcpt in envelope.rcpt_tos:
                replies = script.data_replies.get(rcpt)
                if replies and (refusal := replies.pop(0)):
                    return refusal
            for rcpt in envelope.rcpt_tos:
                self.relay.received.append(
                    Received(
                        envelope.mail_from,
                        rcpt,
                        envelope.content,
                        time.monotonic(),
                        getattr(session, "began", 0.0),
                    )
                )
            faults = [script.data_faults.get(rcpt) for rcpt in envelope.rcpt_tos]
            fault = next((f.pop(0) for f in faults if f), script.data_fault_default)
        if fault == "drop":
            server.transport.close()
        elif fault == "late":
            await asyncio.sleep(script.late_seconds)
        elif fault == "hang":
            while self.relay.running:
                await asyncio.sleep(0.05)
        return "250 2.0.0 queued"


class _LimitedSmtp(SMTP):
    """aiosmtpd's server, counting its connections and greeting those above the relay's
    limit with 421 (what a relay that takes N connections per client does)."""

    def __init__(self, relay: "SmtpRelay", *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.relay = relay

    def connection_made(self, transport) -> None:
        limit = self.relay.script.max_connections
        with self.relay.lock:  # in the order connections arrive
            self.over_limit = limit is not None and self.relay.connections >= limit
            if self.over_limit:
                self.relay.refused_connections += 1
            else:
                self.relay.connections += 1
                self.relay.peak_connections = max(
                    self.relay.peak_connections, self.relay.connections
                )
        super().connection_made(transport)

    def connection_lost(self, exc) -> None:
        if not self.over_limit:
            with self.relay.lock:
                self.relay.connections -= 1
        super().connection_lost(exc)

    async def _handle_client(self) -> None:
        if self.over_limit:
            await self.push("421 4.7.0 too many connections from you, try later")
            self.transport.close()
            return
        await super()._handle_client()


class _Controller(Controller):
    def __init__(self, relay: "SmtpRelay", *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.relay = relay

    def factory(self):
        return _LimitedSmtp(self.relay, self.handler, **self.SMTP_kwargs)


class SmtpRelay:
    def __init__(
        self, script: RelayScript | None = None, *, smtputf8: bool = True, pipelining: bool = True
    ):
        self.script = script or RelayScript()
        self.smtputf8 = smtputf8
        self.pipelining = pipelining
        self.connections = 0  # open now
        self.peak_connections = 0
        self.refused_connections = 0  # greeted with 421 for being above max_connections
        self.received: list[Received] = []
        self.auth_attempts = 0  # AUTH commands received, whatever their outcome
        self.lock = threading.Lock()
        self.port = free_port()
        self.tls_context = None  # an ssl.SSLContext: STARTTLS offered, with its certificate
        self._controller: Controller | None = None
        self.running = False

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}?starttls=off"

    @property
    def auto_tls_url(self) -> str:
        """The URL in the default mode: STARTTLS when the relay offers it (this one does not)."""
        return f"smtp://127.0.0.1:{self.port}"

    def start(self) -> "SmtpRelay":
        self._controller = _Controller(
            self,
            _Handler(self),
            hostname="127.0.0.1",
            port=self.port,
            auth_require_tls=False,
            authenticator=self._authenticate,
            enable_SMTPUTF8=self.smtputf8,
            tls_context=self.tls_context,
        )
        self._controller.start()
        self.running = True
        return self

    def stop(self) -> None:
        self.running = False
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def copies(self) -> Counter:
        """How many times each recipient was received."""
        return Counter(self.recipients())

    def recipients(self) -> list[str]:
        with self.lock:
            return [r.rcpt for r in self.received]

    def _authenticate(self, server, session, envelope, mechanism, auth_data):
        with self.lock:
            self.auth_attempts += 1
            attempt = self.auth_attempts
        replies = self.script.auth_replies
        if attempt <= len(replies) and (reply := replies[attempt - 1]) is not None:
            return AuthResult(success=False, handled=False, message=reply)
        expected = self.script.credentials
        if expected is None:
            return AuthResult(success=True)
        ok = (
            isinstance(auth_data, LoginPassword)
            and (
                auth_data.login.decode(),
                auth_data.password.decode(),
            )
            == expected
        )
        return AuthResult(success=ok, handled=False)
