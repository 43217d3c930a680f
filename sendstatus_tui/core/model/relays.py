"""Relays as stored data (``sendstatus relay``): each with a name, a URL, a weight (its share
of the messages), and optionally a rate shared by every engine and each engine's most
connections towards it. Every value is checked before it is written, so that an engine can
trust what it reads; a URL with credentials is refused (they come from each engine's
environment or credentials file, never the database).

A mailing may name the relays it uses (``mailing add --relay``); one that names none uses
every relay that exists when each message goes out."""

import re
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from sqlmodel import Session, col, select

from sendstatus_tui.core.model.models import Mailing, Relay, utc_now
from sendstatus_tui.core.model.rates import parse_rate
from sendstatus_tui.core.model.relay_url import MAX_POOL, parse_relay_url
from sendstatus_tui.core.model.states import State
from sendstatus_tui.errors import SendStatusError, mask_url

# the relay the former single ``relay`` setting became, and that ``config set relay`` sets
DEFAULT_NAME = "default"
# what ``--relay`` takes for "every relay", and so no relay's name
EVERY = "all"
MAX_WEIGHT = 1000
# how an engine's reason starts when no relay a mailing uses took its messages
EVERY_RELAY_DOWN = "every relay is down"
# a name is also part of the variables that carry its credentials
# (SENDSTATUS_RELAY_<NAME>_USER): letters, digits, - and _; and of the name of its rate's
# row (send_pace, 32 characters: "relay:" and the name)
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,25}")


class RelaySettingError(SendStatusError, ValueError):
    pass


class UnknownRelay(RelaySettingError):
    def __init__(self, name: str, known: Sequence[str]):
        listed = ", ".join(known) if known else "none yet: `sendstatus relay add NAME URL`"
        super().__init__(f"unknown relay {name!r} (relays: {listed})")


@dataclass(frozen=True)
class RelayChange:
    """What ``relay add`` or ``relay set`` gives; None leaves a value as it is."""

    url: str | None = None
    weight: int | None = None
    rate: str | None = None  # "" or "unlimited": no rate of its own
    connections: int | None = None


def check_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise RelaySettingError(
            f"relay name {name!r}: letters, digits, - and _ (at most 26, starting with a"
            " letter or digit)"
        )
    if name.lower() == EVERY:
        raise RelaySettingError(f"relay name {name!r}: --relay {EVERY} means every relay")
    return name


def all_relays(session: Session) -> list[Relay]:
    return list(session.exec(select(Relay).order_by(col(Relay.name))))


def names(session: Session) -> list[str]:
    return [relay.name for relay in all_relays(session)]


def main_url(session: Session) -> str | None:
    """The URL of the relay named default, else of the first relay; None: no relay."""
    default = session.get(Relay, DEFAULT_NAME)
    first = default or next(iter(all_relays(session)), None)
    return None if first is None else first.url


def get(session: Session, name: str, *, for_update: bool = False) -> Relay:
    relay = session.get(Relay, name, with_for_update=for_update)
    if relay is None:
        raise UnknownRelay(name, names(session))
    return relay


def add(session: Session, name: str, change: RelayChange) -> Relay:
    check_name(name)
    if session.get(Relay, name) is not None:
        raise RelaySettingError(f"relay {name!r} exists already: `sendstatus relay set {name} ...`")
    if change.url is None:
        raise RelaySettingError(f"relay {name!r}: which URL?")
    relay = Relay(name=name, url="")
    _apply(relay, change)
    session.add(relay)
    return relay


def change(session: Session, name: str, change: RelayChange) -> Relay:
    relay = get(session, name, for_update=True)
    _apply(relay, change)
    relay.updated_at = utc_now()
    session.add(relay)
    return relay


def put(session: Session, name: str, url: str) -> Relay:
    """Sets a relay's URL, adding the relay if it does not exist (``config set relay``)."""
    if session.get(Relay, name) is None:
        return add(session, name, RelayChange(url=url))
    return change(session, name, RelayChange(url=url))


