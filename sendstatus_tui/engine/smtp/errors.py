"""What can go wrong handing a message to the relay, sorted by what it means for the
recipient and the mailing: TemporaryFailure (4xx: defer and retry), PermanentFailure (5xx:
this recipient failed), RelayUnavailable (down or dropped: wait and retry, nobody's fault),
ReplyLost (the message went out, no reply came: in doubt), RelayRefused (bad credentials or
sender: the mailing cannot go out until an operator acts)."""

import re

from sendstatus_tui.errors import SendStatusError


class RelayError(SendStatusError):
    """The root of what handing a message to the relay can raise, with the relay's reply
    (or our reason). Not a DeliveryError, which is a row recording one for the operator."""

    def __init__(self, reply: str):
        super().__init__(reply)
        self.reply = reply
        # the relay that said it, by name, once the routes know which (engine/routes.py)
        self.relay: str | None = None


class TemporaryFailure(RelayError):
    """The relay said 4xx for this recipient."""


class DomainThrottled(TemporaryFailure):
    """A 4xx with an enhanced status 4.7.x (Gmail's 421 4.7.28): the recipient's provider
    finds us too fast. The recipient is deferred, and its domain slowed (engine/
    domain_pace.py), not the relay."""

    @property
    def status(self) -> str:
        return throttling_status(self.reply) or "4.7.0"


_THROTTLING = re.compile(r"4\d\d[ -](4\.7\.\d{1,3})\b")


def throttling_status(reply: str) -> str | None:
    """The enhanced status of a reply that throttles a domain (4xx 4.7.x), else None."""
    match = _THROTTLING.match(reply)
    return match[1] if match else None


def temporary(reply: str) -> TemporaryFailure:
    """What a 4xx for one recipient means (a 421 closing the connection is not one)."""
    return DomainThrottled(reply) if throttling_status(reply) else TemporaryFailure(reply)


class PermanentFailure(RelayError):
    """The relay said 5xx for this recipient."""


class RelayUnavailable(RelayError):
    """The relay cannot be reached or dropped the connection."""


class ReplyLost(RelayUnavailable):
    """The message went out (DATA and its final dot) but no reply came: the connection
    dropped or the reply was slower than the timeout. The relay may have stored it."""


class RelayRefused(RelayError):
    """The relay refuses us (credentials, sender): no message of the mailing can go."""


class NotDeliverable(PermanentFailure):
    """We do not hand this message to the relay, which could not take it (an address that
    needs SMTPUTF8 when the relay lacks it). Its reason starts with "not sent:" and carries
    no reply code: the relay said nothing. (A PermanentFailure, so that an engine that does
    not know this class records the recipient as failed all the same.)"""

    def __init__(self, reason: str):
        super().__init__(f"not sent: {reason}")
