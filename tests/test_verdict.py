"""What a relay's answer means, decided once (engine/smtp/verdict.py): replies and errors
read into sent, refused, deferred, in doubt or untried, against a real SMTP server on
loopback where it takes one; and only an untried message goes to another relay."""

import asyncio

import pytest

from sendstatus_tui.core.model.models import FailureClass, Relay
from sendstatus_tui.core.model.relay_url import SmtpSettings, parse_relay_url
from sendstatus_tui.core.model.verdict import RelayVerdict, SendVerdict, reply_verdict
from sendstatus_tui.engine.routes import Routes
from sendstatus_tui.engine.smtp.connection import open_connection
from sendstatus_tui.engine.smtp.errors import (
    NotDeliverable,
    RelayRefused,
    RelayUnavailable,
    ReplyLost,
    TemporaryFailure,
)
from sendstatus_tui.engine.smtp.verdict import error_of, verdict_of

from .ports import free_port
from .smtp_relay import RelayScript

SENDER = "news@example.org"
TO = "someone@example.com"
MESSAGE = b"Subject: hello\r\n\r\nhello\r\n"


def send_one(url: str) -> RelayVerdict:
    """One message through a fresh connection: the verdict on what came back."""

    async def send() -> str | BaseException:
        try:
            connection = await open_connection(transport_settings(url))
        except RelayUnavailable as exc:
            return exc
        try:
            return await connection.send(SENDER, TO, MESSAGE, lambda: None)
        except Exception as exc:  # noqa: BLE001  the verdict is what is tested
            return exc
        finally:
            await connection.quit(1.0)

    return verdict_of(asyncio.run(send()))


def transport_settings(url: str) -> SmtpSettings:
    settings = parse_relay_url(url)
    assert isinstance(settings, SmtpSettings)
    return settings


class TestReplies:
    """A reply to a recipient, as its code and text."""

    @pytest.mark.parametrize(
        ("reply", "verdict", "status"),
        [
            ("250 2.0.0 queued as 4F2", SendVerdict.SENT, "2.0.0"),
            ("550 5.1.1 no such user", SendVerdict.REFUSED, "5.1.1"),
            ("554 transaction failed", SendVerdict.REFUSED, None),
            ("451 4.7.1 greylisted, try later", SendVerdict.DEFERRED, "4.7.1"),
            ("452 4.2.2 mailbox full", SendVerdict.DEFERRED, "4.2.2"),
            ("421 4.7.28 rate limited", SendVerdict.DEFERRED, "4.7.28"),
            ("421 service closing transmission channel", SendVerdict.UNTRIED, None),
            ("421 4.3.2 system shutting down", SendVerdict.UNTRIED, "4.3.2"),
        ],
    )
    def test_each_reply_has_one_verdict(self, reply, verdict, status):
        code = int(reply[:3])
        seen = reply_verdict(code, reply)
        assert (seen.verdict, seen.code, seen.status, seen.text) == (verdict, code, status, reply)

    def test_only_a_4_7_deferral_slows_the_recipient_s_domain(self):
        assert reply_verdict(451, "451 4.7.1 slow down").throttles_domain
        assert reply_verdict(421, "421 4.7.28 rate limited").throttles_domain
        assert not reply_verdict(452, "452 4.2.2 mailbox full").throttles_domain
        assert not reply_verdict(550, "550 5.7.1 policy").throttles_domain

    def test_only_untried_may_go_to_another_relay(self):
        may = {v: RelayVerdict(v, "x").may_try_elsewhere for v in SendVerdict}
        assert may == {v: v is SendVerdict.UNTRIED for v in SendVerdict}

    @pytest.mark.parametrize(
        ("reply", "unknown"),
        [
            ("550 5.1.1 <a@example.com>: Recipient address rejected: User unknown", True),
            ("550-5.1.1 The email account that you tried to reach does not exist.", True),
            ("550 5.1.10 RESOLVER.ADR.RecipientNotFound", False),
            ("550 5.7.1 rejected", False),
            ("553 5.1.15 nope", False),
        ],
    )
    def test_what_counts_as_an_unknown_user(self, reply, unknown):
        """A refusal the suppression list takes with ``suppress_unknown_users``."""
        assert reply_verdict(int(reply[:3]), reply).unknown_user is unknown

    def test_only_a_421_the_relay_closes_with_means_fewer_connections(self):
        assert reply_verdict(421, "421 service closing transmission channel").relay_closing
        assert not reply_verdict(421, "421 4.7.28 rate limited").relay_closing
        assert not reply_verdict(450, "450 4.2.1 busy").relay_closing

    def test_a_refused_recipient_fails_as_refused_by_the_relay_or_by_us(self):
        assert reply_verdict(550, "550 5.1.1 no").failure_class == FailureClass.REFUSED
        assert verdict_of(NotDeliverable("needs SMTPUTF8")).failure_class == FailureClass.ERROR
        assert RelayVerdict(SendVerdict.IN_DOUBT, "x").failure_class == FailureClass.DOUBT
        assert RelayVerdict(SendVerdict.DEFERRED, "x").failure_class is None


