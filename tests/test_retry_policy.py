"""When the engine tries again (core/model/retry_policy.py): a recipient deferred, a send in
doubt, a relay that is down."""

from datetime import timedelta

from sendstatus_tui.core.coordination import deliveries
from sendstatus_tui.core.coordination.deliveries import IN_DOUBT, Claimed, Outcome
from sendstatus_tui.core.model.models import FailureClass
from sendstatus_tui.core.model.retry_policy import MAX_DOUBTS, RelayWaits, RetryPolicy
from sendstatus_tui.engine.engine import EngineSettings

from .helpers import FAST


class TestDeferrals:
    def test_a_recipient_deferred_fails_on_its_fifth_attempt_by_default(self):
        policy = RetryPolicy()
        assert [policy.gives_up(attempt) for attempt in range(1, 7)] == [
            False,
            False,
            False,
            False,
            True,
            True,
        ]

    def test_the_wait_doubles_from_a_minute_up_to_an_hour(self):
        policy = RetryPolicy()
        waits = [policy.retry_after(attempt) for attempt in range(1, 10)]
        minutes = [wait / timedelta(minutes=1) for wait in waits]
        assert minutes == [1, 2, 4, 8, 16, 32, 60, 60, 60]

    def test_a_retry_far_past_the_cap_still_waits_the_cap(self):
        assert RetryPolicy().retry_after(10_000) == timedelta(hours=1)

    def test_the_engine_s_settings_make_the_policy(self):
        assert EngineSettings().retry_policy == RetryPolicy()
        fast = FAST.retry_policy
        assert (fast.max_attempts, fast.first_retry, fast.relay_wait_cap) == (
            FAST.max_attempts,
            FAST.retry_base,
            FAST.relay_retry_max_seconds,
        )


class TestDoubts:
    def test_a_send_in_doubt_is_tried_three_times_in_all(self):
        policy = RetryPolicy()
        assert policy.max_doubts == MAX_DOUBTS == 3
        # doubts before this one: the third in doubt is the last
        assert [policy.doubt_settles(doubts) for doubts in range(4)] == [False, False, True, True]

    def test_the_third_send_in_doubt_fails_with_class_doubt(self):
        """What the operator reads for that recipient once its third try went unanswered."""
        outcomes = [
            deliveries._settle_doubt(
                Outcome(Claimed(1, "a@example.com", None, 0, doubts), IN_DOUBT)
            )
            for doubts in range(3)
        ]
        assert [o.status for o in outcomes] == [IN_DOUBT, IN_DOUBT, deliveries.FAILED]
        assert outcomes[-1].failure_class == FailureClass.DOUBT
        assert outcomes[-1].reply == (
            "no reply after DATA on 3 tries (it may have been received): no reply"
        )


class TestRelayDown:
    def test_a_relay_down_is_tried_again_after_1_s_doubling_up_to_30_s(self):
        waits = RelayWaits(RetryPolicy())
        assert [waits.failed() for _ in range(7)] == [1, 2, 4, 8, 16, 30, 30]

    def test_once_it_answered_the_waits_start_again_at_1_s(self):
        waits = RelayWaits(RetryPolicy())
        assert [waits.failed() for _ in range(4)] == [1, 2, 4, 8]
        assert waits.next_seconds == 16
        waits.reset()
        assert waits.next_seconds == 1

    def test_a_cap_below_a_second_is_the_first_wait_too(self):
        waits = RelayWaits(RetryPolicy(relay_wait_cap=0.5))
        assert [waits.failed() for _ in range(3)] == [0.5, 0.5, 0.5]

    def test_a_relay_down_for_days_waits_the_cap(self):
        assert RetryPolicy().relay_wait(100_000) == 30
