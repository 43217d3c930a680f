"""``smtp://HOST:PORT``: a receiving SMTP server for the bounce domain, to which its MX
points (or a local MTA forwards). Bounces and complaints are pushed to it, not read from a
mailbox: there is nothing to acknowledge but the reply to the final dot.

At RCPT it takes only what sendstatus sent from: a VERP address whose code checks out
under the database's key (``bounces+CODE@``), the bare ``return_path`` and the
``complaints_address``; any other address is refused (550 5.1.1), so that it relays
nothing and never bounces anything back. Each message is applied by the intake (one
transaction, once, whatever the sender repeats) and only then answered 250; a message the
database cannot take now is answered 451, and the sender tries again later. A message
larger than DATA_LIMIT is refused (552).

It listens until stopped: then it takes no new connection nor message, finishes the
message being applied, and closes the connections left (421).
"""

import asyncio
import itertools
import logging
import socket
import threading
import time
import weakref
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar
from urllib.parse import urlsplit

from aiosmtpd.smtp import SMTP, Envelope, Session

from sendstatus_tui.core.model import settings, signing
from sendstatus_tui.core.model.verp import ReturnPath, verify
from sendstatus_tui.core.store.store import Store
from sendstatus_tui.engine.intake.source import MAX_READ, Deliver, Incoming, SourceError

log = logging.getLogger("sendstatus.intake")

DATA_LIMIT = 25_000_000  # bytes: a bounce returning a large message fits; past it, 552
ADDRESSES_SECONDS = 5.0  # how long what RCPT accepts is kept before it is read again
DRAIN_SECONDS = 30.0  # at a stop, the longest wait for the message being applied
_POLL_SECONDS = 0.1  # how often the server looks at its stop event
_T = TypeVar("_T")


@dataclass(frozen=True)
class Accepted:
    """The addresses RCPT takes, as the database's settings say now."""

    return_path: ReturnPath | None
    complaints: str | None  # lowercased

    def takes(self, address: str) -> bool:
        address = address.strip().strip("<>").lower()
        if self.complaints is not None and address == self.complaints:
            return True
        path = self.return_path
        local, _, domain = address.rpartition("@")
        if path is None or domain != path.domain:
            return False
        if local == path.local:
            return True
        base, plus, code = local.partition("+")
        return bool(plus) and base == path.local and verify(path.key, code) is not None

    def described(self) -> str:
        taken = []
        if self.return_path is not None:
            path = self.return_path
            taken += [f"{path.local}+CODE@{path.domain} (signed codes)", path.plain]
        if self.complaints is not None:
            taken.append(self.complaints)
        if not taken:
            return (
                "nothing yet: every address is refused until `sendstatus config set"
                " return_path` or complaints_address is set"
            )
        return ", ".join(taken)


def accepted(store: Store) -> Accepted:
    with store.read() as session:
        complaints = settings.read(session, "complaints_address")
        return Accepted(signing.return_path(session), complaints.lower() if complaints else None)