class TestErrors:
    """What a send raised."""

    def test_a_reply_lost_is_in_doubt_and_never_a_relay_unavailable(self):
        lost = ReplyLost("no reply after DATA: closed")
        assert not isinstance(lost, RelayUnavailable)
        assert verdict_of(lost).verdict is SendVerdict.IN_DOUBT
        assert not verdict_of(lost).may_try_elsewhere

    def test_a_relay_that_refuses_us_is_untried_and_stops_the_mailing(self):
        verdict = verdict_of(RelayRefused("the relay refused the credentials: 535 5.7.8"))
        assert (verdict.verdict, verdict.refuses_us) == (SendVerdict.UNTRIED, True)

    def test_an_unforeseen_error_is_in_doubt(self):
        verdict = verdict_of(RuntimeError("boom"))
        assert (verdict.verdict, verdict.text) == (SendVerdict.IN_DOUBT, "RuntimeError('boom')")

    @pytest.mark.parametrize(
        "verdict",
        [
            reply_verdict(550, "550 5.1.1 no such user"),
            reply_verdict(451, "451 4.7.1 try later"),
            reply_verdict(421, "421 closing"),
            RelayVerdict(SendVerdict.IN_DOUBT, "no reply after DATA"),
            RelayVerdict(SendVerdict.UNTRIED, "the relay refused the sender", 550, None, True),
        ],
    )
    def test_the_error_made_from_a_verdict_reads_back_as_it(self, verdict):
        error = error_of(verdict)
        assert error.reply == verdict.text
        assert verdict_of(error) == verdict

    def test_a_sent_message_is_no_error(self):
        with pytest.raises(ValueError, match="no error"):
            error_of(RelayVerdict(SendVerdict.SENT, "250 ok"))


