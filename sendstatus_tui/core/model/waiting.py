"""What keeps the engine from sending a mailing now, as a kind that readers decide by (the
row, the header, alerts, metrics), beside the human text that the details show."""

from enum import StrEnum


class WaitingKind(StrEnum):
    # no relay the mailing uses takes its messages: trouble, flagged and alerted
    RELAY_DOWN = "relay_down"
    # outside its sending window: the plan, not trouble (``waiting_until``: when it opens)
    WINDOW = "window"
    # a recipient domain's limit holds its next messages back (config domain_limits)
    DOMAIN_LIMIT = "domain_limit"
