"""What a relay's answer means, decided here once: the one place that reads replies and
errors into verdicts (core/model/verdict.py), and makes the error that carries a verdict
up to the routes and the sender. Everything else asks ``verdict_of``."""

from dataclasses import replace

from sendstatus_tui.core.model.verdict import (
    RelayVerdict,
    SendVerdict,
    reply_verdict,
    sender_reply_verdict,
)
from sendstatus_tui.engine.smtp.errors import (
    NotDeliverable,
    PermanentFailure,
    RelayError,
    RelayRefused,
    RelayUnavailable,
    ReplyLost,
    TemporaryFailure,
)
from sendstatus_tui.engine.smtp.wire import Reply

_ERRORS: dict[SendVerdict, type[RelayError]] = {
    SendVerdict.REFUSED: PermanentFailure,
    SendVerdict.DEFERRED: TemporaryFailure,
    SendVerdict.IN_DOUBT: ReplyLost,
    SendVerdict.UNTRIED: RelayUnavailable,
}


def verdict_of(answer: str | BaseException) -> RelayVerdict:
    """What an answer means: a reply returned (the relay took the message), or what a send
    raised. An error we did not foresee may have come after the message went out: in doubt,
    so that its retries are bounded."""
    if isinstance(answer, str):
        return RelayVerdict.of_reply(SendVerdict.SENT, answer)
    if isinstance(answer, RelayError) and answer.verdict is not None:
        return answer.verdict
    text = answer.reply if isinstance(answer, RelayError) else repr(answer)
    match answer:
        case NotDeliverable():  # refused by us: no reply code, the relay said nothing
            return RelayVerdict(SendVerdict.REFUSED, text)
        case PermanentFailure():
            return RelayVerdict.of_reply(SendVerdict.REFUSED, text)
        case TemporaryFailure():
            return RelayVerdict.of_reply(SendVerdict.DEFERRED, text)
        case ReplyLost():
            return RelayVerdict(SendVerdict.IN_DOUBT, text)
        case RelayRefused():
            return RelayVerdict.of_reply(SendVerdict.UNTRIED, text, refuses_us=True)
        case RelayUnavailable():  # nothing reached the relay
            return RelayVerdict.of_reply(SendVerdict.UNTRIED, text)
        case _:
            return RelayVerdict(SendVerdict.IN_DOUBT, text)


def error_of(verdict: RelayVerdict) -> RelayError:
    """The error that carries a verdict other than sent."""
    if verdict.verdict is SendVerdict.SENT:
        raise ValueError(f"a message sent is no error: {verdict.text}")
    kind = RelayRefused if verdict.refuses_us else _ERRORS[verdict.verdict]
    return kind(verdict.text, verdict)


def recipient_error(reply: Reply) -> RelayError:
    """What a refusal of a recipient's RCPT, DATA or content means, as the error to raise.
    A reply that is not the one expected and no 4xx (a 250 to DATA, a 354 to RCPT) refuses
    the recipient: the relay does not follow the protocol."""
    verdict = reply_verdict(reply.code, str(reply))
    if verdict.verdict is SendVerdict.SENT:
        verdict = RelayVerdict.of_reply(SendVerdict.REFUSED, verdict.text, reply.code)
    return error_of(verdict)


def sender_error(sender: str, reply: Reply) -> RelayError:
    """A 5xx to MAIL FROM stops the mailing; a 4xx (try later) is waited out."""
    text = f"the relay refused the sender {sender}: {reply}"
    return error_of(sender_reply_verdict(reply.code, text))


def setup_error(where: str, code: int, reply: str) -> RelayError:
    """A refusal while the connection is set up (greeting, EHLO): as for the sender, a 5xx
    refuses us until an operator acts, a 4xx (421: busy) is waited out."""
    verdict = sender_reply_verdict(code, f"{where}: {reply}")
    if verdict.refuses_us:
        verdict = replace(verdict, text=f"{where} refused us: {reply}")
    return error_of(verdict)
