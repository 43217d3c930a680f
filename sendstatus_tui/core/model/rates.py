"""The contracted sending speed as an operator writes it: ``36000/h``, ``600/min``, ``10/s``.

A rate is a number of messages per unit from ``SMALLEST`` (one an hour) to ``LARGEST``
(a million a second: send slots a microsecond apart, still told apart on an epoch clock,
and far above what any relay takes). Zero is refused (a pause is ``sendstatus stop``), and
so are a negative rate and one too large for a number; no rate at all (unset, or
``unlimited``) means sending is not limited."""

import re

from sendstatus_tui.errors import SendStatusError

_UNITS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "hour": 3600}
_NUMBER = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:e[-+]?\d+)?"
_RATE = re.compile(rf"\s*({_NUMBER})\s*(?:/\s*([a-z]*)\s*)?")
_UNLIMITED = ("unlimited", "none")
MIN_PER_SECOND = 1 / 3600
MAX_PER_SECOND = 1_000_000
SMALLEST, LARGEST = "1/h", f"{MAX_PER_SECOND}/s"
_EXAMPLES = "e.g. 36000/h, 600/min or 10/s"


class RateError(SendStatusError, ValueError):
    pass


def parse_rate(text: str | None) -> float | None:
    """Messages per second from ``36000/h``, ``600/min``, ``10/s``; None means unlimited."""
    if not text or text.strip().lower() in _UNLIMITED:
        return None
    written = _shown(text.strip())
    match = _RATE.fullmatch(text.lower())
    if match is None:
        raise RateError(f"not a rate: {written!r} (expected {_EXAMPLES})")
    value = float(match[1])  # never raises once matched; too many digits make inf
    if value == 0:
        raise RateError(
            f"a rate of {written} would send nothing: to pause a mailing, `sendstatus stop"
            f" ID`; to send without a limit, `sendstatus config unset rate`"
        )
    if value < 0:
        raise RateError(f"a rate cannot be negative: {written!r} ({_EXAMPLES})")
    if match[2] not in _UNITS:
        raise RateError(f"not a rate: {written!r}: per s, min or h? ({_EXAMPLES})")
    per_second = value / _UNITS[match[2]]
    if not MIN_PER_SECOND <= per_second <= MAX_PER_SECOND:
        raise RateError(
            f"the rate {written} is too {'small' if per_second < 1 else 'large'}: rates"
            f" from {SMALLEST} to {LARGEST} are accepted"
        )
    return per_second


def _shown(text: str) -> str:
    return text if len(text) <= 40 else f"{text[:37]}..."
