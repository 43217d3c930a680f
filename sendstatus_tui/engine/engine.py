"""The engine: every engine on a database sends; one of them, the leader, also keeps time.

Every engine beats each second (coordination/heartbeats.py), and claims and delivers
batches of every sending mailing, in send slots of the database's shared rate
(coordination/shared_rate.py). The engine holding the database's lease
(coordination/lease.py) is the leader, and also: starts scheduled mailings at their minute
(APScheduler date jobs, rebuilt from the database, plus a short reconcile as a backstop),
promotes the next sequential mailing, prepares mailings that are starting up, and hands
back the claims of engines whose heartbeat expired (coordination/rescue.py). The database
is the truth: operators act on it from any process, and the engines notice within a
fraction of a second. Database work runs off the event loop (engine/database.py).

Fencing: each of the leader's writes checks the lease generation it took, in the same
transaction; each claim checks that the engine's claimant still stands; each record
checks that the claims are still that claimant's. And since a relay cannot be fenced, no
message goes out once the engine's own clock says its heartbeat may have gone stale: an
engine that stalled and wakes up neither sends nor records what the leader handed back.
"""

import asyncio
import contextlib
import functools
import logging
import math
import os
import socket
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import TypeVarTuple

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from sqlmodel import Session

from sendstatus_tui.core.coordination import (
    deliveries,
    domain_rate,
    heartbeats,
    lease,
    relay_breakers,
    rescue,
    shared_rate,
)
from sendstatus_tui.core.coordination.heartbeats import ClaimantLost
from sendstatus_tui.core.coordination.lease import LeaseLost
from sendstatus_tui.core.coordination.shared_rate import ReservedSlots
from sendstatus_tui.core.importing import drafts
from sendstatus_tui.core.model import guard, lifecycle, send_minutes, signing
from sendstatus_tui.core.model import relays as stored_relays
from sendstatus_tui.core.model import settings as stored_settings
from sendstatus_tui.core.model.domain_limits import DomainGroup, stored_limits
from sendstatus_tui.core.model.models import utc_now
from sendstatus_tui.core.model.relays import names_of
from sendstatus_tui.core.model.retry_policy import RelayWaits, RetryPolicy
from sendstatus_tui.core.model.states import State, TransitionRefused
from sendstatus_tui.core.model.waiting import WaitingKind
from sendstatus_tui.core.model.window import OUTSIDE_WINDOW, stored_window
from sendstatus_tui.core.store.store import Store, StoreError, lock_transitions
from sendstatus_tui.engine.alerting import Alerting
from sendstatus_tui.engine.cap import EngineCap
from sendstatus_tui.engine.database import EngineDatabase
from sendstatus_tui.engine.domain_pace import DomainLimits
from sendstatus_tui.engine.message import Template, template_of
from sendstatus_tui.engine.metrics import NoMetrics
from sendstatus_tui.engine.routes import Routes
from sendstatus_tui.engine.sending import BatchSender
from sendstatus_tui.engine.smtp.errors import RelayRefused, RelayUnavailable, ReplyLost
from sendstatus_tui.engine.transports import Transport

log = logging.getLogger("sendstatus.engine")
# batches of one mailing in flight at once: while one waits for its last replies (a round
# trip to a relay far away), the other keeps the connections busy
DISPATCH_LANES = 2
# under a rate, a mailing's batches in flight hold about this long of it: claims reserve
# their send slots ahead, and a short window keeps engines and mailings taking turns
RATED_WINDOW_SECONDS = 0.5
# the rate a heartbeat tells is over about this long: outcomes are counted when their batch
# is recorded, so between two beats alone a batch recorded late reads as a burst
HEARTBEAT_RATE_SECONDS = 10.0
# how often the leader looks for imports abandoned by a killed process
ABANDONED_IMPORTS_EVERY_SECONDS = 60.0
# how often an engine reads the stored relays and domain limits (a change, or another
# engine's throttling of a domain, is followed within this)
RELAYS_EVERY_SECONDS = 1.0
# how often a mailing with nothing to claim looks again while domains are limited: those
# held back for their domain's turn come back for their slots on time
HELD_BACK_SECONDS = 0.1
StepArguments = TypeVarTuple("StepArguments")  # what a lifecycle step takes after the id


@dataclass(frozen=True)
class EngineSettings:
    # this engine's own cap (``--rate``), under the rate stored for the database
    rate_per_second: float | None = None
    batch_size: int = 200  # the most recipients in flight per mailing (all its lanes)
    lease_ttl: timedelta = timedelta(seconds=5)  # of the lease, and of each heartbeat
    lease_renew_seconds: float = 1.0  # how often an engine beats (and renews the lease)
    reconcile_seconds: float = 0.25
    retry_base: timedelta = timedelta(seconds=60)  # first retry after a 4xx
    max_attempts: int = 5
    relay_retry_max_seconds: float = 30.0
    # a stop waits this long, plus one relay timeout, for messages in the relay's hands
    stop_grace_seconds: float = 5.0
    # whether, leading, it runs the stored alert_command (``--allow-alert-command``)
    allow_alert_command: bool = False
    alert_timeout_seconds: float = 10.0  # the longest a command or a webhook may take

    @property
    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy(
            max_attempts=self.max_attempts,
            first_retry=self.retry_base,
            relay_wait_cap=self.relay_retry_max_seconds,
        )


