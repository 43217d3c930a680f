"""The engine: every engine on a database sends; one of them, the leader, also keeps time.

Every engine beats each second (coordination/heartbeats.py), and claims and delivers
batches of every sending mailing, in send slots of the database's shared rate
(coordination/shared_rate.py). The engine holding the database's lease
(coordination/lease.py) is the leader, and also: starts scheduled mailings at their minute
(APScheduler date jobs, rebuilt from the database),
promotes the next sequential mailing, prepares mailings that are starting up, and hands
back the claims of engines whose heartbeat expired (coordination/rescue.py). The database
is the truth: operators act on it from any process, and the engines notice within a
fraction of a second through the change marker (engine/changes.py), with a full read every
30 s as a backstop. Database work runs off the event loop (engine/database.py).

Fencing: each of the leader's writes checks the lease generation it took, in the same
transaction; each claim checks that the engine's claimant still stands; each record
checks that the claims are still that claimant's. And since a relay cannot be fenced, no
message goes out once the engine's own clock says its heartbeat may have gone stale: an
engine that stalled and wakes up neither sends nor records what the leader handed back.
"""

import asyncio
import logging

from sendstatus_tui.core.coordination import deliveries, heartbeats, lease, relay_breakers
from sendstatus_tui.core.store.store import Store, StoreError
from sendstatus_tui.engine.alerting import Alerting
from sendstatus_tui.engine.batches import Batches
from sendstatus_tui.engine.beat import Heartbeat
from sendstatus_tui.engine.cap import EngineCap
from sendstatus_tui.engine.changes import Changes
from sendstatus_tui.engine.context import EngineContext
from sendstatus_tui.engine.database import EngineDatabase
from sendstatus_tui.engine.dispatch import Dispatch
from sendstatus_tui.engine.domain_pace import DomainLimits
from sendstatus_tui.engine.following import RelayFollowing
from sendstatus_tui.engine.leading import Leading
from sendstatus_tui.engine.metrics import NoMetrics
from sendstatus_tui.engine.pauses import Pauses
from sendstatus_tui.engine.routes import Routes
from sendstatus_tui.engine.sending import BatchSender
from sendstatus_tui.engine.settings import EngineSettings
from sendstatus_tui.engine.slots import SharedSlots
from sendstatus_tui.engine.standing import Standing
from sendstatus_tui.engine.steps import Steps
from sendstatus_tui.engine.transports import Transport
from sendstatus_tui.engine.trouble import DatabaseTrouble

log = logging.getLogger("sendstatus.engine")


class Engine:
    def __init__(
        self,
        store: Store,
        transport: Transport | None,
        settings: EngineSettings,
        metrics: NoMetrics | None = None,
    ):
        """``transport``: the one relay of ``--smtp`` (or a test's); None: the relays stored
        in the database, followed as they change. ``metrics``: where this engine counts
        what it does (``engine --metrics``)."""
        self.store, self.settings = store, settings
        self.db = EngineDatabase(store)
        self.standing = Standing()
        self.pauses = Pauses()
        self.trouble = DatabaseTrouble()
        self.slots = SharedSlots(self.db)
        self.routes = Routes(
            transport,
            retries=settings.retry_policy,
            reserve=self.slots.reserve_for_relay,
        )
        self.cap = EngineCap(settings.rate_per_second)
        self.metrics = metrics or NoMetrics()
        self.metrics.watch_relays(self.routes.states)
        self.domains = DomainLimits(self.slots.reserve_for_domains, self.slots.throttle)
        self.relays = RelayFollowing(self.db, self.routes, self.domains, self.trouble)
        self.sender = BatchSender(
            self.routes,
            self.cap,
            settings.retry_policy,
            settings.stop_grace_seconds,
            self.metrics,
            self.domains,
        )
        self.steps = Steps(self.db, self.standing, self.trouble)
        context = EngineContext(self.db, settings, self.standing, self.pauses, self.trouble)
        self.batches = Batches(
            context, self.steps, self.sender, self.routes, self.domains, self.metrics
        )
        self.dispatch = Dispatch(context, self.relays, self.batches)
        self.alerting = Alerting(
            self.db, settings.allow_alert_command, settings.alert_timeout_seconds
        )
        self.leading = Leading(
            store, context, self.steps, self.routes, self.alerting, self.dispatch.wake
        )
        self.heartbeat = Heartbeat(
            context,
            self.routes,
            self.metrics,
            self.leading,
            self.dispatch,
            lambda: self.batches.sent,
        )
        self.changes = Changes(context, (self.leading.wake, self.dispatch.wake))

    @property
    def holder(self) -> str:
        return self.standing.holder

    @property
    def claimant(self) -> str:
        return self.standing.claimant

    @property
    def generation(self) -> int:
        """Of the lease, while this engine leads; else 0."""
        return self.standing.generation

    async def run(self, stop: asyncio.Event) -> None:
        """Serves until ``stop`` is set: beats, sends, and leads while it holds the lease."""
        self.leading.scheduler.start()
        await self.relays.follow()  # before any starting up checks one
        beating = asyncio.create_task(self.heartbeat.loop())
        loops = [
            asyncio.create_task(loop())
            for loop in (self.changes.loop, self.dispatch.loop, self.leading.loop)
        ]
        try:
            await stop.wait()
        finally:
            # the heartbeat goes on while the batches in flight finish: they may go out
            await self._drain()
            for task in [*loops, beating]:
                task.cancel()
            await asyncio.gather(*loops, beating, return_exceptions=True)
            self.leading.scheduler.shutdown(wait=False)
            await self.routes.close()
            await asyncio.to_thread(self.db.close)  # transactions under way end first
            await asyncio.to_thread(self._leave)

    async def _drain(self) -> None:
        """Lets every dispatcher finish and record what the relay answered, within the
        stop bound."""
        self.pauses.drain()
        for event in self.batches.stops.values():
            event.set()
        preparing, sending = self.leading.preparing, self.dispatch.sending
        for task in preparing.values():
            task.cancel()  # a starting up claims nothing: the next leader starts it again
        tasks = [*sending.values(), *preparing.values()]
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=self.sender.stop_bound + 1)
            for task in late:
                task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        sending.clear()
        preparing.clear()
        self.batches.stops.clear()

    def _leave(self) -> None:
        """Hands back what this engine still claims, lets the next leader take over at once,
        and takes the engine's row away."""
        holder = self.standing.holder
        try:
            with self.store.write() as session:  # in the lock order (core/store/locks.py)
                lease.release(session, holder)
                heartbeats.forget(session, holder)
                relay_breakers.forget(session, holder)
                left = deliveries.hand_back_claims(session, self.standing.claimant)
        except StoreError as exc:
            log.error("engine stopped without handing back its claims: %s", exc)
            return
        for mailing_id, count in left.items():
            log.warning("mailing %s: %s unanswered sends handed back in doubt", mailing_id, count)
        log.info("engine stopped%s", "; lease released" if self.generation else "")
