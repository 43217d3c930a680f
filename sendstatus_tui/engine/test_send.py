"""A test send: one mailing's message, personalised as one of its recipients, to a few
addresses through the relay the engines use, now. Nothing is recorded: the mailing and its
recipients stay as they are."""

from dataclasses import dataclass

from ..core.models import Mailing
from ..core.trial import Persona
from .message import render, template_of
from .relay_errors import DeliveryError, RelayRefused, RelayUnavailable
from .transports import Transport


@dataclass(frozen=True)
class TestResult:
    address: str
    reply: str
    delivered: bool


async def send_test(
    transport: Transport, mailing: Mailing, persona: Persona, addresses: list[str]
) -> list[TestResult]:
    """Sends the test to each address; the relay's answer for each."""
    template = template_of(mailing)
    results = []
    try:
        try:
            await transport.check(template.sender_address)
        except (RelayRefused, RelayUnavailable) as exc:
            return [TestResult(address, exc.reply, False) for address in addresses]
        for address in addresses:
            message = render(
                template, persona.id, persona.email, persona.field_values, test_to=address
            )
            try:
                reply = await transport.send(template.sender_address, address, message)
                results.append(TestResult(address, reply, True))
            except DeliveryError as exc:
                results.append(TestResult(address, exc.reply, False))
    finally:
        await transport.close()
    return results
