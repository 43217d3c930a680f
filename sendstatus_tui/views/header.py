"""The dashboard's header line: the relay, the engines, the zone the times are in, the
speed; what matters least is left out first to fit the width."""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, tzinfo

from sendstatus_tui.core.model.when import to_zone
from sendstatus_tui.views.cells import per_minute, relay_trouble, relays_down
from sendstatus_tui.views.engine_fact import EngineFact

SEPARATOR = " · "


@dataclass(frozen=True)
class RelayState:
    trouble: str | None  # the engine's last reply while it waits, None when all is well
    since: datetime | None  # since when the engine finds it down (the mailing's waiting_since)
    in_use: bool  # something is sending or starting
    # the relays a running engine finds down, and since when, while others carry on
    down: Mapping[str, datetime] = field(default_factory=dict)


def relay_text(relay: RelayState, zone: tzinfo) -> str | None:
    if relay.trouble:
        since = f" since {to_zone(relay.since, zone):%H:%M}" if relay.since else ""
        return f"{relay_trouble(relay.trouble)}{since}"
    if relay.down:
        return relays_down(relay.down, zone)
    return "relay ok" if relay.in_use else None


def database_text(since: datetime | None, zone: tzinfo) -> str | None:
    """Since when this dashboard cannot read the database (None: it can)."""
    if since is None:
        return None
    return f"database unreachable since {to_zone(since, zone):%H:%M}, retrying"


def locked_text(since: datetime | None, zone: tzinfo) -> str | None:
    """Since when this dashboard's engine waits to write (None: it does not), e.g. behind
    another process's lock on an SQLite file, which readers do not see."""
    if since is None:
        return None
    return f"database locked since {to_zone(since, zone):%H:%M}, writes waiting"


def speed_text(speed: float, rate: str | None) -> str | None:
    """How fast it sends now, and the contracted rate, e.g. "1,200/min of rate 36000/h"."""
    parts = [part for part in (per_minute(speed), rate and f"rate {rate}") if part]
    return " of ".join(parts) or None


@dataclass(frozen=True)
class Part:
    text: str | None  # None: nothing to say
    rank: int  # 0 matters most; the part of the highest rank is the first left out


def header_parts(
    relay: str | None,
    engine: EngineFact | None,
    zone: str,
    speed: str | None,
    database: str | None = None,
) -> list[Part]:
    """The header's parts in the order shown, ranked: a database that cannot be read, the
    relay's state, where the engine runs or how many do, the zone every time is read in,
    who leads, the speed."""
    return [
        Part(database, 0),
        Part(relay, 0),
        Part(engine.text() if engine else None, 1),
        Part(engine.leader_text() if engine else None, 3),
        Part(zone, 2),
        Part(speed, 4),
    ]


def header_status(parts: Sequence[Part], width: int) -> str:
    """``parts`` joined in their order, leaving out by rank (the highest first) what does
    not fit in ``width``: a part shows only if every part of a lower rank does. The most
    important part always shows."""
    given = [part.text for part in parts if part.text]
    ranks = [part.rank for part in parts if part.text]
    shown: set[int] = set()
    for index in sorted(range(len(given)), key=lambda i: ranks[i]):
        if shown and len(_joined(given, shown | {index})) > width:
            break
        shown.add(index)
    return _joined(given, shown)


def _joined(texts: Sequence[str], shown: set[int]) -> str:
    return SEPARATOR.join(text for index, text in enumerate(texts) if index in shown)