@dataclass(frozen=True)
class Claim:
    """What one claim brought: the batch, its send slots under a rate, and whether the
    mailing is done (stopped, or completed now); or, under a rate, when the next send slot
    may be claimed (epoch seconds), when it is not due yet."""

    batch: list[deliveries.Claimed]
    slots: ReservedSlots | None = None
    done: bool = False
    finished: bool = False  # nothing remains: to be completed
    not_before: float | None = None  # no send slot is due yet: claim again then
    # outside its sending window: nothing is claimed until it opens then
    window_opens: datetime | None = None
    # inside it: no message of the batch goes to the relay from then on (epoch seconds)
    window_closes: float = math.inf


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
        self.store = store
        self.db = EngineDatabase(store)
        self.routes = Routes(
            transport,
            retries=settings.retry_policy,
            reserve=self._reserve_relay_slots,
        )
        self._relays_read = 0.0  # monotonic time the stored relays were last read
        self.settings = settings
        self.holder = f"{socket.gethostname()[:64]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.started_at = utc_now()
        self._sent = 0  # messages the relay accepted from this engine, for its heartbeat
        self._rate_marks = deque([(time.monotonic(), 0)])  # (when, sent) at each beat
        self.cap = EngineCap(settings.rate_per_second)
        self.metrics = metrics or NoMetrics()
        self.metrics.watch_relays(self.routes.states)
        self.domains = DomainLimits(self._reserve_domain_slots, self._note_throttle)
        self.sender = BatchSender(
            self.routes,
            self.cap,
            settings.retry_policy,
            settings.stop_grace_seconds,
            self.metrics,
            self.domains,
        )
        # whose claims this engine's recipients carry; a new one each time the leader
        # hands its claims back
        self._claimants = 0
        self.claimant = self._next_claimant()
        self._registered = False  # the engine's row names the claimant
        # monotonic time until which the heartbeat surely stands; no message goes out after
        self._send_deadline = 0.0
        self.generation = 0  # of the lease, while this engine leads
        self._sending: dict[int, asyncio.Task[None]] = {}  # mailing id -> its dispatcher
        self._preparing: dict[int, asyncio.Task[None]] = {}  # the leader's starting ups
        # set when a mailing is stopped by an operator, or for all when the engine drains:
        # no new message starts for it
        self._stops: dict[int, asyncio.Event] = {}
        self._waiting: set[int] = set()  # mailings whose row shows a waiting reason
        self._draining = False
        self._drained = asyncio.Event()  # set with _draining, to wake sleepers
        self._wake_leader = asyncio.Event()  # a scheduled mailing's time has come
        self._wake_senders = asyncio.Event()  # a mailing was prepared
        self._last_rescue = 0.0
        self._last_cleanup = 0.0
        self._announced_leader: str | None = None
        # what failed, by the kind of work that failed: {work: reason}
        self._database_trouble: dict[str, str] = {}
        self._scheduler = AsyncIOScheduler()
        self.alerting = Alerting(
            self.db, settings.allow_alert_command, settings.alert_timeout_seconds
        )

    def _next_claimant(self) -> str:
        self._claimants += 1
        return f"{self.holder}#{self._claimants}"

    # --- life cycle ---------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Serves until ``stop`` is set: beats, sends, and leads while it holds the lease."""
        self._scheduler.start()
        await self._follow_relays()  # before any starting up checks one
        beating = asyncio.create_task(self._beat_loop())
        loops = [asyncio.create_task(self._sending_loop()), asyncio.create_task(self._leading())]
        try:
            await stop.wait()
        finally:
            # the heartbeat goes on while the batches in flight finish: they may go out
            await self._drain()
            for task in [*loops, beating]:
                task.cancel()
            await asyncio.gather(*loops, beating, return_exceptions=True)
            self._scheduler.shutdown(wait=False)
            await self.routes.close()
            await asyncio.to_thread(self.db.close)  # transactions under way end first
            await asyncio.to_thread(self._leave)

    async def _drain(self) -> None:
        """Lets every dispatcher finish and record what the relay answered, within the
        stop bound."""
        self._draining = True
        self._drained.set()
        for event in self._stops.values():
            event.set()
        for task in self._preparing.values():
            task.cancel()  # a starting up claims nothing: the next leader starts it again
        tasks = [*self._sending.values(), *self._preparing.values()]
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=self.sender.stop_bound + 1)
            for task in late:
                task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._sending.clear()
        self._preparing.clear()
        self._stops.clear()

    def _leave(self) -> None:
        """Hands back what this engine still claims, lets the next leader take over at once,
        and takes the engine's row away."""
        try:
            with self.store.write() as session:  # in the lock order (core/store/locks.py)
                lease.release(session, self.holder)
                heartbeats.forget(session, self.holder)
                relay_breakers.forget(session, self.holder)
                left = deliveries.hand_back_claims(session, self.claimant)
        except StoreError as exc:
            log.error("engine stopped without handing back its claims: %s", exc)
            return
        for mailing_id, count in left.items():
            log.warning("mailing %s: %s unanswered sends handed back in doubt", mailing_id, count)
        log.info("engine stopped%s", "; lease released" if self.generation else "")

    # --- heartbeat and lease ------------------------------------------------------------

    async def _beat_loop(self) -> None:
        while True:
            await self._surviving(self._beat)
            if self._registered:
                await asyncio.sleep(self.settings.lease_renew_seconds)
            else:
                await asyncio.sleep(min(0.2, self.settings.lease_renew_seconds))

    async def _beat(self) -> None:
        """Writes the heartbeat, and takes or renews the lease, in one transaction."""
        began, asked = time.monotonic(), utc_now()
        beat, fresh = self._heartbeat(), not self._registered
        downs = self.routes.downs()
        try:
            state, stands = await self.db.beat(
                lambda session: self._beat_in(session, beat, fresh, asked, downs)
            )
        except StoreError as exc:
            self._report_database_trouble("beat", exc)
            return
        self._report_database_trouble("beat", None)
        # surely ours until the ttl has passed since before we asked, minus a margin for a
        # write that took long to commit
        deadline = (
            began + self.settings.lease_ttl.total_seconds() - self.settings.lease_renew_seconds
        )
        if stands:
            self._registered = True
            self._send_deadline = deadline
            self._wake_senders.set()
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
        state = lease.acquire(session, self.holder, ttl, expired_by=expired_by)
        role = "leader" if state.held else "sender"
        stands = heartbeats.beat(session, replace(beat, role=role), fresh=fresh)
        if stands:
            relay_breakers.publish(session, self.holder, downs)
        if state.held:
            heartbeats.forget_lost(session)
            relay_breakers.forget_orphans(session)
        return state, stands

    def _heartbeat(self) -> heartbeats.Beat:
        now = time.monotonic()
        while len(self._rate_marks) > 1 and now - self._rate_marks[1][0] >= HEARTBEAT_RATE_SECONDS:
            self._rate_marks.popleft()
        then, sent_then = self._rate_marks[0]
        self._rate_marks.append((now, self._sent))
        return heartbeats.Beat(
            id=self.holder,
            host=socket.gethostname(),
            pid=os.getpid(),
            role="",  # known once the lease is taken or not, in the beat's transaction
            started_at=self.started_at,
            sending=tuple(sorted(self._sending)),
            sent=self._sent,
            rate=(self._sent - sent_then) / (now - then) if now > then else 0.0,
            connections=self.routes.connections,
            connections_reason=self.routes.connections_reason,
            claimant=self.claimant,
        )

    def _claims_handed_back(self) -> None:
        """The leader handed this engine's claims back after its heartbeat expired (stalled,
        or cut off from the database): what it still sends under them is not recorded."""
        log.error(
            "this engine was silent too long and the leader handed its claims back (they are"
            " sent again, counted in doubt); going on under a new claimant"
        )
        self.claimant = self._next_claimant()
        self._registered = False
        self._send_deadline = 0.0
        for task in self._sending.values():
            task.cancel()

    def _follow_lease(self, state: lease.LeaseState) -> None:
        if state.held and state.generation != self.generation:
            if self.generation:
                self._stop_leading()  # another engine led in between: start afresh
            self.generation = state.generation
            self._announced_leader = None
            log.info("engine %s holds the lease (generation %s)", self.holder, self.generation)
            self._wake_leader.set()
        elif not state.held:
            if self.generation:
                log.error(
                    "lost the lease to another engine (%s); no longer leading, still sending",
                    state.holder,
                )
                self._stop_leading()
            if self._announced_leader != state.holder:
                log.warning(
                    "another engine (%s) leads until %s; this one sends, and stands by to lead",
                    state.holder,
                    state.expires_at.isoformat(timespec="seconds"),
                )
                self._announced_leader = state.holder

    def _stop_leading(self) -> None:
        self.generation = 0
        self.alerting.stop()
        for task in self._preparing.values():
            task.cancel()
        for job in self._scheduler.get_jobs():
            job.remove()

    # --- the database -------------------------------------------------------------------

    def _report_database_trouble(self, work: str, exc: Exception | None) -> None:
        """Logs once when the database starts to fail (once per reason), and once when it
        works again: when every kind of ``work`` that failed (a beat, a claim, a record,
        the leader's, a step) has since committed, not merely one that never failed."""
        trouble = self._database_trouble
        if exc is not None:
            if str(exc) not in trouble.values():
                log.error("%s; retrying", exc)
            trouble[work] = str(exc)
        elif trouble.pop(work, None) is not None and not trouble:
            log.warning("the database works again; going on")

    async def _surviving(
        self, step: Callable[[*StepArguments], Awaitable[None]], *args: *StepArguments
    ) -> None:
        """Runs one round of a loop that must outlive an unforeseen error: without its
        heartbeat an engine would stop sending, without its sending loop it would stop
        noticing mailings."""
        try:
            await step(*args)
        except Exception:  # noqa: BLE001  logged with its traceback, for a bug report
            log.exception("unexpected error in the engine; going on")

    async def _pause(self, seconds: float) -> None:
        """Sleeps, but wakes at once when the engine is told to stop."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._drained.wait(), seconds)

    async def _until(self, event: asyncio.Event, seconds: float) -> None:
        """Sleeps ``seconds``, or until ``event`` is set (and clears it)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), seconds)
        event.clear()

    # --- leading: timing ----------------------------------------------------------------

    async def _leading(self) -> None:
        while True:
            if self.generation and not self._draining:
                await self._surviving(self._lead, self.generation)
            await self._until(self._wake_leader, self.settings.reconcile_seconds)

    async def _lead(self, generation: int) -> None:
        """Brings the database's states in line with the time: due mailings started, the
        queue promoted, claims of silent engines handed back, a starting up under way for
        each mailing starting up."""
        try:
            started = await self.db.write(
                lambda session: self._start_and_promote(session, generation)
            )
            self._log_started(started)
            if time.monotonic() - self._last_rescue >= self.settings.lease_renew_seconds:
                self._last_rescue = time.monotonic()
                await self._rescue_silent(generation)
            await self.alerting.step(
                lambda session: lease.check(session, self.holder, generation),
                lambda: self.generation == generation,
            )
            active = await self.db.read(deliveries.active_mailings)
            if time.monotonic() - self._last_cleanup >= ABANDONED_IMPORTS_EVERY_SECONDS:
                self._last_cleanup = time.monotonic()
                await self._remove_abandoned_imports()
                # a minute's counts older than a day are no screen's any more
                await self.db.write(lambda session: send_minutes.prune(session, utc_now()))
        except LeaseLost as exc:
            log.error("%s", exc)
            if self.generation == generation:
                self._stop_leading()
            return
        except StoreError as exc:
            self._report_database_trouble("lead", exc)
            return
        self._report_database_trouble("lead", None)
        if self.generation != generation:
            return  # the lease was lost meanwhile
        self._sync_start_jobs({m.id: m.scheduled_at for m in active if m.state == State.SCHEDULED})
        starting = {m.id for m in active if m.state == State.STARTING}
        for mailing_id, task in list(self._preparing.items()):
            if task.done():
                del self._preparing[mailing_id]
                if not task.cancelled() and (error := task.exception()) is not None:
                    log.error("mailing %s: starting up failed: %r; trying again", mailing_id, error)
            elif mailing_id not in starting:
                task.cancel()  # stopped or deleted by an operator meanwhile
        for mailing_id in starting - set(self._preparing):
            self._preparing[mailing_id] = asyncio.create_task(self._prepare(mailing_id))

    async def _remove_abandoned_imports(self) -> None:
        """Hidden mailings whose import was killed (kill -9, a host down) go away."""
        removed = await asyncio.to_thread(drafts.remove_abandoned_imports, self.store)
        for mailing_id in removed:
            log.warning("mailing %s: its import was abandoned (killed); removed", mailing_id)

    def _start_and_promote(self, session: Session, generation: int) -> list[str]:
        """Starts due mailings and promotes the queue; what to log once committed."""
        lease.check(session, self.holder, generation)
        now = utc_now()
        started = [
            f"mailing {mailing.id} {mailing.name!r}: its time has come, starting up"
            for mailing in lifecycle.start_due(session, now)
        ]
        promoted = lifecycle.promote_head(session, now)
        if promoted is not None:
            started.append(
                f"mailing {promoted.id} {promoted.name!r}: next in the sequential queue,"
                " starting up"
            )
        return started

    @staticmethod
    def _log_started(started: list[str]) -> None:
        for line in started:
            log.info("%s", line)

    async def _rescue_silent(self, generation: int) -> None:
        """Hands back the claims of silent engines; its own kind of work for the reports of
        database trouble (it runs once a second, the rest of the leading more often)."""
        expired = self.db.expired_before(utc_now(), self.settings.lease_ttl)
        try:
            handed = await self.db.write(lambda session: self._rescue(session, generation, expired))
        except StoreError as exc:
            self._report_database_trouble("rescue", exc)
            return
        self._report_database_trouble("rescue", None)
        self._log_rescued(handed)

    def _rescue(self, session: Session, generation: int, expired: datetime) -> dict[int, int]:
        """Hands back the claims of engines silent since before ``expired`` (a line drawn
        before the transaction waited for any lock)."""
        lease.check(session, self.holder, generation)
        return rescue.rescue(session, expired, keep=self.holder)

    @staticmethod
    def _log_rescued(handed: dict[int, int]) -> None:
        """Logged once the hand-back has committed, not while it may still fail."""
        for mailing_id, count in handed.items():
            log.warning(
                "mailing %s: %s recipients were in flight with an engine gone silent; they"
                " are sent again (counted as resent_in_doubt)",
                mailing_id,
                count,
            )

    def _sync_start_jobs(self, scheduled: dict[int, datetime | None]) -> None:
        """One date job per scheduled mailing, at its time; none for any other."""
        wanted = {f"start:{m_id}": at for m_id, at in scheduled.items()}
        for job in self._scheduler.get_jobs():
            if job.id not in wanted or job.next_run_time != wanted[job.id]:
                job.remove()
        existing = {job.id for job in self._scheduler.get_jobs()}
        for job_id, at in wanted.items():
            assert at is not None  # a scheduled mailing has its time
            if job_id not in existing and at > utc_now():
                self._scheduler.add_job(
                    self._wake_leader.set,
                    "date",
                    run_date=at,
                    id=job_id,
                    misfire_grace_time=None,  # late is better than never
                )

    # --- leading: starting up -----------------------------------------------------------

    async def _prepare(self, mailing_id: int) -> None:
        """Starting up: the message checked, the relay reached and the sender accepted."""
        generation = self.generation
        mailing, return_path = await self.db.read(
            lambda session: (deliveries.mailing(session, mailing_id), signing.return_path(session))
        )
        if mailing is None:
            return  # deleted meanwhile
        template = template_of(mailing, return_path)
        backoff = RelayBackoff(self.settings.retry_policy, self._pause)
        while not self._draining:
            try:
                await self.routes.check(template.check_sender, names_of(mailing))
                break
            except RelayRefused as refusal:
                reason = f"the relay check failed: {refusal.reply}"
                if await self._step(generation, lifecycle.interrupt, mailing_id, reason):
                    log.error("mailing %s: interrupted: %s", mailing_id, reason)
                return
            except RelayUnavailable as trouble:
                await self._show_waiting(generation, mailing_id, trouble.reply, backoff)
                await backoff.wait(mailing_id, trouble)
        if self._draining:
            return
        if await self._step(generation, lifecycle.mark_prepared, mailing_id):
            await self._clear_waiting(generation, mailing_id)
            log.info("mailing %s: prepared, sending", mailing_id)
            self._wake_senders.set()

    # --- sending ------------------------------------------------------------------------

    async def _sending_loop(self) -> None:
        while True:
            await self._surviving(self._sync_senders)
            await self._until(self._wake_senders, self.settings.reconcile_seconds)

    async def _follow_relays(self) -> None:
        """The routes brought in line with the relays stored now (engine/routes.py), and
        the domain limits with the setting and the domains throttled now."""
        try:
            if self.routes.stored:  # else --smtp: the stored relays are not read
                self.routes.follow(await self.db.read(stored_relays.all_relays))
            self.domains.follow(*await self.db.read(_domain_limits))
        except StoreError as exc:
            self._report_database_trouble("read", exc)
            return
        self._relays_read = time.monotonic()

    async def _sync_senders(self) -> None:
        """A dispatcher for each sending mailing; a stop for each that no longer is; and the
        stored relays followed."""
        try:
            if time.monotonic() - self._relays_read >= RELAYS_EVERY_SECONDS:
                await self._follow_relays()
            active = await self.db.read(deliveries.active_mailings)
        except StoreError as exc:
            self._report_database_trouble("read", exc)
            return
        self._report_database_trouble("read", None)
        sending = {m.id for m in active if m.state == State.SENDING}
        for mailing_id, task in list(self._sending.items()):
            if task.done():
                del self._sending[mailing_id]
                self._stops.pop(mailing_id, None)
                if not task.cancelled() and (error := task.exception()) is not None:
                    await self._after_crash(mailing_id, error)
            elif mailing_id not in sending:
                # stopped by an operator: messages in the relay's hands finish (and count as
                # sent), the others are handed back untried
                self._stopping(mailing_id).set()
        if self._draining or not self._registered:
            return
        for mailing_id in sending - set(self._sending):
            self._stops[mailing_id] = asyncio.Event()
            self._sending[mailing_id] = asyncio.create_task(
                self._dispatch(mailing_id, self.claimant)
            )

    async def _after_crash(self, mailing_id: int, error: BaseException) -> None:
        """A dispatcher ended with an unforeseen error: its claims go back, in doubt, and
        the next round starts it again."""
        log.error("mailing %s: sending failed: %r; starting again", mailing_id, error)
        claimant = self.claimant
        with contextlib.suppress(StoreError):
            await self.db.write(
                lambda session: deliveries.hand_back_claims(session, claimant, mailing_id)
            )

    def _stopping(self, mailing_id: int) -> asyncio.Event:
        return self._stops.setdefault(mailing_id, asyncio.Event())

    def _may_hand_over(self, mailing_id: int, claimant: str, window_closes: float) -> bool:
        """A message may go to the relay: neither stopped nor draining, the claims still
        surely this engine's, and its sending window not closed since the claim (what is
        already in the relay's hands then finishes; the rest goes back to pending)."""
        return (
            time.time() < window_closes
            and not self._draining
            and not self._stopping(mailing_id).is_set()
            and claimant == self.claimant
            and time.monotonic() < self._send_deadline
        )

    async def _dispatch(self, mailing_id: int, claimant: str) -> None:
        mailing, return_path, key = await self.db.read(
            lambda session: (
                deliveries.mailing(session, mailing_id),
                signing.return_path(session),
                signing.signing_key(session),
            )
        )
        if mailing is None or mailing.state != State.SENDING:
            return  # deleted or stopped meanwhile
        template = template_of(mailing, return_path, key)
        through = names_of(mailing)
        async with asyncio.TaskGroup() as lanes:  # one failing cancels the other
            for _ in range(DISPATCH_LANES):
                lanes.create_task(self._send_batches(mailing_id, template, through, claimant))

    async def _send_batches(
        self,
        mailing_id: int,
        template: Template,
        through: tuple[str, ...] | None,
        claimant: str,
    ) -> None:
        """Claims, sends and records batches until the mailing is done or stopped."""
        backoff = RelayBackoff(self.settings.retry_policy, self._pause)
        stopping = self._stopping(mailing_id)
        while not self._draining and not stopping.is_set() and claimant == self.claimant:
            if time.monotonic() >= self._send_deadline:
                await self._pause(0.2)  # the heartbeat may be stale: wait for the next
                continue
            try:
                claim = await self.db.write(
                    lambda session: self._claim(session, mailing_id, claimant)
                )
            except shared_rate.NotDue as not_due:  # what it claimed went back with it
                claim = Claim([], not_before=not_due.due)
            except ClaimantLost:
                return  # the beat learns it too, and takes a new claimant
            except StoreError as exc:
                self._report_database_trouble("claim", exc)
                await self._pause(1.0)
                continue
            self._report_database_trouble("claim", None)
            if claim.finished:
                await self._complete(mailing_id, claimant)
                return
            if claim.done:
                return
            if claim.window_opens is not None:
                await self._outside_window(mailing_id, claim.window_opens, stopping, claimant)
                continue
            if claim.not_before is not None:
                await self._until_due(mailing_id, claim.not_before, stopping)
                continue
            if not claim.batch:  # all in flight elsewhere, or deferred until their retry
                # (held back for their domain's turn: soon, and for their slot)
                idle = HELD_BACK_SECONDS if self.domains.limited else 1.0
                await self._pause(min(idle, self.settings.retry_base.total_seconds()))
                continue
            outcomes, trouble = await self.sender.send(
                template,
                claim.batch,
                functools.partial(self._may_hand_over, mailing_id, claimant, claim.window_closes),
                stopping,
                claim.slots,
                through,
            )
            recorded = await self._record(mailing_id, outcomes, claimant)
            if claim.slots is not None:
                await self._release_unused(claim.slots, outcomes)
            if not recorded:
                return
            if isinstance(trouble, RelayRefused):
                await self._interrupt(claimant, mailing_id, trouble.reply)
                return
            # a relay that failed while another one the mailing uses is up: its share has
            # moved already (engine/routes.py), nothing to wait for
            if isinstance(trouble, RelayUnavailable | ReplyLost) and not self.routes.any_up(
                through
            ):
                await self._show_waiting(None, mailing_id, trouble.reply, backoff, claimant)
                await backoff.wait(mailing_id, trouble)
            else:
                backoff.reset()
                await self._clear_waiting(None, mailing_id, claimant)

    def _claim(self, session: Session, mailing_id: int, claimant: str) -> Claim:
        """The next batch and its send slots (on a database thread)."""
        heartbeats.check_claimant(session, self.holder, claimant)
        mailing = deliveries.mailing(session, mailing_id)
        if mailing is None or mailing.state != State.SENDING:
            return Claim([], done=True)  # stopped by an operator
        sending_window, now = stored_window(mailing.window), utc_now()
        if sending_window is not None and not sending_window.is_open(now) and mailing.remaining:
            return Claim([], window_opens=sending_window.next_opening(now))
        closes = sending_window.next_close(now) if sending_window is not None else None
        contracted = shared_rate.contracted(session)
        if contracted and (due := shared_rate.due(session, contracted, mailing_id)) > time.time():
            return Claim([], not_before=due)
        size = self._lane_size(contracted)
        batch = deliveries.claim(session, mailing_id, size, claimant=claimant)
        if batch:
            # NotDue when another claim took the slots meanwhile: this one is rolled back
            slots = (
                shared_rate.reserve(session, len(batch), contracted, mailing_id)
                if contracted
                else None
            )
            return Claim(batch, slots, window_closes=closes.timestamp() if closes else math.inf)
        if mailing.remaining:
            return Claim([])
        # completed in a transaction of its own, which takes the transitions lock first:
        # this one holds row locks already (the lock order: core/store/locks.py)
        return Claim([], done=True, finished=True)

    async def _complete(self, mailing_id: int, claimant: str) -> None:
        """Completes the mailing if, read afresh under the lock, it is still sending with
        nothing remaining; logged once committed."""

        def complete(session: Session) -> bool:
            lock_transitions(session)
            heartbeats.check_claimant(session, self.holder, claimant)
            return lifecycle.complete_if_done(session, mailing_id) is not None

        try:
            completed = await self.db.write(complete)
        except ClaimantLost:
            return  # the beat learns it too, and takes a new claimant
        except StoreError as exc:
            self._report_database_trouble("claim", exc)
            return  # the next round tries again
        if completed:  # else completed by another engine first, stopped, retried, deleted
            log.info("mailing %s: completed", mailing_id)

    async def _outside_window(
        self, mailing_id: int, opens: datetime, stopping: asyncio.Event, claimant: str
    ) -> None:
        """Outside its sending window: its row says when the window opens, and nothing is
        claimed until then (or a stop)."""
        if mailing_id not in self._waiting:
            log.info("mailing %s: outside its sending window until %s", mailing_id, opens)
        if await self._step(
            None,
            deliveries.show_waiting,
            mailing_id,
            WaitingKind.WINDOW,
            OUTSIDE_WINDOW,
            opens,
            claimant=claimant,
        ):
            self._waiting.add(mailing_id)
        while not self._draining and not stopping.is_set():
            left = (opens - utc_now()).total_seconds()
            if left <= 0:  # open: the row no longer says it waits
                await self._clear_waiting(None, mailing_id, claimant)
                return
            # a minute at most: the wall clock may be set meanwhile
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), min(left, 60.0))

    async def _until_due(self, mailing_id: int, not_before: float, stopping: asyncio.Event) -> None:
        """Waits for the next send slot of the rate, looking again at the rate and the
        slots every reconcile interval: a raised rate brings the slot nearer (a lowered
        one, further), and the claim that follows finds the slots as they are then."""
        while not self._draining and not stopping.is_set():
            left = not_before - time.time()
            if left <= 0:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), min(left, self.settings.reconcile_seconds))
            try:
                due = await self.db.read(lambda session: _slot_due(session, mailing_id))
            except StoreError:
                continue  # the claim that follows reports it
            not_before = time.time() if due is None else due

    async def _release_unused(
        self, slots: ReservedSlots, outcomes: list[deliveries.Outcome]
    ) -> None:
        """Gives back the send slots after the batch's last message that went to the relay
        (a stop, or relay trouble, left them unused): the next claim is not pushed out."""
        used = next(
            (i + 1 for i in range(len(outcomes) - 1, -1, -1)
             if outcomes[i].status not in (deliveries.PENDING, deliveries.HELD)),
            0,
        )  # fmt: skip
        if used < slots.count:
            with contextlib.suppress(StoreError):
                await self.db.write(lambda session: shared_rate.release(session, slots, used))

    async def _reserve_relay_slots(
        self, relay: str, per_second: float, count: int
    ) -> ReservedSlots:
        """Send slots of a relay's own rate, shared with every engine (shared_rate.py)."""
        return await self.db.write(
            lambda session: shared_rate.reserve_for_relay(session, relay, count, per_second)
        )

    async def _reserve_domain_slots(
        self, key: str, configured: float | None
    ) -> ReservedSlots | None:
        """Send slots of a group of domains, shared with every engine (domain_rate.py)."""
        return await self.db.write(lambda session: domain_rate.reserve(session, key, configured))

    async def _note_throttle(
        self, key: str, domain: str, status: str, configured: float | None, sending_at: float
    ) -> None:
        """A 4.7.x deferral slows the domain's group down, for every engine."""
        await self.db.write(
            lambda session: domain_rate.throttle(
                session, key, domain, status, configured, sending_at
            )
        )
        await self._follow_relays()  # a domain in no group is limited from now on

    def _lane_size(self, contracted: float | None) -> int:
        """What one lane claims: the lanes of a mailing together have at most batch_size
        recipients in flight (what a crash can leave in doubt), and under a rate about
        RATED_WINDOW_SECONDS of it (so that engines and mailings take turns, and stopping
        is quick)."""
        rates = [r for r in (contracted, self.settings.rate_per_second) if r]
        in_flight = self.settings.batch_size
        if rates:
            in_flight = min(in_flight, max(1, int(min(rates) * RATED_WINDOW_SECONDS)))
        return max(1, in_flight // DISPATCH_LANES)

    async def _record(
        self, mailing_id: int, outcomes: list[deliveries.Outcome], claimant: str
    ) -> bool:
        """Records a batch's outcomes, waiting while the database cannot be written; False
        when the engine must give up on them (its claims were handed back, or it stops)."""
        while True:
            try:
                recorded = await self.db.write(
                    lambda session: deliveries.record(
                        session, mailing_id, outcomes, claimant=claimant
                    )
                )
                if not recorded.dropped:
                    self._sent += sum(o.status == deliveries.SENT for o in outcomes)
                    self.metrics.recorded(outcomes)
                break
            except StoreError as exc:
                self._report_database_trouble("record", exc)
                if self._draining or claimant != self.claimant:
                    return False  # left in flight: handed back in doubt
                await self._pause(1.0)
        self._report_database_trouble("record", None)
        if recorded.check_guard:
            await self._guard(mailing_id)
        if recorded.dropped:
            # the leader handed the claims back (this engine stalled past its heartbeat),
            # or the mailing is gone: either way this dispatcher's view is stale
            log.error(
                "mailing %s: %d outcomes not recorded: their claims are no longer this"
                " engine's; it stops sending them",
                mailing_id,
                recorded.dropped,
            )
            return False
        return True

    async def _guard(self, mailing_id: int) -> None:
        """Stops the mailing if the relay refused too many of its last recipients (core/
        model/guard.py); the dispatcher then finds it stopped at its next claim."""
        try:
            reason = await self.db.write(lambda session: guard.check_refusals(session, mailing_id))
        except StoreError as exc:
            self._report_database_trouble("guard", exc)  # the next batch with refusals checks
            return
        self._report_database_trouble("guard", None)
        if reason is not None:
            log.error("mailing %s: %s", mailing_id, reason)
            self._stopping(mailing_id).set()

    # --- steps of the lifecycle, fenced -------------------------------------------------

    async def _step(
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

        def fenced(session: Session) -> None:
            lock_transitions(session)  # first (the lock order: core/store/locks.py)
            if generation is None:
                heartbeats.check_claimant(session, self.holder, claimant or self.claimant)
            else:
                lease.check(session, self.holder, generation)
            operation(session, mailing_id, *args)

        try:
            await self.db.write(fenced)
            self._report_database_trouble("step", None)
            return True
        except (TransitionRefused, lifecycle.MailingNotFound) as exc:
            log.info("mailing %s: %s", mailing_id, exc)
        except (LeaseLost, ClaimantLost) as exc:
            log.error("%s", exc)
        except StoreError as exc:
            self._report_database_trouble("step", exc)
        return False

    async def _interrupt(self, claimant: str, mailing_id: int, reason: str) -> None:
        """The relay refuses us: the mailing waits in Sends to schedule with the reason."""
        if await self._step(None, lifecycle.interrupt, mailing_id, reason, claimant=claimant):
            log.error("mailing %s: interrupted: %s", mailing_id, reason)

    async def _show_waiting(
        self,
        generation: int | None,
        mailing_id: int,
        reason: str,
        backoff: "RelayBackoff",
        claimant: str | None = None,
    ) -> None:
        """Tells the operator, in the mailing's row, that it waits for its relays, why, and
        when the engine tries again."""
        until = utc_now() + timedelta(seconds=backoff.next_seconds)
        kind = WaitingKind.RELAY_DOWN
        if await self._step(
            generation, deliveries.show_waiting, mailing_id, kind, reason, until, claimant=claimant
        ):
            self._waiting.add(mailing_id)

    async def _clear_waiting(
        self, generation: int | None, mailing_id: int, claimant: str | None = None
    ) -> None:
        if mailing_id in self._waiting and await self._step(
            generation, deliveries.show_waiting, mailing_id, None, claimant=claimant
        ):
            self._waiting.discard(mailing_id)


def _domain_limits(
    session: Session,
) -> tuple[tuple[DomainGroup, ...], list[domain_rate.Throttle]]:
    """The stored domain limits, and the domains throttled now."""
    groups = stored_limits(stored_settings.read(session, "domain_limits"))
    return groups, domain_rate.throttles(session, {g.key: g.per_second for g in groups})


def _slot_due(session: Session, mailing_id: int) -> float | None:
    """When the mailing may claim its next send slot of the stored rate; None: no rate."""
    contracted = shared_rate.contracted(session)
    return None if contracted is None else shared_rate.due(session, contracted, mailing_id)


class RelayBackoff:
    """Waits between attempts to reach a relay that is down, as the retry policy says (1 s,
    doubling, up to a cap)."""

    def __init__(self, retries: RetryPolicy, pause: Callable[[float], Awaitable[None]]):
        self._waits, self._pause = RelayWaits(retries), pause

    @property
    def next_seconds(self) -> float:
        return self._waits.next_seconds

    def reset(self) -> None:
        self._waits.reset()

    async def wait(self, mailing_id: int, trouble: RelayUnavailable | ReplyLost) -> None:
        log.warning(
            "mailing %s: relay unavailable (%s); retrying in %.1f s",
            mailing_id,
            trouble.reply,
            self.next_seconds,
        )
        await self._pause(self._waits.failed())
