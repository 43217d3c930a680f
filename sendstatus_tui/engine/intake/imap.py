"""``imaps://USER@HOST[:PORT]/FOLDER`` (and ``imap://``, with STARTTLS): a mailbox at a
provider, where the bounce address is delivered when there is no local MTA to write a
maildir.

Each pass searches the folder for the messages not yet processed, fetches each (its first
MAX_READ bytes, without marking it seen), and once its effects are committed flags it
``\\Seen`` and ``SendstatusProcessed``. Flagging rather than moving: it works on every
server (no folder to create, no MOVE or UIDPLUS needed), the mailbox stays as the provider
shows it, nothing is ever deleted, and adding a flag twice is harmless, so a message read
twice (two intakes, a kill between commit and flag) is only a duplicate in the database.
The keyword, not ``\\Seen``, says what is done: a person who opens the mailbox and reads a
bounce does not hide it from the intake.

The standard library's imaplib, called from the intake's own (synchronous) loop: no
dependency to add. It has no IDLE before Python 3.14, so IDLE is spoken here, over
imaplib's documented ``send``/``readline``, with a line buffer of our own that tells
whether a line is waiting without blocking.

The password comes from SENDSTATUS_INTAKE_PASSWORD or the ``[intake]`` table of the
credentials file (engine/smtp/credentials.py), never from the URL.
"""

import contextlib
import imaplib
import ipaddress
import logging
import os
import re
import select
import socket
import ssl
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from urllib.parse import parse_qs, unquote, urlsplit

from sendstatus_tui.engine.intake.source import MAX_READ, PASSWORD_ENV, Incoming, SourceError
from sendstatus_tui.engine.smtp.credentials import (
    CredentialsError,
    credentials_path,
    credentials_table,
)

log = logging.getLogger("sendstatus.intake")

KEYWORD = "SendstatusProcessed"
# one IDLE lasts at most this long, then a pass anyway (RFC 2177: servers may end an IDLE
# after 30 minutes; a pass also proves the connection still works)
IDLE_MAX = 300.0
# seconds between reconnects; then, with --follow, RETRY_FOREVER between each try
RETRY_DELAYS = (1.0, 2.0, 4.0, 8.0, 16.0)
RETRY_FOREVER = 30.0
_OPTIONS = {"verify", "timeout", "plaintext_auth"}
_MAX_LINE = 1 << 20
# what a lost connection raises (imaplib turns a socket error into abort, or not)
_DROPPED = (OSError, EOFError, imaplib.IMAP4.abort)


@dataclass(frozen=True)
class ImapSettings:
    user: str
    host: str
    port: int
    folder: str
    implicit_tls: bool  # imaps://; imap:// uses STARTTLS
    verify_certificates: bool = True
    timeout: float = 60.0
    # a login without TLS, only to a server on loopback that offers no STARTTLS
    plaintext_auth: bool = False

    @property
    def name(self) -> str:
        scheme = "imaps" if self.implicit_tls else "imap"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{self.user}@{host}:{self.port}/{self.folder}"


def parse_imap_url(text: str) -> ImapSettings | None:
    """The settings ``imap[s]://USER@HOST[:PORT]/FOLDER[?verify=off]`` names, or None for
    another kind of source; SourceError when it cannot be used."""
    if not text.startswith(("imap://", "imaps://")):
        return None
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise SourceError(f"not an IMAP URL: {text!r} ({exc})") from None
    if parts.password is not None:
        raise SourceError(
            "the IMAP URL must not carry a password (every user can read a command line):"
            f" set {PASSWORD_ENV}, or password in the [intake] table of the credentials file"
        )
    if not parts.username:
        raise SourceError(f"{text}: which user? e.g. imaps://bounces@imap.example.com/INBOX")
    if not parts.hostname:
        raise SourceError(f"{text}: no host")
    folder = unquote(parts.path.lstrip("/")) or "INBOX"
    if not folder.isascii() or any(c in folder for c in '\r\n"\\'):
        raise SourceError(f"{text}: the folder name must be plain ASCII, not {folder!r}")
    options = {key: values[-1] for key, values in parse_qs(parts.query).items()}
    unknown = set(options) - _OPTIONS
    if unknown:
        raise SourceError(f"unknown IMAP URL option(s): {', '.join(sorted(unknown))}")
    timeout = options.get("timeout", "60")
    if not (timeout.isascii() and timeout.isdigit() and 0 < int(timeout) <= 3600):
        raise SourceError(f"IMAP option timeout={timeout!r}: expected seconds from 1 to 3600")
    settings = ImapSettings(
        user=unquote(parts.username),
        host=parts.hostname,
        port=port or (993 if parts.scheme == "imaps" else 143),
        folder=folder,
        implicit_tls=parts.scheme == "imaps",
        verify_certificates=_choice(options, "verify", ("on", "off")) == "on",
        timeout=float(timeout),
        plaintext_auth=_choice(options, "plaintext_auth", ("no", "yes")) == "yes",
    )
    if settings.plaintext_auth and not _is_loopback(settings.host):
        raise SourceError(
            f"IMAP option plaintext_auth=yes is only for a server on this machine (loopback),"
            f" not {settings.host}: a password is never sent in clear over a network"
        )
    return settings


