"""The sending loop: a dispatcher (engine/batches.py) for each sending mailing, a stop for
each that no longer is, and the stored relays followed; each time the database may have
changed (engine/changes.py), or a dispatcher ended."""

import asyncio
import contextlib
import logging

from sendstatus_tui.core.coordination import deliveries
from sendstatus_tui.core.model.states import State
from sendstatus_tui.core.store.store import StoreError
from sendstatus_tui.engine.batches import Batches
from sendstatus_tui.engine.context import EngineContext
from sendstatus_tui.engine.following import RelayFollowing
from sendstatus_tui.engine.pauses import surviving, until

log = logging.getLogger("sendstatus.engine")
# how often the loop looks, between wakes, for a dispatcher that ended
ENDED_EVERY_SECONDS = 1.0


class Dispatch:
    def __init__(self, context: EngineContext, relays: RelayFollowing, batches: Batches):
        self.db, self.standing = context.db, context.standing
        self.pauses, self.trouble = context.pauses, context.trouble
        self.relays, self.batches = relays, batches
        self.sending: dict[int, asyncio.Task[None]] = {}  # mailing id -> its dispatcher
        # the database may have changed, a mailing was prepared, or the heartbeat stands
        self.wake = asyncio.Event()
        # a dispatcher ended, or the last round failed: the next timed round is a full one
        self._behind = False

    async def loop(self) -> None:
        while True:
            await surviving(self._sync_senders)
            # until woken (the database may have changed), a dispatcher ended, or a relay
            # left out for its credentials is due to be tried again
            while not await until(self.wake, ENDED_EVERY_SECONDS) and not self._behind:
                if self.relays.routes.left_out_due():
                    break

    def _ended(self, _task: asyncio.Task[None]) -> None:
        self._behind = True

    def cancel_all(self) -> None:
        """The claims were handed back: what is sent under them is not recorded."""
        for task in self.sending.values():
            task.cancel()

    async def _sync_senders(self) -> None:
        """A dispatcher for each sending mailing; a stop for each that no longer is; and the
        stored relays followed."""
        self._behind = False
        await self.relays.follow()
        try:
            active = await self.db.read(deliveries.active_mailings)
        except StoreError as exc:
            self.trouble.report("read", exc)
            self._behind = True
            return
        self.trouble.report("read", None)
        sending = {m.id for m in active if m.state == State.SENDING}
        for mailing_id, task in list(self.sending.items()):
            if task.done():
                del self.sending[mailing_id]
                self.batches.stops.pop(mailing_id, None)
                if not task.cancelled() and (error := task.exception()) is not None:
                    await self._after_crash(mailing_id, error)
            elif mailing_id not in sending:
                # stopped by an operator: messages in the relay's hands finish (and count as
                # sent), the others are handed back untried
                self.batches.stopping(mailing_id).set()
        if self.pauses.draining or not self.standing.registered:
            return
        for mailing_id in sending - set(self.sending):
            self.batches.stops[mailing_id] = asyncio.Event()
            task = asyncio.create_task(self.batches.dispatch(mailing_id, self.standing.claimant))
            task.add_done_callback(self._ended)
            self.sending[mailing_id] = task

    async def _after_crash(self, mailing_id: int, error: BaseException) -> None:
        """A dispatcher ended with an unforeseen error: its claims go back, in doubt, and
        the next round starts it again."""
        log.error("mailing %s: sending failed: %r; starting again", mailing_id, error)
        claimant = self.standing.claimant
        with contextlib.suppress(StoreError):
            await self.db.write(
                lambda session: deliveries.hand_back_claims(session, claimant, mailing_id)
            )
