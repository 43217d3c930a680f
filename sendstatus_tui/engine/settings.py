"""How an engine is tuned: its own cap, batch size, lease and timing (``EngineSettings``)."""

from dataclasses import dataclass
from datetime import timedelta

from sendstatus_tui.core.model.retry_policy import RetryPolicy


@dataclass(frozen=True)
class EngineSettings:
    # this engine's own cap (``--rate``), under the rate stored for the database
    rate_per_second: float | None = None
    batch_size: int = 200  # the most recipients in flight per mailing (all its lanes)
    lease_ttl: timedelta = timedelta(seconds=5)  # of the lease, and of each heartbeat
    lease_renew_seconds: float = 1.0  # how often an engine beats (and renews the lease)
    # how often it reads the change marker (core/model/changes.py): others' actions reach
    # it within this
    reconcile_seconds: float = 0.25
    # how often it reads everything it follows even though the marker did not move: a
    # backstop for a change that no marker tells (a clock set, a bug)
    full_reconcile_seconds: float = 30.0
    retry_base: timedelta = timedelta(seconds=60)  # first retry after a 4xx
    max_attempts: int = 5
    relay_retry_max_seconds: float = 30.0
    # a stop waits this long, plus one relay timeout, for messages in the relay's hands
    stop_grace_seconds: float = 5.0
    # whether, leading, it runs the stored alert_command (``--allow-alert-command``)
    allow_alert_command: bool = False
    alert_timeout_seconds: float = 10.0  # the longest a command or a webhook may take

    @property
    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy(
            max_attempts=self.max_attempts,
            first_retry=self.retry_base,
            relay_wait_cap=self.relay_retry_max_seconds,
        )
