"""How many connections an engine keeps to its relay.

A relay far away answers each command tens of milliseconds later: one connection then
sends a few dozen messages a second, and only more connections send more. How many is
learnt while sending, once a second:
- the connections were busy (a message in flight most of the time) → open more: twice as
  many until a growth first fails to pay (as TCP's slow start), a quarter more after that;
- the last growth brought less than a quarter of the gain it should have (the relay or the
  engine's own processor, not the round trips, is the limit now) → back to the size
  before; a smaller step in 5 s;
- the relay refused a new connection (421, connection refused) → hold the connections that
  work, and try one more only after 60 s; a 421 closing a connection → one fewer;
- the connections were mostly idle (a contracted rate, or little to send) → fewer, but not
  fewer than it started with.
So under a contracted rate connections grow only as far as the rate needs. With
``adapt=off`` the size stays what the relay URL says.
"""

import math
from dataclasses import dataclass

SLOW_START_GROWTH = 2.0
GROWTH = 1.25
BUSY = 0.8  # above this share of the time in flight, connections are the bottleneck
IDLE = 0.4  # below it, some connections are not needed
# of the gain a growth should bring (proportional to the connections added), the share
# that shows it helped; noisy windows need a margin
MIN_SHARE_OF_GAIN = 0.25
NO_GAIN_HOLD_SECONDS = 5.0
REFUSED_HOLD_SECONDS = 60.0
# a window this long had a pause in it (nothing to send): it says nothing of the pool
STALE_WINDOW_SECONDS = 5.0


@dataclass(frozen=True)
class Window:
    """What the pool saw over one sizing window."""

    seconds: float
    completed: int  # messages answered (any outcome)
    busy_share: float  # connection-time with a message in flight / connection-time


@dataclass(frozen=True)
class Change:
    old: int
    new: int
    reason: str


class PoolSizer:
    def __init__(self, initial: int, maximum: int, *, adapt: bool):
        self.maximum = maximum
        self.adapt = adapt
        self.floor = min(initial, maximum)  # idleness alone never goes below the start
        self.size = min(initial, maximum) if adapt else maximum
        self.reason = "starting size" if adapt else "fixed by the relay URL (adapt=off)"
        self._before_growth: tuple[int, float] | None = None  # (size, messages/s)
        self._settling = False  # the window right after a change is not judged
        self._slow_start = adapt  # doubling, until a growth or the relay says enough
        self._no_growth_until = 0.0
        self._no_open_until = 0.0  # after a refusal (adapt off too): no new connection

    def may_open(self, now: float) -> bool:
        return now >= self._no_open_until

    def observe(self, now: float, window: Window) -> Change | None:
        """The decision after one window, or None to keep the size."""
        if not self.adapt or window.seconds <= 0:
            return None
        if window.seconds > STALE_WINDOW_SECONDS:  # it spans a pause in sending: no verdict
            self._before_growth, self._settling = None, False
            return None
        if self._settling:  # new connections were being opened in it
            self._settling = False
            return None
        rate = window.completed / window.seconds
        if self._before_growth is not None:
            old_size, old_rate = self._before_growth
            self._before_growth = None
            expected = old_rate * (self.size / old_size - 1)
            if rate - old_rate < MIN_SHARE_OF_GAIN * expected:
                self._no_growth_until = now + NO_GAIN_HOLD_SECONDS
                self._slow_start = False
                return self._change(
                    old_size,
                    f"{self.size} connections sent {rate:.0f} msg/s, too little more than"
                    f" {old_size} did ({old_rate:.0f}): the relay or this engine is the limit",
                )
        if window.busy_share >= BUSY and self.size < self.maximum and now >= self._no_growth_until:
            self._before_growth = (self.size, rate)
            factor = SLOW_START_GROWTH if self._slow_start else GROWTH
            grown = min(self.maximum, max(self.size + 1, math.ceil(self.size * factor)))
            return self._change(
                grown, f"connections busy {window.busy_share:.0%} at {rate:.0f} msg/s"
            )
        if window.busy_share < IDLE and self.size > self.floor:
            needed = max(self.floor, math.ceil(self.size * window.busy_share / ((BUSY + IDLE) / 2)))
            if needed < self.size:
                return self._change(
                    needed, f"connections idle {1 - window.busy_share:.0%} of the time"
                )
        return None

    def refused(self, now: float, live: int, why: str) -> Change | None:
        """The relay refused a new connection while ``live`` others work (or are being
        opened; a refusal of one of those brings the size down again)."""
        self._no_open_until = now + REFUSED_HOLD_SECONDS
        self._before_growth = None
        self._slow_start = False
        if not self.adapt or live >= self.size:
            return None
        self._no_growth_until = now + REFUSED_HOLD_SECONDS
        return self._change(max(1, live), f"the relay refused connection {live + 1}: {why}")

    def closed_by_relay(self, now: float, why: str) -> Change | None:
        """The relay closed a working connection (421)."""
        self._before_growth = None
        self._slow_start = False
        if not self.adapt or self.size <= 1:
            return None
        self._no_growth_until = now + REFUSED_HOLD_SECONDS
        return self._change(self.size - 1, f"the relay closed a connection: {why}")

    def _change(self, new: int, reason: str) -> Change | None:
        if new == self.size:
            return None
        change = Change(self.size, new, reason)
        self.size, self.reason = new, reason
        self._settling = True
        return change
