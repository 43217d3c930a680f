"""The dashboard's header line: what matters most first (the relay, the engine, the zone
the times are in, the speed), cut from the end to fit the width."""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo

from ..core.when import to_zone
from .cells import per_minute, relay_trouble

SEPARATOR = " · "


@dataclass(frozen=True)
class RelayState:
    trouble: str | None  # the engine's last reply while it waits, None when all is well
    since: datetime | None  # when this dashboard first saw it waiting
    in_use: bool  # something is sending or starting


def relay_text(relay: RelayState, zone: tzinfo) -> str | None:
    if relay.trouble:
        since = f" since {to_zone(relay.since, zone):%H:%M}" if relay.since else ""
        return f"{relay_trouble(relay.trouble)}{since}"
    return "relay ok" if relay.in_use else None


def speed_text(speed: float, rate: str | None) -> str | None:
    """How fast it sends now, and the contracted rate, e.g. "1,200/min of rate 36000/h"."""
    parts = [part for part in (per_minute(speed), rate and f"rate {rate}") if part]
    return " of ".join(parts) or None


def header_status(parts: Sequence[str | None], width: int) -> str:
    """``parts`` (most important first) joined, leaving out from the end what does not fit
    in ``width`` (the first always shows, cut if it must be)."""
    shown: list[str] = []
    for part in (p for p in parts if p):
        if shown and len(SEPARATOR.join([*shown, part])) > width:
            break
        shown.append(part)
    return SEPARATOR.join(shown)
