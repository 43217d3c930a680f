"""The SMTP wire once a connection is set up: commands written, replies read in order.

aiosmtplib (which opens our connections: greeting, EHLO, STARTTLS, AUTH) reads exactly one
reply per command it writes, so it cannot pipeline (RFC 2920). Once a connection is ready,
its transport is handed to a ``ReplyReader``: every command written registers a future, and
replies resolve those futures in the order they arrive, which is the order the commands
were written. Several commands can then be on the wire at once.
"""

import asyncio
import re
from collections import deque
from dataclasses import dataclass

# RFC 5321 limits a reply line to 512 octets; be lenient, but not without bound
_MAX_REPLY_BYTES = 64 * 1024
_LINE_ENDINGS = re.compile(rb"\r\n|\n|\r(?!\n)")


@dataclass(frozen=True)
class Reply:
    code: int
    text: str

    def __str__(self) -> str:
        return f"{self.code} {' '.join(self.text.split())}"


class ConnectionClosed(Exception):
    """The relay closed the connection, it broke, or it said something that is not SMTP."""


class ReplyReader(asyncio.Protocol):
    """Reads the relay's replies and hands each to the oldest command still waiting.

    A relay that leaves a command unanswered for ``timeout`` seconds, with no reply at all
    in that time, is given up: the connection closes and every waiting command fails with
    ConnectionClosed("no reply in time"). One timer per connection does it (a timeout on
    each reply cost more processor time than the rest of the reading)."""

    def __init__(self, transport: asyncio.WriteTransport, timeout: float):
        self.transport = transport
        self.timeout = timeout
        self._loop = asyncio.get_running_loop()
        self._answered_at = 0.0  # loop time of the last reply, or of a first command
        self._watchdog: asyncio.TimerHandle | None = None
        self._buffer = bytearray()  # what came after the last complete line
        self._lines: list[str] = []  # the texts of a multi-line reply so far
        self._lines_bytes = 0
        self._waiting: deque[asyncio.Future[Reply]] = deque()
        self._held: list[bytes] = []  # written with the next send, or by flush_soon
        self.closed: BaseException | None = None
        transport.set_protocol(self)

    def send(self, data: bytes, replies: int, *, hold: bool = False) -> list[asyncio.Future[Reply]]:
        """Writes ``data`` (``replies`` commands, or message content and its dot) and
        returns a future for each reply it will get. With ``hold``, the data waits for the
        next send (or ``flush_soon``), to go out with it in one write."""
        if self.closed is not None:
            raise ConnectionClosed(str(self.closed))
        futures = [self._loop.create_future() for _ in range(replies)]
        if not self._waiting:
            self._answered_at = self._loop.time()  # the relay owes nothing older
            if self._watchdog is None:
                self._watchdog = self._loop.call_at(self._answered_at + self.timeout, self._check)
        self._waiting.extend(futures)
        if hold:
            self._held.append(data)
        elif self._held:
            self._held.append(data)
            self._flush()
        else:
            self.transport.write(data)
        return futures

    def flush_soon(self) -> None:
        """Writes what is held once the tasks already woken had their turn: a send made by
        one of them joins it in the same write."""
        self._loop.call_soon(self._flush)

    def close(self, reason: str = "closed by us") -> None:
        self._held.clear()
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        self._fail_all(ConnectionClosed(reason))
        self.transport.close()

    # --- asyncio.Protocol -------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        self._buffer.extend(data)
        self._answered_at = self._loop.time()
        end = self._buffer.rfind(b"\n")
        if end != -1:  # whole lines, split in one go (in C), then read one by one
            complete = bytes(self._buffer[: end + 1])
            del self._buffer[: end + 1]
            for line in complete.split(b"\n")[:-1]:
                if not self._read_line(line):
                    return
        if len(self._buffer) + self._lines_bytes > _MAX_REPLY_BYTES:
            self.close("a reply too long to be SMTP")

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail_all(ConnectionClosed(str(exc) if exc else "the relay closed the connection"))

    def eof_received(self) -> bool:
        self._fail_all(ConnectionClosed("the relay closed the connection"))
        return False

    # --- internals --------------------------------------------------------------------

    def _check(self) -> None:
        """The watchdog: gives up on a relay silent for ``timeout`` while it owes a reply."""
        self._watchdog = None
        if not self._waiting or self.closed is not None:
            return  # armed again by the next command
        due = self._answered_at + self.timeout
        if self._loop.time() >= due:
            self.close("no reply in time")
        else:
            self._watchdog = self._loop.call_at(due, self._check)

    def _flush(self) -> None:
        if self._held and self.closed is None:
            self.transport.write(b"".join(self._held))
        self._held.clear()

    def _fail_all(self, exc: ConnectionClosed) -> None:
        if self.closed is None:
            self.closed = exc
        while self._waiting:
            future = self._waiting.popleft()
            if not future.done():
                future.set_exception(exc)
                future.exception()  # nobody may await it (a cancelled sender): no warning

    def _read_line(self, line: bytes) -> bool:
        """One line of a reply (``CODE-text``, or ``CODE text`` to end it): the reply goes
        to the oldest command waiting once complete. False once the connection closed."""
        line = line.rstrip(b"\r")
        if not line[:3].isdigit() or line[3:4] not in (b"", b" ", b"-"):
            self.close(f"not an SMTP reply: {line[:80]!r}")
            return False
        self._lines.append(line[4:].decode("utf-8", "replace").strip())
        if line[3:4] == b"-":
            self._lines_bytes += len(line)
            return True
        reply = Reply(int(line[:3]), "\n".join(self._lines))
        self._lines, self._lines_bytes = [], 0
        if not self._waiting:
            self.close(f"a reply nobody asked for: {reply}")
            return False
        future = self._waiting.popleft()
        if not future.done():  # its sender may have been cancelled
            future.set_result(reply)
        return True


def wire_data(message: bytes) -> bytes:
    """``message`` as DATA sends it: CRLF line endings, dot-stuffed, ended by ``.``.

    Rendered messages already end their lines in CRLF, so plain byte replacements (in C)
    do the work; only a message with a lone CR or LF takes the slow path."""
    if not (message.count(b"\r") == message.count(b"\n") == message.count(b"\r\n")):
        message = _LINE_ENDINGS.sub(b"\r\n", message)
    if not message.endswith(b"\r\n"):
        message += b"\r\n"
    if message.startswith(b"."):
        message = b"." + message
    return message.replace(b"\r\n.", b"\r\n..") + b".\r\n"