def remove(session: Session, name: str) -> None:
    """Removes a relay, unless an unfinished mailing would be left without one; mailings
    that name it beside others go on with the others."""
    relay = get(session, name, for_update=True)
    unfinished = session.exec(select(Mailing).where(col(Mailing.state) != State.COMPLETED)).all()
    if unfinished and len(names(session)) == 1:
        raise RelaySettingError(
            f"relay {name!r} is the last relay and {len(unfinished)} mailing(s) are unfinished"
            f" (e.g. mailing {unfinished[0].id}): add another relay first"
        )
    for mailing in unfinished:
        named = names_of(mailing)
        if named is not None and name in named:
            if len(named) == 1:
                raise RelaySettingError(
                    f"mailing {mailing.id} {mailing.name!r} is unfinished and uses relay"
                    f" {name!r} alone"
                )
            mailing.relays = ",".join(n for n in named if n != name)
            session.add(mailing)
    session.delete(relay)


def checked_names(session: Session, text: str) -> str:
    """``a,b`` as a mailing stores it, each an existing relay (``mailing add --relay``)."""
    given = [part.strip() for part in text.split(",") if part.strip()]
    if not given:
        raise RelaySettingError(f"--relay {text!r}: give relay names, e.g. --relay main,backup")
    known = names(session)
    for name in given:
        if name not in known:
            raise UnknownRelay(name, known)
    return ",".join(dict.fromkeys(given))  # each once, in the order given


def chosen(session: Session, text: str) -> str | None:
    """``--relay`` of ``send-now`` and ``schedule``: the names as ``checked_names`` stores
    them, or None for ``all`` (every relay)."""
    return None if text.strip().lower() == EVERY else checked_names(session, text)


def names_of(mailing: Mailing) -> tuple[str, ...] | None:
    """The relays a mailing names; None: every relay."""
    return tuple(mailing.relays.split(",")) if mailing.relays else None


def credentials_prefix(name: str) -> str:
    """How the variables that carry a relay's credentials begin: SENDSTATUS_RELAY_<NAME>
    (NAME in capitals, - as _), followed by _USER and _PASSWORD."""
    return f"SENDSTATUS_RELAY_{name.upper().replace('-', '_')}"


def _apply(relay: Relay, change: RelayChange) -> None:
    if change.url is not None:
        if _carries_credentials(change.url):
            prefix = credentials_prefix(relay.name)
            raise RelaySettingError(
                f"relay {relay.name!r}: the relay URL must not carry credentials (every user"
                f" can read a command line): set {prefix}_USER and {prefix}_PASSWORD, or"
                f" [relay.{relay.name}] in the credentials file"
            )
        try:
            parse_relay_url(change.url)
        except SendStatusError as exc:
            raise RelaySettingError(f"relay {relay.name!r}: {exc}") from None
        relay.url = change.url.strip()
    if change.weight is not None:
        if not 1 <= change.weight <= MAX_WEIGHT:
            raise RelaySettingError(
                f"relay {relay.name!r}: --weight {change.weight}: give 1 to {MAX_WEIGHT}"
            )
        relay.weight = change.weight
    if change.rate is not None:
        relay.rate = _checked_rate(relay.name, change.rate)
    if change.connections is not None:
        if not 1 <= change.connections <= MAX_POOL:
            raise RelaySettingError(
                f"relay {relay.name!r}: --connections {change.connections}: give 1 to {MAX_POOL}"
            )
        relay.connections = change.connections


def _carries_credentials(url: str) -> bool:
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return False  # not a URL: parse_relay_url says why
    return parts.username is not None or parts.password is not None


def _checked_rate(name: str, text: str) -> str | None:
    try:
        return text.strip() if parse_rate(text) is not None else None
    except SendStatusError as exc:
        raise RelaySettingError(f"relay {name!r}: --rate: {exc}") from None


def shown_url(relay: Relay) -> str:
    return mask_url(relay.url)
