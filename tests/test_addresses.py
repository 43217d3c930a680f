"""Address checks: the quick pattern never accepts what email-validator would refuse."""

import random
import string

import pytest
from email_validator import EmailNotValidError, validate_email

from sendstatus_tui.core.model.addresses import InvalidAddress, checked_address, normalize_address


def validator_verdict(text: str) -> str | None:
    """email-validator's normal form, with the domain kept in the form it was given
    (email-validator turns an ASCII ``xn--`` domain into Unicode; we keep what was imported)."""
    try:
        checked = validate_email(text, check_deliverability=False)
    except EmailNotValidError:
        return None
    domain = text.rpartition("@")[2]
    return f"{checked.local_part}@{checked.ascii_domain if domain.isascii() else checked.domain}"


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


@pytest.mark.parametrize(
    ("text", "kept"),
    [
        ("user@xn--mnchen-3ya.de", "user@xn--mnchen-3ya.de"),
        ("user@XN--MNCHEN-3YA.DE", "user@xn--mnchen-3ya.de"),
        ("user@münchen.de", "user@münchen.de"),
        ("User@MÜNCHEN.de", "User@münchen.de"),
        ("user@muenchen.de", "user@muenchen.de"),
    ],
)
def test_a_domain_keeps_the_form_it_was_imported_in(text, kept):
    assert normalize_address(text) == kept


def test_both_forms_of_a_domain_are_one_mailbox():
    keys = {
        checked_address(text)[1]
        for text in ("user@xn--mnchen-3ya.de", "USER@münchen.de", "user@MÜNCHEN.DE")
    }
    assert keys == {"user@xn--mnchen-3ya.de"}
    assert checked_address("user@muenchen.de")[1] != "user@xn--mnchen-3ya.de"
