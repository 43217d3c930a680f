"""A test send: one mailing's message, personalised as one of its recipients, to a few
addresses through the relay the engines use, now. Nothing is recorded: the mailing and its
recipients stay as they are. Its subject starts with [TEST], and its unsubscribe link
unsubscribes nobody (engine/message.py)."""

from collections.abc import Callable
from dataclasses import dataclass

from sendstatus_tui.core.model.models import Mailing
from sendstatus_tui.core.model.verdict import SendVerdict
from sendstatus_tui.core.reads.trial import Persona
from sendstatus_tui.engine.message import render, template_of
from sendstatus_tui.engine.smtp.credentials import load_credentials
from sendstatus_tui.engine.smtp.errors import RelayError
from sendstatus_tui.engine.smtp.verdict import verdict_of
from sendstatus_tui.engine.transports import MaildirTransport, Transport, transport_for
from sendstatus_tui.errors import mask_url


@dataclass(frozen=True)
class RelayForTests:
    """Where test sends go: the relay the engines use, said in words, and a way to reach it
    with a transport of the test's own (the engine's stays with the engine)."""

    description: str
    open: Callable[[], Transport]


def relay_for_tests(
    relay_url: str | None, engine_transport: Transport | None = None
) -> RelayForTests:
    """The relay of ``relay_url`` (None: the default maildir, or the maildir the engine was
    given, as the demo's is)."""
    if relay_url:
        return RelayForTests(
            mask_url(relay_url), lambda: transport_for(relay_url, load_credentials())
        )
    if isinstance(engine_transport, MaildirTransport):
        directory = engine_transport.directory
        return RelayForTests(f"the maildir {directory}", lambda: MaildirTransport(directory))
    default = MaildirTransport(None).directory
    return RelayForTests(
        f"the default maildir {default} (no relay is set: `config set relay`)",
        lambda: MaildirTransport(default),
    )


@dataclass(frozen=True)
class SendTestResult:
    address: str
    reply: str
    delivered: bool

    @classmethod
    def of(cls, address: str, answer: str | RelayError) -> "SendTestResult":
        """What the relay's answer (a reply, or what the send raised) means for it."""
        verdict = verdict_of(answer)
        return cls(address, verdict.text, verdict.verdict is SendVerdict.SENT)


async def send_test(
    transport: Transport, mailing: Mailing, persona: Persona, addresses: list[str]
) -> list[SendTestResult]:
    """Sends the test to each address; the relay's answer for each. Its envelope sender is
    the bare return path when one is set (a bounce of a test names no recipient), else the
    mailing's sender."""
    template = template_of(mailing, persona.return_path, persona.key)
    envelope_sender = template.check_sender
    results = []
    try:
        try:
            await transport.check(envelope_sender)
        except RelayError as exc:  # not reached, or refuses us: no test goes
            return [SendTestResult.of(address, exc) for address in addresses]
        for address in addresses:
            message = render(
                template, persona.id, persona.email, persona.field_values, test_to=address
            )
            answer: str | RelayError
            try:
                answer = await transport.send(envelope_sender, address, message)
            except RelayError as exc:
                answer = exc
            results.append(SendTestResult.of(address, answer))
    finally:
        await transport.close()
    return results
