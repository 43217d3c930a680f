"""Limits per recipient domain, as an operator writes them (``config set domain_limits``):
``gmail.com,googlemail.com=20/s:10; yahoo.com=5/s``. Each group of domains shares one rate
(any rate ``--rate`` accepts: core/model/rates.py), kept by all engines together, and
optionally ``:N``, at most N of its messages in flight per engine."""

import hashlib
import re
from dataclasses import dataclass

from sendstatus_tui.core.model.rates import parse_rate
from sendstatus_tui.errors import SendStatusError

EXAMPLE = "gmail.com,googlemail.com=20/s:10; yahoo.com=5/s"
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_DOMAIN = re.compile(rf"(?:{_LABEL}\.)+[a-z]{{2,63}}")
# a send_pace row is named in 32 characters: "domain:" and a key of at most this many
KEY_LENGTH = 25


class DomainLimitsError(SendStatusError, ValueError):
    pass


@dataclass(frozen=True)
class DomainGroup:
    """One group: its domains, their shared rate (messages a second) and the most of its
    messages one engine has in flight (None: no such cap)."""

    domains: tuple[str, ...]
    per_second: float
    in_flight: int | None
    text: str  # as written, normalised: gmail.com,googlemail.com=20/s:10

    @property
    def key(self) -> str:
        """What names the group's shared rate: its first domain, or a digest of it."""
        return pace_key(self.domains[0])

    @property
    def limit(self) -> str:
        """The group by its first domain and its rate as written: gmail.com limit 20/s."""
        rate = self.text.partition("=")[2].partition(":")[0]
        return f"{self.domains[0]} limit {rate}"


def pace_key(domain: str) -> str:
    """A domain's name for its shared rate, short enough for the send_pace row."""
    if len(domain) <= KEY_LENGTH:
        return domain
    return hashlib.sha256(domain.encode()).hexdigest()[:KEY_LENGTH]


def domain_of(address: str) -> str:
    return address.rpartition("@")[2].lower()


def parse_domain_limits(text: str | None) -> tuple[DomainGroup, ...]:
    """The groups of ``text`` (none for empty); DomainLimitsError saying what is wrong."""
    if text is None or not text.strip():
        return ()
    groups: list[DomainGroup] = []
    seen: dict[str, str] = {}
    for part in text.strip().removesuffix(";").split(";"):  # a last ';' ends the list
        group = _group(part.strip())
        for domain in group.domains:
            if domain in seen:
                raise DomainLimitsError(
                    f"{domain} is in two groups ({seen[domain]!r} and {part.strip()!r}):"
                    " a domain has one limit"
                )
            seen[domain] = part.strip()
        groups.append(group)
    return tuple(groups)


def _group(part: str) -> DomainGroup:
    if not part:
        raise DomainLimitsError(f"an empty group (expected e.g. {EXAMPLE!r})")
    domains_text, equals, limit = part.partition("=")
    if not equals:
        raise DomainLimitsError(f"{part!r}: expected DOMAIN[,DOMAIN]=RATE[:N], e.g. {EXAMPLE!r}")
    domains = tuple(d.strip().lower().rstrip(".") for d in domains_text.split(","))
    if not any(domains):
        raise DomainLimitsError(f"{part!r}: the group names no domain")
    for domain in domains:
        if not _DOMAIN.fullmatch(domain):
            raise DomainLimitsError(f"{part!r}: {domain!r} is not a domain (e.g. gmail.com)")
    if len(set(domains)) != len(domains):
        raise DomainLimitsError(f"{part!r}: a domain is named twice")
    rate_text, colon, cap_text = limit.partition(":")
    try:
        per_second = parse_rate(rate_text)
    except SendStatusError as exc:
        raise DomainLimitsError(f"{part!r}: {exc}") from None
    if per_second is None:
        raise DomainLimitsError(f"{part!r}: a group needs a rate, e.g. 20/s")
    in_flight = None
    if colon:
        if not cap_text.strip().isdigit() or int(cap_text) == 0:
            raise DomainLimitsError(
                f"{part!r}: after ':' the most messages in flight, a whole number from 1"
            )
        in_flight = int(cap_text)
    written = f"{','.join(domains)}={rate_text.strip()}" + (f":{in_flight}" if colon else "")
    return DomainGroup(domains, per_second, in_flight, written)


def stored_limits(text: str | None) -> tuple[DomainGroup, ...]:
    """The groups of the stored setting (checked when it was written; one a later, stricter
    version refuses limits nothing rather than stop an engine)."""
    try:
        return parse_domain_limits(text)
    except DomainLimitsError:
        return ()


def normalised(text: str) -> str:
    """``text`` as stored: checked, one group after another."""
    return "; ".join(group.text for group in parse_domain_limits(text))
