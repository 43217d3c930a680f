"""What can go wrong handing a message to the relay, sorted by what it means for the
recipient and the mailing: TemporaryFailure (4xx: defer and retry), PermanentFailure (5xx:
this recipient failed), RelayUnavailable (down or dropped before the message went: wait and
retry, or another relay; nobody's fault), ReplyLost (the message went out, no reply came:
in doubt), RelayRefused (bad credentials or sender: the mailing cannot go out until an
operator acts). Each is one verdict (core/model/verdict.py); engine/smtp/verdict.py reads
them, and makes them from a relay's replies."""

from sendstatus_tui.core.model.verdict import RelayVerdict
from sendstatus_tui.errors import SendStatusError


class RelayError(SendStatusError):
    """The root of what handing a message to the relay can raise, with the relay's reply
    (or our reason). Not a DeliveryError, which is a row recording one for the operator.
    ``verdict``: what it means, when it was made from one (engine/smtp/verdict.py)."""

    def __init__(self, reply: str, verdict: RelayVerdict | None = None):
        super().__init__(reply)
        self.reply = reply
        self.verdict = verdict
        # the relay that said it, by name, once the routes know which (engine/routes.py)
        self.relay: str | None = None


class TemporaryFailure(RelayError):
    """The relay said 4xx for this recipient (a 4.7.x among them slows its domain)."""


class PermanentFailure(RelayError):
    """The relay said 5xx for this recipient."""


class RelayUnavailable(RelayError):
    """The relay cannot be reached, or dropped or closed the connection before it took the
    message: it certainly does not have it (safe to try another relay)."""


class ReplyLost(RelayError):
    """The message went out (DATA and its final dot) but no reply came: the connection
    dropped or the reply was slower than the timeout. The relay may have stored it, so it
    is in doubt: never a RelayUnavailable, which another relay may take instead."""


class RelayRefused(RelayError):
    """The relay refuses us (credentials, sender): no message of the mailing can go."""


class NotDeliverable(PermanentFailure):
    """We do not hand this message to the relay, which could not take it (an address that
    needs SMTPUTF8 when the relay lacks it). Its reason starts with "not sent:" and carries
    no reply code: the relay said nothing. (A PermanentFailure, so that an engine that does
    not know this class records the recipient as failed all the same.)"""

    def __init__(self, reason: str):
        super().__init__(f"not sent: {reason}")
