"""When the engine tries again, in one place: a recipient deferred (4xx) is retried after a
back-off that doubles from ``first_retry`` up to ``retry_cap``, and fails with class 4xx on
its ``max_attempts``-th deferral; a send in doubt (no reply after DATA) is tried at most
``max_doubts`` times in all, then fails with class doubt; a relay that is down is tried
again (by the mailing waiting for it, and by its breaker's probes) after a wait that doubles
from ``relay_first_wait`` up to ``relay_wait_cap``."""

from dataclasses import dataclass
from datetime import timedelta

MAX_DOUBTS = 3  # tries in doubt before a recipient fails with class doubt
_MOST_DOUBLINGS = 30  # a back-off is at its cap long before


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 5  # deferrals of a recipient, the last one included, before it fails
    first_retry: timedelta = timedelta(seconds=60)  # after a recipient's first 4xx
    retry_cap: timedelta = timedelta(hours=1)
    max_doubts: int = MAX_DOUBTS
    relay_first_wait: float = 1.0  # seconds, before a relay found down is tried again
    relay_wait_cap: float = 30.0

    def gives_up(self, attempt: int) -> bool:
        """Whether a recipient deferred on its ``attempt``-th try (1, 2, ...) fails now."""
        return attempt >= self.max_attempts

    def retry_after(self, attempt: int) -> timedelta:
        """The wait before retry number ``attempt`` (1, 2, ...): doubling, up to the cap."""
        # typeshed calls int ** int Any (a power < 0 is a float); bounded: far past the cap
        doubling: int = 2 ** min(attempt - 1, _MOST_DOUBLINGS)
        return min(self.first_retry * doubling, self.retry_cap)

    @property
    def doubts_before_the_last(self) -> int:
        """Earlier tries in doubt of a recipient whose next try in doubt is its last."""
        return self.max_doubts - 1

    def doubt_settles(self, doubts: int) -> bool:
        """Whether a send in doubt after ``doubts`` earlier tries in doubt was the last one
        allowed: the recipient fails with class doubt instead of being sent again."""
        return doubts >= self.doubts_before_the_last

    def relay_wait(self, tries: int) -> float:
        """Seconds before trying a relay that is down again, after ``tries`` failed tries
        (0 for the first wait): doubling, up to the cap."""
        doubling = 2.0 ** min(max(tries, 0), _MOST_DOUBLINGS)  # a float power overflows
        return min(self.relay_first_wait * doubling, self.relay_wait_cap)


class RelayWaits:
    """The waits of one relay that stays down: ``relay_wait`` after each failed try, until
    ``reset`` (it answered)."""

    def __init__(self, policy: RetryPolicy):
        self._policy = policy
        self._tries = 0

    @property
    def next_seconds(self) -> float:
        return self._policy.relay_wait(self._tries)

    def failed(self) -> float:
        """One more failed try: the wait before the next (the longer one from then on)."""
        wait = self.next_seconds
        self._tries += 1
        return wait

    def reset(self) -> None:
        self._tries = 0
