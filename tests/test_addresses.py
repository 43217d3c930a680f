"""Address checks: the quick pattern never accepts what email-validator would refuse."""

import random
import string

import pytest
from email_validator import EmailNotValidError, validate_email

from sendstatus_tui.core.addresses import InvalidAddress, normalize_address


def validator_verdict(text: str) -> str | None:
    try:
        return validate_email(text, check_deliverability=False).normalized
    except EmailNotValidError:
        return None


def our_verdict(text: str) -> str | None:
    try:
        return normalize_address(text)
    except InvalidAddress:
        return None


TRICKY = [
    "ann@example.com",
    "Ann.Lee+news@Example.COM",
    "a@b.co",
    "a..b@example.com",
    ".a@example.com",
    "a.@example.com",
    "a@example",
    "a@localhost",
    "a@shop.test",
    "a@printer.local",
    "a@-example.com",
    "a@example-.com",
    "a@xn--bcher-kva.de",
    "a@xn--x.de",
    "a@ex--ample.com",
    "a@123.456",
    "a@example.c0m",
    "x" * 64 + "@example.com",
    "x" * 65 + "@example.com",
    "a@" + "b" * 63 + ".com",
    "a@" + "b" * 64 + ".com",
    "a@" + ".".join(["b" * 60] * 5) + ".com",
    "jürgen@bücher.de",
    "ann@example.com\n",
    "ann@exam\nple.com",
    "ann\r@example.com",
    "ann @example.com",
    '"ann"@example.com',
    "ann@[127.0.0.1]",
    "",
    "@example.com",
    "ann@",
]


@pytest.mark.parametrize("text", TRICKY)
def test_tricky_addresses_get_email_validators_verdict(text):
    assert our_verdict(text) == validator_verdict(text)


def test_random_addresses_get_email_validators_verdict():
    rng = random.Random(20261127)
    alphabet = string.ascii_letters + string.digits + ".-_+@ü \n"
    for _ in range(20_000):
        local = "".join(rng.choices(alphabet, k=rng.randint(0, 12)))
        domain = "".join(rng.choices(string.ascii_lowercase + "-.0", k=rng.randint(0, 14)))
        tld = rng.choice(["com", "de", "test", "local", "x", "c0m", "", "io"])
        text = f"{local}@{domain}.{tld}" if rng.random() < 0.9 else local
        assert our_verdict(text) == validator_verdict(text), repr(text)


def test_refusals_say_why():
    with pytest.raises(InvalidAddress, match="two periods in a row"):
        normalize_address("a..b@example.com")
