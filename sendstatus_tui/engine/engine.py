"""The engine: makes the states true in time, and delivers.

It holds the database's lease, then: starts scheduled mailings at their minute (APScheduler
date jobs, rebuilt from the database, plus a short reconcile job as a backstop), promotes the
next sequential mailing, prepares mailings that are starting up, and runs one dispatcher per
sending mailing. The database is the truth: operators act on it from any process, and the
reconcile job notices within a fraction of a second.

Fencing: every write the engine makes as the leader checks the lease generation it took, in
the same transaction; every record of outcomes checks that the claims are still this
engine's. And since a relay cannot be fenced, no message goes out once the engine's own
clock says its lease may have expired: a stalled engine that wakes up neither sends nor
records what another engine has taken over.
"""

import asyncio
import contextlib
import json
import logging
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypeVarTuple

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from sqlmodel import Session

from ..core import deliveries, lease, lifecycle
from ..core.lease import LeaseLost
from ..core.models import Mailing, utc_now
from ..core.states import State, TransitionRefused
from ..core.store import Store, StoreError
from .message import Template
from .rate import Pace
from .relay_errors import RelayRefused, RelayUnavailable
from .sending import BatchSender, Retries
from .transports import Transport

log = logging.getLogger("sendstatus.engine")
StepArguments = TypeVarTuple("StepArguments")  # what a lifecycle step takes after the id


@dataclass(frozen=True)
class EngineSettings:
    rate_per_second: float | None = None
    batch_size: int = 200  # the most recipients in flight per mailing
    lease_ttl: timedelta = timedelta(seconds=5)
    lease_renew_seconds: float = 1.0
    reconcile_seconds: float = 0.25
    retry_base: timedelta = timedelta(seconds=60)  # first retry after a 4xx
    max_attempts: int = 5
    relay_retry_max_seconds: float = 30.0
    # a stop waits this long, plus one relay timeout, for messages in the relay's hands
    stop_grace_seconds: float = 5.0


