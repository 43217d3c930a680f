"""Which failures a retry takes, and putting them back to pending (``sendstatus retry``;
the mailing's side of it is ``lifecycle.retry``)."""

from dataclasses import dataclass

import sqlalchemy as sa
from sqlmodel import Session, col

from sendstatus_tui.core.model.models import FailureClass, Mailing, Recipient, RecipientStatus

CLASSES = (
    FailureClass.REFUSED,
    FailureClass.DEFERRED_TOO_OFTEN,
    FailureClass.DOUBT,
    FailureClass.ERROR,
    FailureClass.BOUNCE,
    FailureClass.BLOCKED,
)
# a hard bounce is never sent again: the address does not exist
NEVER_RETRIED = (FailureClass.BOUNCE,)
RETRYABLE = tuple(c for c in CLASSES if c not in NEVER_RETRIED)
# what a retry takes by default: a doubt may have been received, so only when named
RETRY_ALL = (FailureClass.REFUSED, FailureClass.DEFERRED_TOO_OFTEN)
# a failed recipient's class; failures recorded before classes were kept (migration 0004)
# count as refusals
STORED_CLASS = sa.func.coalesce(col(Recipient.failure_class), FailureClass.REFUSED)


@dataclass(frozen=True)
class Reset:
    """What a reset put back to pending: how many, and how many of them failed in doubt
    (each may have received up to MAX_DOUBTS copies already: sending it again may make
    one more)."""

    count: int
    in_doubt: int


def reset_failed(session: Session, mailing_id: int, classes: tuple[str, ...]) -> Reset:
    """Puts the failed recipients of ``classes`` back to pending with their attempts reset;
    says how many. Nobody sent, suppressed or still pending is touched, nor a hard bounce
    whatever is asked."""
    classes = tuple(c for c in classes if c not in NEVER_RETRIED)
    if FailureClass.BLOCKED in classes:  # its counter follows: it counts failed ones
        blocked = session.execute(
            sa.select(sa.func.count()).where(
                col(Recipient.mailing_id) == mailing_id,
                col(Recipient.status) == RecipientStatus.FAILED,
                STORED_CLASS == FailureClass.BLOCKED,
            )
        ).scalar_one()
        session.execute(
            sa.update(Mailing)
            .where(col(Mailing.id) == mailing_id)
            .values(blocked=col(Mailing.blocked) - blocked)
            .execution_options(synchronize_session=False)
        )
    in_doubt = 0
    if FailureClass.DOUBT in classes:
        in_doubt = session.execute(
            sa.select(sa.func.count()).where(
                col(Recipient.mailing_id) == mailing_id,
                col(Recipient.status) == RecipientStatus.FAILED,
                col(Recipient.failure_class) == FailureClass.DOUBT,
            )
        ).scalar_one()
    result = session.execute(
        sa.update(Recipient)
        .where(
            col(Recipient.mailing_id) == mailing_id,
            col(Recipient.status) == RecipientStatus.FAILED,
            STORED_CLASS.in_(classes),
        )
        .values(
            status=RecipientStatus.PENDING,
            attempts=0,
            doubts=0,
            failure_class=None,
            last_reply=None,
            next_attempt_at=None,
        )
        .execution_options(synchronize_session=False)
    )
    return Reset(int(result.rowcount), in_doubt)  # type: ignore[attr-defined]
