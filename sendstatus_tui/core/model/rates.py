"""The contracted sending speed as an operator writes it: ``36000/h``, ``600/min``, ``10/s``."""

import re

from sendstatus_tui.errors import SendStatusError

_UNITS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "hour": 3600}
_RATE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*/\s*([a-z]+)\s*")


class RateError(SendStatusError, ValueError):
    pass


def parse_rate(text: str | None) -> float | None:
    """Messages per second from ``36000/h``, ``600/min``, ``10/s``; None means unlimited."""
    if not text or text.strip().lower() in ("unlimited", "none", "0"):
        return None
    match = _RATE.fullmatch(text.lower())
    if not match or match[2] not in _UNITS or float(match[1]) <= 0:
        raise RateError(f"not a rate: {text!r} (expected e.g. 36000/h, 600/min or 10/s)")
    return float(match[1]) / _UNITS[match[2]]
