"""What handing one message to a relay came to, decided once (engine/smtp/verdict.py) and
read everywhere else: sent, refused, deferred, in doubt or untried.

Only an untried message may go to another relay: it certainly did not reach this one (the
connection was refused, the relay said 421 before taking it, it refuses us). A message in
doubt went out (DATA and its final dot) without a reply: the relay may have stored it, so it
is never sent elsewhere too. (Not to be confused with ``feedback.ReportVerdict``, what a
bounce report says about a recipient later.)"""

import re
from dataclasses import dataclass
from enum import StrEnum

from sendstatus_tui.core.model.models import FailureClass


class SendVerdict(StrEnum):
    SENT = "sent"  # the relay took it (2xx after the content)
    REFUSED = "refused"  # 5xx for this recipient, or refused by us before the relay
    DEFERRED = "deferred"  # 4xx for this recipient: try again later
    IN_DOUBT = "in_doubt"  # it went out and no reply came: the relay may have it
    UNTRIED = "untried"  # it certainly did not reach the relay: safe to try elsewhere


# a reply's code and its enhanced status (RFC 3463), when it has one: "451 4.7.1 slow down"
_REPLY = re.compile(r"(?P<code>[2-5]\d\d)(?:[ -](?P<status>[2-5]\.\d{1,3}\.\d{1,3})\b)?")


@dataclass(frozen=True)
class RelayVerdict:
    """One verdict, with the reply it comes from: its code and enhanced status when the
    relay gave them (none: no reply came, or we refused it ourselves), and its text as the
    operator reads it. ``refuses_us``: the relay refuses this engine or the sender, not the
    recipient (untried: no message of the mailing can go through it until an operator
    acts)."""

    verdict: SendVerdict
    text: str
    code: int | None = None
    status: str | None = None
    refuses_us: bool = False

    @classmethod
    def of_reply(
        cls, verdict: SendVerdict, text: str, code: int | None = None, *, refuses_us: bool = False
    ) -> "RelayVerdict":
        """The verdict with the code (unless given) and the enhanced status read from the
        start of ``text``."""
        read, status = code_at_start(text)
        return cls(verdict, text, read if code is None else code, status, refuses_us)

    @property
    def may_try_elsewhere(self) -> bool:
        """Whether another relay may be given the message: only if this one surely did not
        get it."""
        return self.verdict is SendVerdict.UNTRIED

    @property
    def throttles_domain(self) -> bool:
        """A deferral with an enhanced status 4.7.x (Gmail's 421 4.7.28): the recipient's
        provider finds us too fast; its domain slows down, not the relay."""
        return (
            self.verdict is SendVerdict.DEFERRED
            and self.status is not None
            and self.status.startswith("4.7.")
        )

    @property
    def about_relay(self) -> bool:
        """About the relay, not the recipient: it refuses us, was not reached, or its reply
        was lost (the mailing stops or waits)."""
        return self.verdict in (SendVerdict.UNTRIED, SendVerdict.IN_DOUBT)

    @property
    def relay_closing(self) -> bool:
        """A 421 that is no domain's throttling: the relay closes the connection (it finds
        us holding too many)."""
        return self.verdict is SendVerdict.UNTRIED and not self.refuses_us and self.code == 421

    @property
    def unknown_user(self) -> bool:
        """Refused because the mailbox does not exist (5.1.1; not 5.1.10): the address may
        go on the suppression list (``suppress_unknown_users``)."""
        return self.verdict is SendVerdict.REFUSED and self.status == "5.1.1"

    @property
    def failure_class(self) -> str | None:
        """The class a recipient that failed with this verdict is recorded with (a deferral
        given up on is ``DEFERRED_TOO_OFTEN``, decided by the retry policy)."""
        if self.verdict is SendVerdict.REFUSED:
            # without a reply code, we refused it ourselves (a message that cannot be built
            # or cannot go through this relay)
            return FailureClass.REFUSED if self.code is not None else FailureClass.ERROR
        if self.verdict is SendVerdict.IN_DOUBT:
            return FailureClass.DOUBT
        return None


def code_at_start(text: str) -> tuple[int | None, str | None]:
    """The reply code and enhanced status at the start of ``text``, when there."""
    match = _REPLY.match(text)
    if match is None:
        return None, None
    return int(match["code"]), match["status"]


def reply_verdict(code: int, text: str) -> RelayVerdict:
    """What a relay's reply to a recipient's RCPT, DATA or content means. A 421 closes the
    connection: without 4.7.x, nothing of the message was taken (untried); with it, the
    recipient's domain throttles us (deferred)."""
    if 200 <= code < 300:
        return RelayVerdict.of_reply(SendVerdict.SENT, text, code)
    verdict = RelayVerdict.of_reply(SendVerdict.DEFERRED, text, code)
    if code == 421 and not verdict.throttles_domain:
        return RelayVerdict.of_reply(SendVerdict.UNTRIED, text, code)
    if 400 <= code < 500:
        return verdict
    return RelayVerdict.of_reply(SendVerdict.REFUSED, text, code)


def sender_reply_verdict(code: int, text: str) -> RelayVerdict:
    """What a refusal of the envelope sender (MAIL FROM) means: a 5xx refuses us until an
    operator acts; a 4xx (try later) is waited out. Untried either way."""
    return RelayVerdict.of_reply(SendVerdict.UNTRIED, text, code, refuses_us=500 <= code < 600)