class TestAgainstARelay:
    """One message to a real SMTP server on loopback, scripted to answer as told."""

    def test_a_message_taken_is_sent(self, relays):
        relay = relays()
        verdict = send_one(relay.url)
        assert (verdict.verdict, verdict.code) == (SendVerdict.SENT, 250)
        assert relay.recipients() == [TO]

    def test_an_unknown_mailbox_is_refused(self, relays):
        relay = relays(RelayScript(rcpt_replies={TO: ["550 5.1.1 no such user here"]}))
        verdict = send_one(relay.url)
        assert (verdict.verdict, verdict.code, verdict.status) == (
            SendVerdict.REFUSED,
            550,
            "5.1.1",
        )
        assert verdict.failure_class == FailureClass.REFUSED
        assert relay.recipients() == []

    def test_a_greylisting_relay_defers(self, relays):
        relay = relays(RelayScript(rcpt_replies={TO: ["451 4.7.1 greylisted, come back later"]}))
        verdict = send_one(relay.url)
        assert (verdict.verdict, verdict.status) == (SendVerdict.DEFERRED, "4.7.1")
        assert verdict.throttles_domain

    def test_a_content_refused_after_the_dot_is_refused(self, relays):
        relay = relays(RelayScript(data_replies={TO: ["554 5.6.0 message content rejected"]}))
        assert send_one(relay.url).verdict is SendVerdict.REFUSED
        assert relay.recipients() == []

    def test_421_at_connect_is_untried(self, relays):
        relay = relays(RelayScript(max_connections=0))
        verdict = send_one(relay.url)
        assert verdict.verdict is SendVerdict.UNTRIED
        assert "421" in verdict.text
        assert relay.refused_connections >= 1
        assert relay.recipients() == []

    def test_a_connection_refused_is_untried(self):
        verdict = send_one(f"smtp://127.0.0.1:{free_port()}?starttls=off")
        assert verdict.verdict is SendVerdict.UNTRIED
        assert verdict.text.startswith("cannot reach relay 127.0.0.1:")

    def test_a_sender_refused_is_untried_and_refuses_us(self, relays):
        relay = relays(RelayScript(refuse_sender="553 5.7.1 sender not allowed"))
        verdict = send_one(relay.url)
        assert (verdict.verdict, verdict.refuses_us, verdict.code) == (
            SendVerdict.UNTRIED,
            True,
            553,
        )

    def test_a_sender_deferred_is_untried_and_waited_out(self, relays):
        relay = relays(RelayScript(refuse_sender="451 4.3.0 try again later"))
        verdict = send_one(relay.url)
        assert (verdict.verdict, verdict.refuses_us) == (SendVerdict.UNTRIED, False)

    def test_a_reply_lost_after_data_is_in_doubt(self, relays):
        relay = relays(RelayScript(data_faults={TO: ["drop"]}))
        verdict = send_one(relay.url)
        assert verdict.verdict is SendVerdict.IN_DOUBT
        assert verdict.text.startswith("no reply after DATA")
        assert relay.recipients() == [TO]  # the relay has it: why it is never sent elsewhere

    def test_a_reply_slower_than_the_timeout_is_in_doubt(self, relays):
        relay = relays(RelayScript(data_faults={TO: ["hang"]}))
        verdict = send_one(relay.url + "&timeout=1")
        assert verdict.verdict is SendVerdict.IN_DOUBT
        assert relay.recipients() == [TO]


class TestOtherRelays:
    """Two relays: the first (by weight) fails, the second is there."""

    @staticmethod
    def send_through(first_url: str, second_url: str) -> tuple[RelayVerdict, str | None]:
        async def send() -> tuple[RelayVerdict, str | None]:
            routes = Routes(None, credentials_for=lambda name: None)
            routes.follow(
                [Relay(name="first", url=first_url, weight=5), Relay(name="second", url=second_url)]
            )
            try:
                reply, relay = await routes.send(SENDER, TO, MESSAGE)
                return verdict_of(reply), relay
            except Exception as exc:  # noqa: BLE001  the verdict is what is tested
                return verdict_of(exc), getattr(exc, "relay", None)
            finally:
                await routes.close()

        return asyncio.run(send())

    def test_an_untried_message_goes_to_the_next_relay(self, relays):
        down, up = relays(running=False), relays()
        verdict, relay = self.send_through(down.url, up.url)
        assert (verdict.verdict, relay) == (SendVerdict.SENT, "second")
        assert up.recipients() == [TO]

    def test_a_message_in_doubt_is_never_given_to_another_relay(self, relays):
        dropping, up = relays(RelayScript(data_faults={TO: ["drop"]})), relays()
        verdict, relay = self.send_through(dropping.url, up.url)
        assert (verdict.verdict, relay) == (SendVerdict.IN_DOUBT, "first")
        assert (dropping.recipients(), up.recipients()) == ([TO], [])

    def test_a_recipient_s_refusal_or_deferral_stays_with_its_relay(self, relays):
        refusing = relays(RelayScript(rcpt_replies={TO: ["452 4.2.2 mailbox full"]}))
        up = relays()
        verdict, relay = self.send_through(refusing.url, up.url)
        assert (verdict.verdict, relay) == (SendVerdict.DEFERRED, "first")
        assert up.recipients() == []


def test_temporary_failure_made_by_hand_reads_its_code_from_its_text():
    """An error made without a verdict (a transport of its own) reads like a reply."""
    verdict = verdict_of(TemporaryFailure("450 4.2.1 mailbox busy"))
    assert (verdict.verdict, verdict.code, verdict.status) == (SendVerdict.DEFERRED, 450, "4.2.1")
