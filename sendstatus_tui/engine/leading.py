"""The leader's work, for the engine holding the lease: due mailings started (APScheduler
date jobs, rebuilt from the database, plus a short reconcile as a backstop), the next
sequential mailing promoted, mailings starting up prepared, the claims of engines gone
silent handed back (coordination/rescue.py), abandoned imports removed, alerts told."""

import asyncio
import logging
import time
from datetime import datetime

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from sqlmodel import Session

from sendstatus_tui.core.coordination import deliveries, lease, rescue
from sendstatus_tui.core.coordination.lease import LeaseLost
from sendstatus_tui.core.importing import drafts
from sendstatus_tui.core.model import lifecycle, send_minutes, signing
from sendstatus_tui.core.model.models import utc_now
from sendstatus_tui.core.model.relays import names_of
from sendstatus_tui.core.model.states import State
from sendstatus_tui.core.store.store import Store, StoreError
from sendstatus_tui.engine.alerting import Alerting
from sendstatus_tui.engine.backoff import RelayBackoff
from sendstatus_tui.engine.context import EngineContext
from sendstatus_tui.engine.message import template_of
from sendstatus_tui.engine.pauses import surviving, until
from sendstatus_tui.engine.routes import Routes
from sendstatus_tui.engine.smtp.errors import RelayError
from sendstatus_tui.engine.smtp.verdict import verdict_of
from sendstatus_tui.engine.steps import Steps

log = logging.getLogger("sendstatus.engine")
# how often the leader looks for imports abandoned by a killed process
ABANDONED_IMPORTS_EVERY_SECONDS = 60.0


