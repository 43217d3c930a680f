"""Email address checks: syntax only (no DNS), with email-validator as the authority.

Importing a million recipients through email-validator alone takes about 20 s, so plain
ASCII addresses of the common shape are accepted by a stricter pattern first; a test checks
that whatever the pattern accepts, email-validator accepts and normalises the same way.
Everything else goes to email-validator.
"""

import re

from email_validator import SPECIAL_USE_DOMAIN_NAMES, EmailNotValidError, validate_email

_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_COMMON_ADDRESS = re.compile(
    r"(?P<local>[A-Za-z0-9_+-]{1,64}(?:\.[A-Za-z0-9_+-]+)*)"
    rf"@(?P<domain>(?:{_LABEL}\.)+[A-Za-z]{{2,63}})"
)
_SPECIAL_USE = tuple(SPECIAL_USE_DOMAIN_NAMES)
# email-validator's limits (RFC 5321): local part 64 octets, whole address 254
_MAX_LOCAL, _MAX_ADDRESS = 64, 254


class InvalidAddress(ValueError):
    pass


def normalize_address(text: str) -> str:
    """The address in normal form (domain lower-cased); InvalidAddress says why not."""
    common = _COMMON_ADDRESS.fullmatch(text)
    if common is not None and _is_plain(common):
        return f"{common['local']}@{common['domain'].lower()}"
    try:
        return validate_email(text, check_deliverability=False).normalized
    except EmailNotValidError as exc:
        raise InvalidAddress(str(exc)) from None


def _is_plain(match: re.Match) -> bool:
    domain = match["domain"].lower()
    return (
        len(match["local"]) <= _MAX_LOCAL
        and len(match.string) <= _MAX_ADDRESS
        and "--" not in domain  # IDNA labels (xn--) need email-validator's checks
        and not any(domain == s or domain.endswith("." + s) for s in _SPECIAL_USE)
    )
