"""The heartbeat: each second an engine writes its beat and takes or renews the lease, in
one transaction; it follows what the lease says (leading or not), learns when the leader
handed its claims back, and tells how fast it sends."""

import asyncio
import logging
import os
import socket
import time
from collections import deque
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime

from sqlmodel import Session

from sendstatus_tui.core.coordination import heartbeats, lease, relay_breakers
from sendstatus_tui.core.model.models import utc_now
from sendstatus_tui.core.store.store import StoreError
from sendstatus_tui.engine.context import EngineContext
from sendstatus_tui.engine.dispatch import Dispatch
from sendstatus_tui.engine.leading import Leading
from sendstatus_tui.engine.metrics import NoMetrics
from sendstatus_tui.engine.pauses import surviving
from sendstatus_tui.engine.routes import Routes

log = logging.getLogger("sendstatus.engine")
# the rate a heartbeat tells is over about this long: outcomes are counted when their batch
# is recorded, so between two beats alone a batch recorded late reads as a burst
HEARTBEAT_RATE_SECONDS = 10.0


class Heartbeat:
    def __init__(
        self,
        context: EngineContext,
        routes: Routes,
        metrics: NoMetrics,
        leading: Leading,
        dispatch: Dispatch,
        sent: Callable[[], int],
    ):
        self.db, self.settings = context.db, context.settings
        self.standing, self.trouble = context.standing, context.trouble
        self.routes, self.metrics, self.leading, self.dispatch = routes, metrics, leading, dispatch
        self._sent = sent  # messages the relay accepted from this engine so far
        self._rate_marks = deque([(time.monotonic(), 0)])  # (when, sent) at each beat
        self._announced_leader: str | None = None

    async def loop(self) -> None:
        while True:
            await surviving(self._beat)
            if self.standing.registered:
                await asyncio.sleep(self.settings.lease_renew_seconds)
            else:
                await asyncio.sleep(min(0.2, self.settings.lease_renew_seconds))

    async def _beat(self) -> None:
        """Writes the heartbeat, and takes or renews the lease, in one transaction."""
        began, asked = time.monotonic(), utc_now()
        beat, fresh = self._heartbeat(), not self.standing.registered
        downs = self.routes.downs()
        try:
            state, stands = await self.db.beat(
                lambda session: self._beat_in(session, beat, fresh, asked, downs)
            )
        except StoreError as exc:
            self.trouble.report("beat", exc)
            return
        self.trouble.report("beat", None)
        # surely ours until the ttl has passed since before we asked, minus a margin for a
        # write that took long to commit
        deadline = (
            began + self.settings.lease_ttl.total_seconds() - self.settings.lease_renew_seconds
        )
        if stands:
            if not self.standing.registered:
                self.dispatch.wake.set()  # its dispatchers may start
            self.standing.registered = True
            self.standing.send_deadline = deadline
        else:
            self._claims_handed_back()
        self._follow_lease(state)
        self.metrics.lease(state.held, state.expires_at)

    def _beat_in(
        self,
        session: Session,
        beat: heartbeats.Beat,
        fresh: bool,
        asked: datetime,
        downs: dict[str, relay_breakers.Down],
    ) -> tuple[lease.LeaseState, bool]:
        ttl = self.settings.lease_ttl
        # decided by the time the beat was asked for: a wait for a lock (this beat's own,
        # not yet noted as a stall while it runs; or an earlier write's) must not expire the
        # lease (the new expiry counts from when the lease row is locked)
        expired_by = min(self.db.expired_before(utc_now(), ttl) + ttl, asked)
        state = lease.acquire(session, self.standing.holder, ttl, expired_by=expired_by)
        role = "leader" if state.held else "sender"
        stands = heartbeats.beat(session, replace(beat, role=role), fresh=fresh)
        if stands:
            relay_breakers.publish(session, self.standing.holder, downs)
        if state.held:
            heartbeats.forget_lost(session)
            relay_breakers.forget_orphans(session)
        return state, stands

    def _heartbeat(self) -> heartbeats.Beat:
        now = time.monotonic()
        while len(self._rate_marks) > 1 and now - self._rate_marks[1][0] >= HEARTBEAT_RATE_SECONDS:
            self._rate_marks.popleft()
        then, sent_then = self._rate_marks[0]
        sent = self._sent()
        self._rate_marks.append((now, sent))
        return heartbeats.Beat(
            id=self.standing.holder,
            host=socket.gethostname(),
            pid=os.getpid(),
            role="",  # known once the lease is taken or not, in the beat's transaction
            started_at=self.standing.started_at,
            sending=tuple(sorted(self.dispatch.sending)),
            sent=sent,
            rate=(sent - sent_then) / (now - then) if now > then else 0.0,
            connections=self.routes.connections,
            connections_reason=self.routes.connections_reason,
            claimant=self.standing.claimant,
        )

    def _claims_handed_back(self) -> None:
        """The leader handed this engine's claims back after its heartbeat expired (stalled,
        or cut off from the database): what it still sends under them is not recorded."""
        log.error(
            "this engine was silent too long and the leader handed its claims back (they are"
            " sent again, counted in doubt); going on under a new claimant"
        )
        self.standing.claimant = self.standing.next_claimant()
        self.standing.registered = False
        self.standing.send_deadline = 0.0
        self.dispatch.cancel_all()

    def _follow_lease(self, state: lease.LeaseState) -> None:
        if state.held and state.generation != self.standing.generation:
            self.leading.take(state.generation)
            self._announced_leader = None
            log.info(
                "engine %s holds the lease (generation %s)",
                self.standing.holder,
                self.standing.generation,
            )
        elif not state.held:
            if self.standing.generation:
                log.error(
                    "lost the lease to another engine (%s); no longer leading, still sending",
                    state.holder,
                )
                self.leading.stop()
            if self._announced_leader != state.holder:
                log.warning(
                    "another engine (%s) leads until %s; this one sends, and stands by to lead",
                    state.holder,
                    state.expires_at.isoformat(timespec="seconds"),
                )
                self._announced_leader = state.holder