def _choice(options: dict[str, str], key: str, allowed: tuple[str, ...]) -> str:
    value = options.get(key, allowed[0])
    if value not in allowed:
        raise SourceError(f"IMAP option {key}={value!r}: expected one of {allowed}")
    return value


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def intake_password(user: str, environ: Mapping[str, str] = os.environ) -> str:
    """From SENDSTATUS_INTAKE_PASSWORD, else ``password`` in ``[intake]`` of the credentials
    file (whose ``username``, if given, must be ``user``)."""
    if environ.get(PASSWORD_ENV):
        return environ[PASSWORD_ENV]
    path = credentials_path(environ)
    try:
        table = credentials_table("intake", environ)
    except CredentialsError as exc:
        raise SourceError(str(exc)) from None
    if not table or not isinstance(table.get("password"), str):
        where = f"password in the [intake] table of {path}"
        raise SourceError(f"no password for the IMAP user {user}: set {PASSWORD_ENV}, or {where}")
    named = table.get("username")
    if named is not None and named != user:
        raise SourceError(f"{path}: [intake] is for the user {named!r}, the URL names {user!r}")
    return str(table["password"])


def imap_source(text: str, environ: Mapping[str, str] = os.environ) -> "ImapSource | None":
    """The source an ``imap[s]://`` URL names, or None for another kind."""
    settings = parse_imap_url(text)
    if settings is None:
        return None
    return ImapSource(settings, intake_password(settings.user, environ))


class _Connection(imaplib.IMAP4):
    """imaplib's client reading through a buffer of its own (``readline`` and ``read`` are
    documented as overridable), so that a wait can tell a line is there without blocking."""

    _buffer: bytearray | None = None  # made by the first read (imaplib reads in __init__)

    @property
    def _pending(self) -> bytearray:
        if self._buffer is None:
            self._buffer = bytearray()
        return self._buffer

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise imaplib.IMAP4.abort("the server closed the connection")
        self._pending.extend(chunk)

    def readline(self) -> bytes:
        while True:
            end = self._pending.find(b"\n")
            if end >= 0:
                line = bytes(self._pending[: end + 1])
                del self._pending[: end + 1]
                return line
            if len(self._pending) > _MAX_LINE:
                raise imaplib.IMAP4.abort(f"a line longer than {_MAX_LINE} bytes")
            self._fill()

    def read(self, size: int) -> bytes:
        while len(self._pending) < size:
            self._fill()
        data = bytes(self._pending[:size])
        del self._pending[:size]
        return data

    def _line_waiting(self, timeout: float) -> bool:
        if b"\n" in self._pending:
            return True
        if isinstance(self.sock, ssl.SSLSocket) and self.sock.pending():
            return True  # decrypted already: select() would not see it
        readable, _, _ = select.select([self.sock], [], [], timeout)
        if readable:
            self._fill()
        return b"\n" in self._pending

    def idle(self, seconds: float, stop: threading.Event) -> bool:
        """IDLE (RFC 2177) until the server reports a message, ``stop`` is set or
        ``seconds`` passed; True when something arrived. imaplib.IMAP4.error when the server
        refuses IDLE."""
        tag = b"SSIDLE"
        self.send(tag + b" IDLE\r\n")
        arrived = False
        while True:
            line = self.readline()
            if line.startswith(b"+"):
                break
            if line.startswith(tag + b" "):
                raise imaplib.IMAP4.error(f"IDLE refused: {line.decode('ascii', 'replace')}")
            arrived = arrived or _announces_mail(line)
        deadline = time.monotonic() + seconds
        while not arrived and not stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                break
            while self._line_waiting(min(0.5, left)):
                line = self.readline()
                if line.startswith(b"* BYE"):
                    raise imaplib.IMAP4.abort(line.decode("ascii", "replace").strip())
                arrived = arrived or _announces_mail(line)
        self.send(b"DONE\r\n")
        while True:
            line = self.readline()
            if line.startswith(tag + b" "):
                return arrived
            arrived = arrived or _announces_mail(line)


class _TlsConnection(_Connection, imaplib.IMAP4_SSL):
    pass


