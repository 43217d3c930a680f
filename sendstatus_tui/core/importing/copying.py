"""A copy of a mailing as a new parked one: the same message, recipients (with their
personalisation) and settings, none of its outcomes (``sendstatus mailing copy``, and the
dashboard's Copy).

The recipients are copied a range of ids at a time, each in a short transaction, into a
mailing that no list shows until the last range is in (as an import is: drafts.py), so that
a copy of ten million holds no write lock for long. Addresses put on the suppression list
since are left out, as an import leaves them out."""

from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass

import sqlalchemy as sa
from sqlmodel import Session, col, func, select

from sendstatus_tui.core.importing.drafts import DECIDED_LATER, remove_import
from sendstatus_tui.core.model import audit, lifecycle
from sendstatus_tui.core.model.models import Mailing, Recipient, RecipientStatus, utc_now
from sendstatus_tui.core.model.states import State
from sendstatus_tui.core.store.store import Store
from sendstatus_tui.errors import SendStatusError

# source recipient ids copied in one transaction (an import writes batches of this size too)
_RANGE = 20_000

_COPY = sa.text(
    "INSERT INTO recipient (mailing_id, email, mailbox, field_values, status, attempts)"
    " SELECT :new_id, r.email, r.mailbox, r.field_values, :pending, 0 FROM recipient r"
    " WHERE r.mailing_id = :source_id AND r.id > :after AND r.id <= :upto"
    " AND NOT EXISTS (SELECT 1 FROM suppression s WHERE s.mailbox = r.mailbox)"
    " ORDER BY r.id"
)


class CopyRefused(SendStatusError, ValueError):
    pass


@dataclass(frozen=True)
class Copied:
    mailing_id: int
    name: str
    recipients: int
    suppressed: int  # the source's recipients left out: on the suppression list now


def copy_name(name: str) -> str:
    return f"{name} (copy)"


def copy_mailing(
    store: Store,
    source_id: int,
    name: str | None = None,
    *,
    actor: audit.Actor | None = None,
    then: Callable[[Session, Mailing], None] | None = None,
) -> Copied:
    """Copies mailing ``source_id`` as a new mailing parked in Sends to schedule ("decided
    later"), named ``name`` (default: the source's, marked as a copy). ``then`` runs in the
    transaction that shows it. MailingNotFound for an unknown id; on any error nothing is
    left behind."""
    if name is not None and (not name.strip() or "\n" in name or "\r" in name):
        raise CopyRefused("--name: give a name on one line")
    with store.write() as session:
        source = lifecycle.get(session, source_id)
        copy = _new_copy(session, source, name.strip() if name else copy_name(source.name))
        last_id = session.exec(
            select(func.max(Recipient.id)).where(Recipient.mailing_id == source_id)
        ).one()
        first_id = session.exec(
            select(func.min(Recipient.id)).where(Recipient.mailing_id == source_id)
        ).one()
    assert copy.id is not None  # flushed
    try:
        copied = _copy_recipients(store, source_id, copy.id, first_id, last_id)
        if not copied:
            raise CopyRefused(
                f"mailing {source_id}: no recipients left to copy: all are on the suppression list"
            )
        with store.write() as session:
            session.add(copy)
            copy.total = copied
            copy.importing = False
            copy.updated_at = utc_now()
            session.flush()
            detail = f"{copied:,} recipient{'' if copied == 1 else 's'}, a copy of {source_id}"
            audit.record(session, audit.Change.CREATED, copy, detail, actor=actor)
            if then is not None:
                then(session, copy)
    except BaseException:
        with suppress(SendStatusError):
            remove_import(store, copy.id)
        raise
    return Copied(copy.id, copy.name, copied, source.total - copied)


def _new_copy(session: Session, source: Mailing, name: str) -> Mailing:
    copy = Mailing(
        id=audit.unused_mailing_id(session),
        name=name,
        subject=source.subject,
        sender=source.sender,
        text_body=source.text_body,
        html_body=source.html_body,
        field_names=source.field_names,
        state=State.STANDBY,
        state_reason=DECIDED_LATER,
        unsubscribe_url=source.unsubscribe_url,
        unsubscribe_mailto=source.unsubscribe_mailto,
        window=source.window,
        relays=source.relays,
        importing=True,  # hidden until its recipients are all in
    )
    session.add(copy)
    session.flush()
    return copy


def _copy_recipients(
    store: Store, source_id: int, copy_id: int, first_id: int | None, last_id: int | None
) -> int:
    if first_id is None or last_id is None:
        return 0
    copied = 0
    after = first_id - 1
    while after < last_id:
        upto = after + _RANGE
        with store.write() as session:
            parameters = {
                "new_id": copy_id,
                "pending": RecipientStatus.PENDING,
                "source_id": source_id,
                "after": after,
                "upto": upto,
            }
            result = session.execute(_COPY, parameters)
            copied += result.rowcount  # type: ignore[attr-defined]
            session.execute(  # the import's heartbeat: a copy left untouched was abandoned
                sa.update(Mailing).where(col(Mailing.id) == copy_id).values(updated_at=utc_now())
            )
        after = upto
    return copied
