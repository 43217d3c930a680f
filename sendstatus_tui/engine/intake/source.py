"""What an intake reads from: any place bounces and complaints arrive. A new source (IMAP,
an SMTP listener) is one module with a class of this shape."""

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

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


class SourceError(Exception):
    """The source cannot be read at all (the intake stops with this message)."""