class Engine:
    def __init__(self, store: Store, transport: Transport, settings: EngineSettings):
        self.store = store
        self.transport = transport
        self.settings = settings
        self.holder = f"{socket.gethostname()[:64]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.generation = 0  # of the lease, once held
        self.pace = Pace(settings.rate_per_second)
        self.sender = BatchSender(
            transport,
            self.pace,
            Retries(settings.retry_base, settings.max_attempts),
            settings.stop_grace_seconds,
        )
        # mailing id -> its prepare or dispatch task
        self._tasks: dict[int, asyncio.Task[None]] = {}
        # set when a mailing is stopped by an operator, or for all when the engine drains:
        # no new message starts for it
        self._stops: dict[int, asyncio.Event] = {}
        self._waiting: set[int] = set()  # mailings whose row shows a waiting reason
        self._draining = False
        self._drained = asyncio.Event()  # set with _draining, to wake sleepers
        self._lease_lost = asyncio.Event()
        # monotonic time until which the lease is surely ours; no message goes out after it
        self._lease_deadline = 0.0
        self._database_trouble: str | None = None

    @property
    def claimant(self) -> str:
        """Whose claims this engine's recipients carry: one per lease generation."""
        return f"{self.holder}#{self.generation}"

    # --- life cycle ---------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Serves until ``stop`` is set: waits for the lease, then runs the mailings."""
        while not stop.is_set():
            if not await self._wait_for_lease(stop):
                return
            self._lease_lost.clear()
            await self._serve(stop)
            if self._lease_lost.is_set():
                log.error("lost the lease to another engine; paused, waiting to take it back")

    async def _wait_for_lease(self, stop: asyncio.Event) -> bool:
        announced = None
        while not stop.is_set():
            state = self._try_lease()
            if state is not None and state.held:
                log.info("engine %s holds the lease (generation %s)", self.holder, self.generation)
                return True
            if state is not None and announced != state.holder:
                log.warning(
                    "another engine (%s) holds the lease until %s; waiting for it to stop",
                    state.holder,
                    state.expires_at.isoformat(timespec="seconds"),
                )
                announced = state.holder
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.settings.lease_renew_seconds)
        return False

    def _try_lease(self) -> lease.LeaseState | None:
        """Takes or renews the lease; None when the database cannot be written."""
        began = time.monotonic()
        try:
            with self.store.write() as session:
                state = lease.acquire(session, self.holder, self.settings.lease_ttl)
        except StoreError as exc:
            self._report_database_trouble(exc)
            return None
        self._report_database_trouble(None)
        if state.held:
            if not self.generation:
                self.generation = state.generation
            if state.generation == self.generation:
                # surely ours until the ttl has passed since before we asked, minus a margin
                # for a write that took long to commit
                margin = self.settings.lease_renew_seconds
                self._lease_deadline = began + self.settings.lease_ttl.total_seconds() - margin
        return state

    async def _serve(self, stop: asyncio.Event) -> None:
        try:
            with self._as_leader() as session:
                in_doubt = deliveries.hand_back_claims(session)
        except (LeaseLost, StoreError) as exc:
            log.error("cannot start serving: %s", exc)
            self._new_generation()
            return
        for mailing_id, count in in_doubt.items():
            log.warning(
                "mailing %s: %s recipients were in flight when the last engine stopped;"
                " they are sent again (counted as resent_in_doubt)",
                mailing_id,
                count,
            )
        self._draining = False
        self._drained.clear()
        scheduler = AsyncIOScheduler()
        scheduler.add_job(
            self._reconcile, "interval", seconds=self.settings.reconcile_seconds, id="reconcile"
        )
        scheduler.add_job(
            self._renew_lease,
            "interval",
            seconds=self.settings.lease_renew_seconds,
            id="lease",
            misfire_grace_time=None,  # after a stall, renew (or learn of the loss) at once
            coalesce=True,
        )
        self._scheduler = scheduler
        scheduler.start()
        try:
            await self._reconcile()
            stopped = asyncio.create_task(stop.wait())
            lost = asyncio.create_task(self._lease_lost.wait())
            await asyncio.wait([stopped, lost], return_when=asyncio.FIRST_COMPLETED)
            stopped.cancel()
            lost.cancel()
        finally:
            self._draining = True  # jobs still queued in the scheduler do nothing now
            scheduler.pause()
            await asyncio.sleep(0)  # let already submitted jobs finish before shutdown
            scheduler.shutdown(wait=False)
            await self._drain(cancel=self._lease_lost.is_set())
            await self.transport.close()
            if not self._lease_lost.is_set():
                self._hand_back_and_release()
            self._new_generation()

    def _new_generation(self) -> None:
        """Forgets the lease generation: the next one taken starts a fresh claimant."""
        self.generation = 0
        self._lease_deadline = 0.0

    def _hand_back_and_release(self) -> None:
        try:
            with self._as_leader() as session:
                left = deliveries.hand_back_claims(session, self.claimant)
                lease.release(session, self.holder)
        except (LeaseLost, StoreError) as exc:
            log.error("engine stopped without releasing the lease: %s", exc)
            return
        for mailing_id, count in left.items():
            log.warning("mailing %s: %s unanswered sends handed back in doubt", mailing_id, count)
        log.info("engine stopped; lease released")

    async def _drain(self, cancel: bool) -> None:
        """Lets every task finish and record what the relay answered, within the stop
        bound; cancels them at once when the lease is lost (nothing more may be written)."""
        self._draining = True
        self._drained.set()
        for event in self._stops.values():
            event.set()
        tasks = list(self._tasks.values())
        if cancel:
            for task in tasks:
                task.cancel()
        elif tasks:
            # sends are bounded by the sender; a relay check hanging at starting up is not
            _, late = await asyncio.wait(tasks, timeout=self.sender.stop_bound + 1)
            for task in late:
                task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()
        self._stops.clear()
        self._waiting.clear()

    async def _renew_lease(self) -> None:
        state = self._try_lease()
        if state is not None and (not state.held or state.generation != self.generation):
            self._lease_lost.set()

    def _may_hand_over(self, mailing_id: int) -> bool:
        """A message may go to the relay: neither stopped nor draining, the lease surely ours."""
        return (
            not self._draining
            and not self._stopping(mailing_id).is_set()
            and time.monotonic() < self._lease_deadline
        )

    def _stopping(self, mailing_id: int) -> asyncio.Event:
        return self._stops.setdefault(mailing_id, asyncio.Event())

    # --- the database -------------------------------------------------------------------

    @contextlib.contextmanager
    def _as_leader(self) -> Iterator[Session]:
        """A write transaction that commits only while this engine still holds its lease."""
        with self.store.write() as session:
            lease.check(session, self.holder, self.generation)
            yield session

    def _lost(self, exc: LeaseLost) -> None:
        """Learnt in a write that the lease is another engine's: stop serving at once."""
        log.error("%s", exc)
        self._lease_lost.set()

    def _report_database_trouble(self, exc: Exception | None) -> None:
        """Logs once when writes start to fail, and once when they work again."""
        reason = None if exc is None else str(exc)
        if reason == self._database_trouble:
            return
        if reason is None:
            log.warning("the database works again; going on")
        else:
            log.error("%s; retrying", reason)
        self._database_trouble = reason

    # --- timing -------------------------------------------------------------------------

    async def _reconcile(self) -> None:
        """Brings the engine in line with the database: due mailings started, the queue
        promoted, a task per starting or sending mailing, none for the others."""
        if self._draining:
            return
        now = utc_now()
        try:
            with self._as_leader() as session:
                for mailing in lifecycle.start_due(session, now):
                    log.info(
                        "mailing %s %r: its time has come, starting up", mailing.id, mailing.name
                    )
                promoted = lifecycle.promote_head(session, now)
                if promoted is not None:
                    log.info(
                        "mailing %s %r: next in the sequential queue, starting up",
                        promoted.id,
                        promoted.name,
                    )
        except LeaseLost as exc:
            self._lost(exc)
            return
        except StoreError as exc:
            self._report_database_trouble(exc)
        try:
            with self.store.read() as session:
                active = deliveries.active_mailings(session)
        except StoreError as exc:
            self._report_database_trouble(exc)
            return
        self._sync_start_jobs({m.id: m.scheduled_at for m in active if m.state == State.SCHEDULED})
        running = {m.id: m.state for m in active if m.state != State.SCHEDULED}
        for mailing_id, task in list(self._tasks.items()):
            if task.done():
                del self._tasks[mailing_id]
                self._stops.pop(mailing_id, None)
                self._waiting.discard(mailing_id)
                if not task.cancelled() and (error := task.exception()) is not None:
                    self._after_crash(mailing_id, error)
            elif mailing_id not in running:
                # stopped by an operator: messages in the relay's hands finish (and count as
                # sent), the others are handed back untried
                self._stopping(mailing_id).set()
        for mailing_id, state in running.items():
            if mailing_id not in self._tasks:
                work = self._prepare if state == State.STARTING else self._dispatch
                self._stops[mailing_id] = asyncio.Event()
                self._tasks[mailing_id] = asyncio.create_task(work(mailing_id))

    def _after_crash(self, mailing_id: int, error: BaseException) -> None:
        """A task ended with an unforeseen error: its claims go back, in doubt, and the
        next reconcile starts it again."""
        log.error("mailing %s: sending failed: %r; starting again", mailing_id, error)
        with contextlib.suppress(LeaseLost, StoreError), self._as_leader() as session:
            deliveries.hand_back_claims(session, self.claimant, mailing_id)

    def _sync_start_jobs(self, scheduled: dict[int, datetime | None]) -> None:
        """One date job per scheduled mailing, at its time; none for any other."""
        wanted = {f"start:{m_id}": at for m_id, at in scheduled.items()}
        for job in self._scheduler.get_jobs():
            if job.id.startswith("start:") and (
                job.id not in wanted or job.next_run_time != wanted[job.id]
            ):
                job.remove()
        existing = {job.id for job in self._scheduler.get_jobs()}
        for job_id, at in wanted.items():
            assert at is not None  # a scheduled mailing has its time
            if job_id not in existing and at > utc_now():
                self._scheduler.add_job(
                    self._reconcile,
                    "date",
                    run_date=at,
                    id=job_id,
                    misfire_grace_time=None,  # late is better than never
                )

    # --- starting up --------------------------------------------------------------------

    async def _prepare(self, mailing_id: int) -> None:
        """Starting up: the message checked, the relay reached and the sender accepted."""
        with self.store.read() as session:
            mailing = deliveries.mailing(session, mailing_id)
        if mailing is None:
            return  # deleted meanwhile
        template = _template(mailing)
        backoff = RelayBackoff(self.settings.relay_retry_max_seconds, self._pause)
        stopping = self._stopping(mailing_id)
        while not self._draining and not stopping.is_set():
            try:
                await self.transport.check(template.sender_address)
                break
            except RelayRefused as refusal:
                self._interrupt(mailing_id, f"the relay check failed: {refusal.reply}")
                return
            except RelayUnavailable as trouble:
                self._show_waiting(mailing_id, trouble.reply, backoff.next_seconds)
                await backoff.wait(mailing_id, trouble)
        if self._draining or stopping.is_set():
            return
        if not self._lifecycle(lifecycle.mark_prepared, mailing_id):
            return
        self._clear_waiting(mailing_id)
        log.info("mailing %s: prepared, sending", mailing_id)
        await self._dispatch(mailing_id, template)

    # --- sending ------------------------------------------------------------------------

    async def _dispatch(self, mailing_id: int, template: Template | None = None) -> None:
        if template is None:
            with self.store.read() as session:
                mailing = deliveries.mailing(session, mailing_id)
            if mailing is None:
                return  # deleted meanwhile
            template = _template(mailing)
        backoff = RelayBackoff(self.settings.relay_retry_max_seconds, self._pause)
        stopping = self._stopping(mailing_id)
        claimant = self.claimant  # a dispatcher lives within one lease generation
        while not self._draining and not stopping.is_set():
            if time.monotonic() >= self._lease_deadline:
                await self._pause(0.2)  # the lease may have expired: wait for its renewal
                continue
            try:
                batch, done = self._claim(mailing_id, claimant)
            except LeaseLost as exc:
                self._lost(exc)
                return
            except StoreError as exc:
                self._report_database_trouble(exc)
                await self._pause(1.0)
                continue
            if done:
                return
            if not batch:  # only deferred recipients left, waiting for their retry time
                await self._pause(min(1.0, self.settings.retry_base.total_seconds()))
                continue
            outcomes, trouble = await self.sender.send(
                template, batch, lambda: self._may_hand_over(mailing_id), stopping
            )
            if not await self._record(mailing_id, outcomes, claimant):
                return
            if isinstance(trouble, RelayRefused):
                self._interrupt(mailing_id, trouble.reply)
                return
            if isinstance(trouble, RelayUnavailable):
                self._show_waiting(mailing_id, trouble.reply, backoff.next_seconds)
                await backoff.wait(mailing_id, trouble)
            else:
                backoff.reset()
                self._clear_waiting(mailing_id)

    def _claim(self, mailing_id: int, claimant: str) -> tuple[list[deliveries.Claimed], bool]:
        """The next batch, and whether the mailing is done (stopped, or completed now)."""
        with self._as_leader() as session:
            mailing = deliveries.mailing(session, mailing_id)
            if mailing is None or mailing.state != State.SENDING:
                return [], True  # stopped by an operator
            batch = deliveries.claim(session, mailing_id, self._batch_size(), claimant=claimant)
            if not batch and mailing.remaining == 0:
                lifecycle.complete(session, mailing_id)
                log.info("mailing %s: completed", mailing_id)
                return [], True
        return batch, False

    async def _record(
        self, mailing_id: int, outcomes: list[deliveries.Outcome], claimant: str
    ) -> bool:
        """Records a batch's outcomes, waiting while the database cannot be written; False
        when the engine must give up on them (it lost its lease, or is stopping)."""
        while True:
            try:
                with self.store.write() as session:
                    recorded = deliveries.record(session, mailing_id, outcomes, claimant=claimant)
                break
            except StoreError as exc:
                self._report_database_trouble(exc)
                if self._draining or self._lease_lost.is_set():
                    return False  # left in flight: the next leader hands them back in doubt
                await self._pause(1.0)
        self._report_database_trouble(None)
        if recorded.dropped:
            # another engine handed the claims back (this one stalled past its lease), or
            # the mailing is gone: either way this dispatcher's view is stale
            log.error(
                "mailing %s: %d outcomes not recorded: their claims are no longer this"
                " engine's; it stops sending them",
                mailing_id,
                recorded.dropped,
            )
            return False
        return True

    def _batch_size(self) -> int:
        # about a second's worth at the contracted rate, so that stopping is quick
        per_second = self.settings.rate_per_second
        size = self.settings.batch_size if not per_second else int(per_second)
        # and enough to keep the relay's connections busy, up to the configured most
        return min(self.settings.batch_size, max(self.transport.capacity, size))

    async def _pause(self, seconds: float) -> None:
        """Sleeps, but wakes at once when the engine is told to stop."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._drained.wait(), seconds)

    def _interrupt(self, mailing_id: int, reason: str) -> None:
        """The relay refuses us: the mailing waits in Sends to schedule with the reason."""
        if self._lifecycle(lifecycle.interrupt, mailing_id, reason):
            log.error("mailing %s: interrupted: %s", mailing_id, reason)

    def _lifecycle(
        self,
        operation: Callable[[Session, int, *StepArguments], object],
        mailing_id: int,
        *args: *StepArguments,
    ) -> bool:
        """Applies a lifecycle step as the leader; False when it did not happen (an operator
        changed the state first, the lease is lost, the database cannot be written)."""
        try:
            with self._as_leader() as session:
                operation(session, mailing_id, *args)
            return True
        except (TransitionRefused, lifecycle.MailingNotFound) as exc:
            log.info("mailing %s: %s", mailing_id, exc)
        except LeaseLost as exc:
            self._lost(exc)
        except StoreError as exc:
            self._report_database_trouble(exc)
        return False

    def _show_waiting(self, mailing_id: int, reason: str, seconds: float) -> None:
        """Tells the operator, in the mailing's row, what the engine is waiting for."""
        until = utc_now() + timedelta(seconds=seconds)
        if self._lifecycle(deliveries.show_waiting, mailing_id, reason, until):
            self._waiting.add(mailing_id)

    def _clear_waiting(self, mailing_id: int) -> None:
        if mailing_id in self._waiting and self._lifecycle(
            deliveries.show_waiting, mailing_id, None, None
        ):
            self._waiting.discard(mailing_id)


def _template(mailing: Mailing) -> Template:
    assert mailing.id is not None
    return Template(
        mailing_id=mailing.id,
        subject=mailing.subject,
        sender=mailing.sender,
        text_body=mailing.text_body,
        html_body=mailing.html_body,
        field_names=tuple(json.loads(mailing.field_names)),
    )


class RelayBackoff:
    """Waits between attempts to reach a relay that is down: 1 s, doubling, up to a cap."""

    def __init__(self, cap_seconds: float, pause: Callable[[float], Awaitable[None]]):
        self._cap, self._pause = cap_seconds, pause
        self.reset()

    def reset(self) -> None:
        self.next_seconds = min(1.0, self._cap)

    async def wait(self, mailing_id: int, trouble: RelayUnavailable) -> None:
        log.warning(
            "mailing %s: relay unavailable (%s); retrying in %.1f s",
            mailing_id,
            trouble.reply,
            self.next_seconds,
        )
        await self._pause(self.next_seconds)
        self.next_seconds = min(self.next_seconds * 2, self._cap)