class Leading:
    def __init__(
        self,
        store: Store,
        context: EngineContext,
        steps: Steps,
        routes: Routes,
        alerting: Alerting,
        wake_senders: asyncio.Event,
    ):
        self.store, self.db, self.settings = store, context.db, context.settings
        self.standing, self.pauses, self.trouble = context.standing, context.pauses, context.trouble
        self.steps, self.routes = steps, routes
        self.alerting, self._wake_senders = alerting, wake_senders
        self.preparing: dict[int, asyncio.Task[None]] = {}  # the leader's starting ups
        # the database may have changed, or a scheduled mailing's time has come
        self.wake = asyncio.Event()
        # a starting up ended, or the last full round failed: the next round is a full one
        self._behind = False
        self.scheduler = AsyncIOScheduler()
        self._last_rescue = 0.0
        self._last_cleanup = 0.0

    async def loop(self) -> None:
        full = True
        while True:
            if self.standing.generation and not self.pauses.draining:
                await surviving(self._lead, self.standing.generation, full or self._behind)
            # a full round when woken; else one each beat for what comes with time alone:
            # engines gone silent, alerts, abandoned imports
            full = await until(self.wake, self.settings.lease_renew_seconds)

    def take(self, generation: int) -> None:
        """This engine leads from now on, under ``generation`` of the lease."""
        if self.standing.generation:
            self.stop()  # another engine led in between: start afresh
        self.standing.generation = generation
        self.wake.set()

    def stop(self) -> None:
        self.standing.generation = 0
        self.alerting.stop()
        for task in self.preparing.values():
            task.cancel()
        for job in self.scheduler.get_jobs():
            job.remove()

    async def _lead(self, generation: int, full: bool) -> None:
        """Brings the database's states in line with the time: claims of silent engines
        handed back; and, in a ``full`` round, due mailings started, the queue promoted, a
        starting up under way for each mailing starting up."""
        active = None
        try:
            if full:
                started = await self.db.write(
                    lambda session: self._start_and_promote(session, generation)
                )
                self._log_started(started)
            if time.monotonic() - self._last_rescue >= self.settings.lease_renew_seconds:
                self._last_rescue = time.monotonic()
                await self._rescue_silent(generation)
            await self.alerting.step(
                lambda session: lease.check(session, self.standing.holder, generation),
                lambda: self.standing.generation == generation,
            )
            if full:
                active = await self.db.read(deliveries.active_mailings)
            if time.monotonic() - self._last_cleanup >= ABANDONED_IMPORTS_EVERY_SECONDS:
                self._last_cleanup = time.monotonic()
                await self._remove_abandoned_imports()
                # a minute's counts older than a day are no screen's any more
                await self.db.write(lambda session: send_minutes.prune(session, utc_now()))
        except LeaseLost as exc:
            log.error("%s", exc)
            if self.standing.generation == generation:
                self.stop()
            return
        except StoreError as exc:
            self.trouble.report("lead", exc)
            self._behind = self._behind or full
            return
        self.trouble.report("lead", None)
        if self.standing.generation != generation or active is None:
            return  # the lease was lost meanwhile, or not a full round
        self._behind = False
        self._sync_start_jobs({m.id: m.scheduled_at for m in active if m.state == State.SCHEDULED})
        starting = {m.id for m in active if m.state == State.STARTING}
        for mailing_id, task in list(self.preparing.items()):
            if task.done():
                del self.preparing[mailing_id]
                if not task.cancelled() and (error := task.exception()) is not None:
                    log.error("mailing %s: starting up failed: %r; trying again", mailing_id, error)
            elif mailing_id not in starting:
                task.cancel()  # stopped or deleted by an operator meanwhile
        for mailing_id in starting - set(self.preparing):
            task = asyncio.create_task(self._prepare(mailing_id))
            task.add_done_callback(self._prepared)
            self.preparing[mailing_id] = task

    def _prepared(self, _task: asyncio.Task[None]) -> None:
        self._behind = True  # prepared, failed, or stopped: looked at next round

    async def _remove_abandoned_imports(self) -> None:
        """Hidden mailings whose import was killed (kill -9, a host down) go away."""
        removed = await asyncio.to_thread(drafts.remove_abandoned_imports, self.store)
        for mailing_id in removed:
            log.warning("mailing %s: its import was abandoned (killed); removed", mailing_id)

    def _start_and_promote(self, session: Session, generation: int) -> list[str]:
        """Starts due mailings and promotes the queue; what to log once committed."""
        lease.check(session, self.standing.holder, generation)
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
            self.trouble.report("rescue", exc)
            return
        self.trouble.report("rescue", None)
        self._log_rescued(handed)

    def _rescue(self, session: Session, generation: int, expired: datetime) -> dict[int, int]:
        """Hands back the claims of engines silent since before ``expired`` (a line drawn
        before the transaction waited for any lock)."""
        lease.check(session, self.standing.holder, generation)
        return rescue.rescue(session, expired, keep=self.standing.holder)

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
        for job in self.scheduler.get_jobs():
            if job.id not in wanted or job.next_run_time != wanted[job.id]:
                job.remove()
        existing = {job.id for job in self.scheduler.get_jobs()}
        for job_id, at in wanted.items():
            assert at is not None  # a scheduled mailing has its time
            if job_id not in existing and at > utc_now():
                self.scheduler.add_job(
                    self.wake.set,
                    "date",
                    run_date=at,
                    id=job_id,
                    misfire_grace_time=None,  # late is better than never
                )

    async def _prepare(self, mailing_id: int) -> None:
        """Starting up: the message checked, the relay reached and the sender accepted."""
        generation = self.standing.generation
        mailing, return_path = await self.db.read(
            lambda session: (deliveries.mailing(session, mailing_id), signing.return_path(session))
        )
        if mailing is None:
            return  # deleted meanwhile
        template = template_of(mailing, return_path)
        backoff = RelayBackoff(self.settings.retry_policy, self.pauses.pause)
        while not self.pauses.draining:
            try:
                await self.routes.check(template.check_sender, names_of(mailing))
                break
            except RelayError as exc:
                trouble = verdict_of(exc)
                if trouble.refuses_us:
                    reason = f"the relay check failed: {trouble.text}"
                    await self.steps.interrupt(generation, mailing_id, reason)
                    return
                await self.steps.show_relay_down(generation, mailing_id, trouble.text, backoff)
                await backoff.wait(mailing_id, trouble.text)
        if self.pauses.draining:
            return
        if await self.steps.step(generation, lifecycle.mark_prepared, mailing_id):
            await self.steps.clear_waiting(generation, mailing_id)
            log.info("mailing %s: prepared, sending", mailing_id)
            self._wake_senders.set()