class SmtpListener:
    def __init__(self, host: str, port: int, data_limit: int = DATA_LIMIT):
        self.host, self.port, self.data_limit = host, port, data_limit
        self._socket: socket.socket | None = None

    @property
    def name(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"smtp://{host}:{self.port}"

    def open(self) -> None:
        """Binds the port (SourceError when it cannot), so that a port taken or a port below
        1024 without the right is refused before anything else starts."""
        if self._socket is not None:
            return
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        try:
            self._socket = socket.create_server((self.host, self.port), family=family)
        except OSError as exc:
            hint = (
                " (a port below 1024 needs root or CAP_NET_BIND_SERVICE)"
                if isinstance(exc, PermissionError)
                else ""
            )
            raise SourceError(f"{self.name}: cannot listen: {exc.strerror or exc}{hint}") from None
        if self.port == 0:  # the port the system chose
            self.port = self._socket.getsockname()[1]

    def serve(self, store: Store, deliver: Deliver, stop: threading.Event) -> None:
        self.open()
        assert self._socket is not None
        listening, self._socket = self._socket, None
        # one thread for the database: messages are applied one at a time, in order
        database = ThreadPoolExecutor(max_workers=1, thread_name_prefix="intake-smtp")
        try:
            asyncio.run(self._serve(listening, _Handler(self, store, deliver, database), stop))
        finally:
            database.shutdown(wait=True)  # the message being applied is finished
            listening.close()

    async def _serve(
        self, listening: socket.socket, handler: "_Handler", stop: threading.Event
    ) -> None:
        loop = asyncio.get_running_loop()
        sessions: weakref.WeakSet[SMTP] = weakref.WeakSet()
        hostname = socket.gethostname()

        def session() -> SMTP:
            smtp = SMTP(
                handler,
                data_size_limit=self.data_limit,
                enable_SMTPUTF8=True,
                hostname=hostname,
                ident="sendstatus intake",
                loop=loop,
            )
            sessions.add(smtp)
            return smtp

        server = await loop.create_server(session, sock=listening)
        try:
            addresses = (await handler.accepted()).described()
        except Exception as exc:  # noqa: BLE001  the database may come back: say it, go on
            addresses = f"(cannot read them now: {exc})"
        log.info("%s: listening; accepts %s", self.name, addresses)
        while not stop.is_set():
            await asyncio.sleep(_POLL_SECONDS)
        server.close()  # no new connection
        handler.stopping = True  # no new message
        deadline = time.monotonic() + DRAIN_SECONDS
        while handler.busy and time.monotonic() < deadline:
            await asyncio.sleep(_POLL_SECONDS / 2)
        for smtp in list(sessions):
            transport = smtp.transport
            if isinstance(transport, asyncio.WriteTransport) and not transport.is_closing():
                transport.write(b"421 4.3.2 Service shutting down, try again later\r\n")
                transport.close()
        await asyncio.sleep(0)  # the closed sessions end their tasks
        log.info("%s: stopped", self.name)


class _Handler:
    """aiosmtpd's hooks: RCPT is checked against the settings, DATA handed to the intake."""

    def __init__(
        self, listener: SmtpListener, store: Store, deliver: Deliver, database: ThreadPoolExecutor
    ):
        self.listener, self.store, self.deliver, self.database = listener, store, deliver, database
        self.numbers = itertools.count(1)
        self.busy = 0  # messages being applied
        self.stopping = False
        self._accepted: Accepted | None = None
        self._read_at = 0.0

    async def _in_database(self, work: Callable[[], _T]) -> _T:
        return await asyncio.get_running_loop().run_in_executor(self.database, work)

    async def accepted(self) -> Accepted:
        now = time.monotonic()
        if self._accepted is None or now - self._read_at >= ADDRESSES_SECONDS:
            self._accepted = await self._in_database(lambda: accepted(self.store))
            self._read_at = now
        return self._accepted

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        if self.stopping:
            return "421 4.3.2 Service shutting down, try again later"
        try:
            taken = (await self.accepted()).takes(address)
        except Exception as exc:  # noqa: BLE001  a database down: the sender tries again
            log.error("%s: cannot read the addresses it takes: %s", self.listener.name, exc)
            return "451 4.3.0 Cannot check the address now, try again later"
        if not taken:
            log.info("%s: refused RCPT <%s> from %s", self.listener.name, address, _peer(session))
            return f"550 5.1.1 <{address}>: no such mailbox here"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.stopping:
            return "421 4.3.2 Service shutting down, try again later"
        data = envelope.original_content or b""
        number = next(self.numbers)
        # one per recipient: the address it came to names the mailing and recipient
        messages = [
            Incoming(
                f"#{number} from {_peer(session)} to <{rcpt}>",
                data[:MAX_READ],
                len(data) > MAX_READ,
                envelope_to=rcpt,
            )
            for rcpt in envelope.rcpt_tos
        ]
        self.busy += 1
        try:
            done = await self._in_database(lambda: all([self.deliver(m) for m in messages]))
        finally:
            self.busy -= 1
        if not done:
            return "451 4.3.0 Cannot record it now, try again later"
        return "250 2.0.0 OK: applied"


def _peer(session: Session) -> str:
    peer = session.peer
    return str(peer[0]) if isinstance(peer, tuple) and peer else str(peer)


def smtp_listener(text: str) -> SmtpListener:
    """The listener ``smtp://HOST[:PORT]`` names (port 25 by default); SourceError says why
    the text names none."""
    example = "e.g. smtp://0.0.0.0:25 or smtp://127.0.0.1:2525"
    parts = urlsplit(text)
    try:
        port = parts.port
    except ValueError:
        raise SourceError(f"{text}: not a port number ({example})") from None
    if parts.scheme != "smtp" or not parts.hostname:
        raise SourceError(f"{text}: which address to listen on? ({example})")
    if parts.username or parts.password or parts.path not in ("", "/") or parts.query:
        raise SourceError(f"{text}: only a host and a port ({example})")
    return SmtpListener(parts.hostname, 25 if port is None else port)
