"""Steps of a mailing's lifecycle taken by an engine, each fenced by its lease or its
claims; and the waiting reason a mailing's row shows (a relay down, outside its window,
held back by a domain limit)."""

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TypeVarTuple

from sqlmodel import Session

from sendstatus_tui.core.coordination import deliveries, heartbeats, lease
from sendstatus_tui.core.coordination.heartbeats import ClaimantLost
from sendstatus_tui.core.coordination.lease import LeaseLost
from sendstatus_tui.core.model import lifecycle
from sendstatus_tui.core.model.models import utc_now
from sendstatus_tui.core.model.states import TransitionRefused
from sendstatus_tui.core.model.waiting import WaitingKind
from sendstatus_tui.core.model.window import OUTSIDE_WINDOW
from sendstatus_tui.core.store.store import StoreError, lock_transitions
from sendstatus_tui.engine.backoff import RelayBackoff
from sendstatus_tui.engine.database import EngineDatabase
from sendstatus_tui.engine.standing import Standing
from sendstatus_tui.engine.trouble import DatabaseTrouble

log = logging.getLogger("sendstatus.engine")
StepArguments = TypeVarTuple("StepArguments")  # what a lifecycle step takes after the id


class Steps:
    def __init__(self, db: EngineDatabase, standing: Standing, trouble: DatabaseTrouble):
        self.db, self.standing, self.trouble = db, standing, trouble
        # mailings whose row shows a waiting reason, and which (as this engine wrote it)
        self.waiting: dict[int, tuple[WaitingKind, str]] = {}

    async def step(
        self,
        generation: int | None,
        operation: Callable[[Session, int, *StepArguments], object],
        mailing_id: int,
        *args: *StepArguments,
        claimant: str | None = None,
    ) -> bool:
        """Applies a lifecycle step as the leader of ``generation`` (or, with None, as the
        sender of ``claimant``); False when it did not happen (an operator changed the
        state first, the lease or the claims are lost, the database cannot be written)."""
        standing = self.standing

        def fenced(session: Session) -> None:
            lock_transitions(session)  # first (the lock order: core/store/locks.py)
            if generation is None:
                heartbeats.check_claimant(session, standing.holder, claimant or standing.claimant)
            else:
                lease.check(session, standing.holder, generation)
            operation(session, mailing_id, *args)

        try:
            await self.db.write(fenced)
            self.trouble.report("step", None)
            return True
        except (TransitionRefused, lifecycle.MailingNotFound) as exc:
            log.info("mailing %s: %s", mailing_id, exc)
        except (LeaseLost, ClaimantLost) as exc:
            log.error("%s", exc)
        except StoreError as exc:
            self.trouble.report("step", exc)
        return False

    async def interrupt(
        self, generation: int | None, mailing_id: int, reason: str, claimant: str | None = None
    ) -> None:
        """The relay refuses us: the mailing waits in Sends to schedule with the reason."""
        if await self.step(generation, lifecycle.interrupt, mailing_id, reason, claimant=claimant):
            log.error("mailing %s: interrupted: %s", mailing_id, reason)

    async def show_relay_down(
        self,
        generation: int | None,
        mailing_id: int,
        reason: str,
        backoff: RelayBackoff,
        claimant: str | None = None,
    ) -> None:
        """Tells the operator, in the mailing's row, that it waits for its relays, why, and
        when the engine tries again."""
        until = utc_now() + timedelta(seconds=backoff.next_seconds)
        kind = WaitingKind.RELAY_DOWN
        if await self.step(
            generation, deliveries.show_waiting, mailing_id, kind, reason, until, claimant=claimant
        ):
            self.waiting[mailing_id] = (kind, reason)

    async def show_outside_window(self, mailing_id: int, opens: datetime, claimant: str) -> None:
        """Tells the operator, in the mailing's row, that it waits for its sending window."""
        if mailing_id not in self.waiting:
            log.info("mailing %s: outside its sending window until %s", mailing_id, opens)
        if await self.step(
            None,
            deliveries.show_waiting,
            mailing_id,
            WaitingKind.WINDOW,
            OUTSIDE_WINDOW,
            opens,
            claimant=claimant,
        ):
            self.waiting[mailing_id] = (WaitingKind.WINDOW, OUTSIDE_WINDOW)

    async def show_domain_limit(
        self, mailing_id: int, reason: str, until: datetime | None, claimant: str
    ) -> None:
        """Tells the operator, in the mailing's row, that its messages wait for their
        domains' limits (``reason``: which); written only when that changes."""
        shown = (WaitingKind.DOMAIN_LIMIT, reason)
        if self.waiting.get(mailing_id) == shown:
            return
        log.info("mailing %s: waits for %s", mailing_id, reason)
        if await self.step(
            None, deliveries.show_waiting, mailing_id, *shown, until, claimant=claimant
        ):
            self.waiting[mailing_id] = shown

    async def clear_waiting(
        self, generation: int | None, mailing_id: int, claimant: str | None = None
    ) -> None:
        if mailing_id in self.waiting and await self.step(
            generation, deliveries.show_waiting, mailing_id, None, claimant=claimant
        ):
            self.waiting.pop(mailing_id, None)