def _announces_mail(line: bytes) -> bool:
    return re.match(rb"\* \d+ (EXISTS|RECENT)\b", line) is not None


@dataclass
class ImapSource:
    settings: ImapSettings
    password: str = field(repr=False)
    # set by the command: with --follow, a lost server is waited for, until stop
    stop: threading.Event = field(default_factory=threading.Event)
    patient: bool = False
    reconnects: int = 0  # connections lost and made again
    refused: int = 0  # messages the server would not give (left for later)
    _imap: _Connection | None = field(default=None, repr=False)
    _keywords: bool = True  # the folder takes our keyword (else \Seen alone says done)
    _idle: bool = False

    @property
    def name(self) -> str:
        return self.settings.name

    def open(self) -> None:
        """Connects and logs in now: a refused login, a bad certificate or a missing folder
        is a SourceError before anything else happens."""
        if self._imap is None:
            try:
                self._imap = self._connect()
            except _DROPPED as exc:
                raise SourceError(f"{self.name}: cannot connect: {_reason(exc)}") from None

    def close(self) -> None:
        imap, self._imap = self._imap, None
        if imap is not None:
            try:
                imap.logout()
            except (*_DROPPED, imaplib.IMAP4.error):
                pass

    def messages(self) -> Iterator[Incoming]:
        given: set[int] = set()  # this pass: not again after a reconnect
        while True:
            imap = self._session()
            if imap is None:
                return
            try:
                for uid in self._unprocessed(imap):
                    if uid in given:
                        continue
                    incoming = self._fetch(imap, uid)
                    given.add(uid)
                    if incoming is not None:
                        yield incoming
                        # acknowledge may have had to reconnect
                        imap = self._imap or imap
                return
            except _DROPPED as exc:
                self._lost(exc, "while reading")

    def acknowledge(self, message: Incoming) -> bool:
        uid = message.ref.removeprefix("UID ")
        flags = rf"(\Seen {KEYWORD})" if self._keywords else r"(\Seen)"
        for _ in range(2):
            imap = self._session()
            if imap is None:
                break
            try:
                _, data = imap.uid("FETCH", uid, "(FLAGS)")
                already = any(
                    isinstance(item, bytes)
                    and f"UID {uid} ".encode() in item
                    and (KEYWORD.encode() if self._keywords else rb"\Seen") in item
                    for item in data
                )
                if not already:
                    imap.uid("STORE", uid, "+FLAGS.SILENT", flags)
                return not already
            except _DROPPED as exc:
                self._lost(exc, f"while flagging UID {uid}")
            except imaplib.IMAP4.error as exc:
                log.error("%s UID %s: not flagged (%s)", self.name, uid, _reason(exc))
                break
        log.warning(
            "%s UID %s: not flagged yet: the next pass reads it again (it counts once)",
            self.name,
            uid,
        )
        return False

    def wait(self, interval: float, stop: threading.Event) -> None:
        """Between two passes of --follow: IDLE where the server offers it, else
        ``interval`` seconds."""
        self.stop = stop
        imap = self._imap
        if imap is None or not self._idle:
            stop.wait(interval)
            return
        try:
            imap.idle(IDLE_MAX, stop)
        except _DROPPED as exc:
            self._lost(exc, "while waiting (IDLE)")
        except imaplib.IMAP4.error as exc:
            log.warning("%s: %s: polling every %g s instead", self.name, _reason(exc), interval)
            self._idle = False
            stop.wait(interval)

    def summary(self) -> str:
        """For the closing line: what went wrong on the way, if anything."""
        notes = []
        if self.reconnects:
            notes.append(f"{self.reconnects:,} reconnects")
        if self.refused:
            notes.append(f"{self.refused:,} refused by the server (left for later)")
        return "; ".join(notes)

    # --- the connection ---------------------------------------------------------------

    def _connect(self) -> _Connection:
        settings = self.settings
        context = ssl.create_default_context()
        if not settings.verify_certificates:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        imap: _Connection
        try:
            if settings.implicit_tls:
                imap = _TlsConnection(
                    settings.host, settings.port, ssl_context=context, timeout=settings.timeout
                )
            else:
                imap = _Connection(settings.host, settings.port, timeout=settings.timeout)
                if "STARTTLS" in imap.capabilities:
                    imap.starttls(context)
                elif not settings.plaintext_auth:
                    imap.shutdown()
                    raise SourceError(
                        f"{self.name}: the server offers no STARTTLS, and a password is never"
                        " sent in clear: use imaps://"
                    )
        except ssl.SSLCertVerificationError as exc:
            raise SourceError(
                f"{self.name}: the server's certificate is not trusted"
                f" ({exc.verify_message or exc}); add ?verify=off only for a server you trust"
            ) from None
        except imaplib.IMAP4.abort:
            raise
        except imaplib.IMAP4.error as exc:  # e.g. a refused STARTTLS
            raise SourceError(f"{self.name}: {_reason(exc)}") from None
        try:
            imap.login(settings.user, self.password)
        except imaplib.IMAP4.abort:
            raise
        except imaplib.IMAP4.error as exc:
            imap.shutdown()
            raise SourceError(f"{self.name}: login refused: {_reason(exc)}") from None
        status, data = imap.select(_quoted(settings.folder))
        if status != "OK":
            imap.shutdown()
            raise SourceError(f"{self.name}: cannot open the folder: {_reason(data)}")
        _, permanent = imap.response("PERMANENTFLAGS")
        self._keywords = any(
            isinstance(item, bytes) and (b"\\*" in item or KEYWORD.encode() in item)
            for item in permanent
        )
        if not self._keywords:
            log.warning(
                "%s: the folder takes no keywords: \\Seen alone marks a message processed",
                self.name,
            )
        self._idle = "IDLE" in imap.capabilities
        return imap

    def _session(self) -> _Connection | None:
        """The connection, made again if it was lost: a few tries, or with --follow until
        ``stop``; None when stopped. SourceError when the server is gone for good, or
        refuses the login."""
        if self._imap is not None:
            return self._imap
        tries = 0
        while not self.stop.is_set():
            try:
                self._imap = self._connect()
                log.info("%s: connected again", self.name)
                return self._imap
            except _DROPPED as exc:
                tries += 1
                if tries > len(RETRY_DELAYS) and not self.patient:
                    raise SourceError(
                        f"{self.name}: cannot reach the server ({tries} tries): {_reason(exc)}"
                    ) from None
                delay = RETRY_DELAYS[tries - 1] if tries <= len(RETRY_DELAYS) else RETRY_FOREVER
                log.warning(
                    "%s: cannot connect (%s): trying again in %g s", self.name, _reason(exc), delay
                )
                self.stop.wait(delay)
        return None

    def _lost(self, exc: BaseException, when: str) -> None:
        self.reconnects += 1
        log.warning("%s: connection lost %s (%s): reconnecting", self.name, when, _reason(exc))
        imap, self._imap = self._imap, None
        if imap is not None:
            with contextlib.suppress(OSError):
                imap.shutdown()

    def _unprocessed(self, imap: _Connection) -> list[int]:
        done = f"UNKEYWORD {KEYWORD}" if self._keywords else "UNSEEN"
        imap.untagged_responses.clear()  # what came unasked (new mail, others' flags)
        try:
            status, data = imap.uid("SEARCH", f"UNDELETED {done}")
        except imaplib.IMAP4.abort:
            raise
        except imaplib.IMAP4.error as exc:
            raise SourceError(f"{self.name}: the server refused a search: {_reason(exc)}") from None
        if status != "OK":
            raise SourceError(f"{self.name}: the server refused a search: {_reason(data)}")
        return sorted(int(uid) for item in data if item for uid in item.split())

    def _fetch(self, imap: _Connection, uid: int) -> Incoming | None:
        """Its first MAX_READ bytes (BODY.PEEK: not marked seen by reading); None when it is
        gone (expunged meanwhile) or the server refuses it (counted, left for later)."""
        try:
            status, data = imap.uid("FETCH", str(uid), f"(BODY.PEEK[]<0.{MAX_READ + 1}>)")
        except imaplib.IMAP4.abort:
            raise
        except imaplib.IMAP4.error as exc:
            status, data = "NO", [str(exc).encode()]
        if status != "OK":
            self.refused += 1
            log.error(
                "%s UID %s: the server would not give it (%s): left for later",
                self.name,
                uid,
                _reason(data),
            )
            return None
        mine = re.compile(rb"\bUID %d\b" % uid)
        for item in data:
            if isinstance(item, tuple) and mine.search(item[0]) and b"BODY[" in item[0]:
                body = item[1]
                return Incoming(f"UID {uid}", body[:MAX_READ], len(body) > MAX_READ)
        return None


def _quoted(folder: str) -> str:
    return '"' + folder + '"'


def _reason(what: object) -> str:
    """One line for the log, from an exception or an imaplib response."""
    if isinstance(what, list):
        what = b" ".join(item for item in what if isinstance(item, bytes))
    if isinstance(what, bytes):
        what = what.decode("utf-8", "replace")
    if isinstance(what, socket.timeout):
        return "no answer (timed out)"
    if isinstance(what, imaplib.IMAP4.error) and what.args and isinstance(what.args[0], bytes):
        what = what.args[0].decode("utf-8", "replace")
    text = " ".join(str(what).split()) or type(what).__name__
    return text[:300]
