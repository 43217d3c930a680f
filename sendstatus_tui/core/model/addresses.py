"""Email address checks: syntax only (no DNS), with email-validator as the authority.

Importing a million recipients through email-validator alone takes about 20 s, so plain
ASCII addresses of the common shape are accepted by a stricter pattern first; a test checks
that whatever the pattern accepts, email-validator accepts and normalises the same way.
Everything else goes to email-validator.
"""

import re
from functools import lru_cache

import idna
from email_validator import SPECIAL_USE_DOMAIN_NAMES, EmailNotValidError, validate_email

from sendstatus_tui.errors import SendStatusError

_LOCAL = re.compile(r"[A-Za-z0-9_+-]+(?:\.[A-Za-z0-9_+-]+)*")
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_DOMAIN = re.compile(rf"(?:{_LABEL}\.)+[A-Za-z]{{2,63}}")
_SPECIAL_USE = tuple(SPECIAL_USE_DOMAIN_NAMES)
# email-validator's limits (RFC 5321): local part 64 octets, whole address 254
_MAX_LOCAL, _MAX_ADDRESS = 64, 254


class InvalidAddress(SendStatusError, ValueError):
    pass


def normalize_address(text: str) -> str:
    """The address in normal form; InvalidAddress says why not."""
    return checked_address(text)[0]


def checked_address(text: str) -> tuple[str, str]:
    """(the address in normal form, its mailbox key); InvalidAddress says why not.

    The normal form lower-cases the domain but keeps it in the form it was given: an ASCII
    (``xn--``) domain stays ASCII, a Unicode one stays Unicode. The mailbox key is the same
    for every spelling of one mailbox (any case, either form of the domain): duplicates are
    found by it."""
    # neither pattern admits "@": a plain address has exactly one, found by rpartition
    local, _, domain = text.rpartition("@")
    if (
        len(text) <= _MAX_ADDRESS
        and len(local) <= _MAX_LOCAL
        and _LOCAL.fullmatch(local) is not None
        and (plain_domain := _plain_domain(domain)) is not None
    ):
        address = f"{local}@{plain_domain}"
        return address, address.lower()
    try:
        checked = validate_email(text, check_deliverability=False)
    except EmailNotValidError as exc:
        raise InvalidAddress(str(exc)) from None
    # email-validator gives the domain in Unicode: an operator who imported the ASCII form
    # gets it back as imported
    given_domain = checked.ascii_domain if domain.isascii() else checked.domain
    address = f"{checked.local_part}@{given_domain}"
    return address, f"{checked.local_part}@{checked.ascii_domain}".lower()


def with_ascii_domain(address: str) -> str:
    """``address`` with its domain in ASCII (IDNA) form, for a relay or a header that does
    not take UTF-8; the local part as it is (a non-ASCII one needs SMTPUTF8)."""
    local, _, domain = address.rpartition("@")
    if domain.isascii():
        return address
    return f"{local}@{idna.encode(domain, uts46=True).decode('ascii')}"


# a list has few distinct domains, most of its addresses at the same dozen: checking each
# domain once, not once per address, makes the quick path four times as fast
@lru_cache(maxsize=4096)
def _plain_domain(domain: str) -> str | None:
    """The domain lower-cased if it is plain ASCII of the common shape, else None."""
    if _DOMAIN.fullmatch(domain) is None:
        return None
    lowered = domain.lower()
    if "--" in lowered:  # IDNA labels (xn--) need email-validator's checks
        return None
    if any(lowered == s or lowered.endswith("." + s) for s in _SPECIAL_USE):
        return None
    return lowered
