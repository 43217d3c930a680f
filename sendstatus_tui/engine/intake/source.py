"""What an intake reads from: any place bounces and complaints arrive. A source that holds
messages until they are taken (a maildir, IMAP) is a Source: the intake reads it, pass after
pass. One to which they are pushed (the SMTP listener) is a Listener: it hands each message
to the intake as it arrives, and answers its sender once the intake says it is applied."""

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from sendstatus_tui.core.store.store import Store

# where an IMAP source's password comes from (else the credentials file's [intake] table)
PASSWORD_ENV = "SENDSTATUS_INTAKE_PASSWORD"
DEFAULT_INTERVAL = 5.0  # seconds between two passes of --follow

# the most of one message read: a DSN's report and the returned headers come first; a
# 20 MB returned attachment is never read whole
MAX_READ = 1 << 20


@dataclass(frozen=True)
class Incoming:
    ref: str  # how the source names it (a file name, a UID), for the log and acknowledge
    data: bytes  # its first MAX_READ bytes
    truncated: bool  # it was longer
    # the address it was delivered to, when the source knows it (an SMTP listener's RCPT)
    envelope_to: str | None = None


class Source(Protocol):
    @property
    def name(self) -> str:
        """As the operator gave it: ``maildir:/var/mail/bounces``."""

    def messages(self) -> Iterator[Incoming]:
        """The messages not acknowledged yet, each once per call (a pass)."""

    def acknowledge(self, message: Incoming) -> bool:
        """Marks ``message`` processed, after its effects were committed; False when another
        intake did first."""


# what a Listener calls for each message: True once its effect is committed (the listener
# may then say so to its sender), False when it is left for later (the sender should retry)
Deliver = Callable[[Incoming], bool]


@runtime_checkable
class Listener(Protocol):
    @property
    def name(self) -> str:
        """As the operator gave it: ``smtp://127.0.0.1:2525``."""

    def open(self) -> None:
        """Takes hold of what it listens on (SourceError when it cannot), so that a command
        fails before anything else starts; ``serve`` opens it otherwise."""

    def serve(self, store: Store, deliver: Deliver, stop: threading.Event) -> None:
        """Takes messages until ``stop`` is set, each handed to ``deliver`` (from one thread
        at a time); finishes the message in hand, then returns. ``store``: where it reads
        which addresses are ours."""


class SourceError(Exception):
    """The source cannot be read at all (the intake stops with this message)."""
