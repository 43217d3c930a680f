"""What the bookkeeping property tests share: an operator's step, the books of one mailing
and their balance, outcomes of each kind, and finishing a mailing by hand."""

from collections import Counter
from datetime import timedelta

from sqlmodel import func, select

from sendstatus_tui.core.coordination import deliveries
from sendstatus_tui.core.model import lifecycle
from sendstatus_tui.core.model.models import FailureClass, Mailing, Recipient, utc_now
from sendstatus_tui.core.store.store import Store


def stop_or_send_again(store: Store, mailing_id: int) -> None:
    """Stops a sending mailing, or sends a parked one again (or completes it, settled)."""
    with store.write() as session:
        mailing = deliveries.mailing(session, mailing_id)
        if mailing.state == "sending" and mailing.remaining == 0:
            lifecycle.complete(session, mailing_id)
        elif mailing.state == "sending":
            lifecycle.stop(session, mailing_id)
        elif mailing.state == "standby":
            lifecycle.send_now(session, mailing_id)
            lifecycle.mark_prepared(session, mailing_id)


def books(store: Store, mailing_id: int) -> tuple[Mailing, Counter]:
    """The mailing, and its recipients counted by status."""
    with store.read() as session:
        mailing = deliveries.mailing(session, mailing_id)
        counts = Counter(
            dict(
                session.exec(
                    select(Recipient.status, func.count())
                    .where(Recipient.mailing_id == mailing_id)
                    .group_by(Recipient.status)
                ).all()
            )
        )
    return mailing, counts


def assert_balanced(store: Store, mailing_id: int, recipients: int) -> None:
    """The counters equal the recipients by status, and never pass the total."""
    mailing, counts = books(store, mailing_id)
    assert (mailing.sent, mailing.failed, mailing.deferred) == (
        counts["sent"],
        counts["failed"],
        counts["deferred"],
    )
    assert sum(counts.values()) == mailing.total == recipients
    assert 0 <= mailing.remaining == recipients - mailing.sent - mailing.failed


def outcome(claimed: deliveries.Claimed, status: str) -> deliveries.Outcome:
    if status == deliveries.FAILED:
        return deliveries.Outcome(claimed, status, "550 no", failure_class=FailureClass.REFUSED)
    if status == deliveries.DEFERRED:  # due again at once
        return deliveries.Outcome(claimed, status, "451 later", utc_now() - timedelta(seconds=1))
    if status == deliveries.IN_DOUBT:
        return deliveries.Outcome(claimed, status, "no reply after DATA")
    return deliveries.Outcome(claimed, status, "250 ok" if status == deliveries.SENT else None)


def finish(store: Store, mailing_id: int, recipients: int, claimant: str) -> None:
    """Sends everyone still due as ``claimant``, then completes the mailing, which must
    then hold every recipient settled."""
    if books(store, mailing_id)[0].state == "standby":
        stop_or_send_again(store, mailing_id)
    for _ in range(recipients * deliveries.MAX_DOUBTS + 5):
        with store.write() as session:
            batch = deliveries.claim(session, mailing_id, recipients, claimant=claimant)
            if not batch:
                break
            deliveries.record(
                session,
                mailing_id,
                [deliveries.Outcome(r, deliveries.SENT, "250 ok") for r in batch],
                claimant=claimant,
            )
    stop_or_send_again(store, mailing_id)  # completes it, all being settled
    mailing, counts = books(store, mailing_id)
    assert mailing.state == "completed", (mailing, counts)
    assert mailing.sent + mailing.failed == recipients
