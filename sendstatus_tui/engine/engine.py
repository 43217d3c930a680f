"""The engine: makes the states true in time, and delivers.

It holds the database's lease, then: starts scheduled mailings at their minute (APScheduler
date jobs, rebuilt from the database, plus a short reconcile job as a backstop), promotes the
next sequential mailing, prepares mailings that are starting up, and runs one dispatcher per
sending mailing. The database is the truth: operators act on it from any process, and the
reconcile job notices within a fraction of a second.
"""

import asyncio
import contextlib
import json
import logging
import os
import socket
import uuid
from dataclasses import dataclass
from datetime import timedelta

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from sqlmodel import select

from ..core import deliveries, lease, lifecycle
from ..core.deliveries import Claimed, Outcome
from ..core.models import Mailing, utc_now
from ..core.states import State, TransitionRefused
from ..core.store import Store
from .message import Template, render
from .rate import Pace
from .transports import (
    PermanentFailure,
    RelayRefused,
    RelayUnavailable,
    TemporaryFailure,
    Transport,
)

log = logging.getLogger("sendstatus.engine")


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


class Engine:
    def __init__(self, store: Store, transport: Transport, settings: EngineSettings):
        self.store = store
        self.transport = transport
        self.settings = settings
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.pace = Pace(settings.rate_per_second)
        self._tasks: dict[int, asyncio.Task] = {}  # mailing id -> its prepare or dispatch task
        # mailings an operator stopped while their task ran: no new message starts for them
        self._halted: set[int] = set()
        # a send waits for a free relay connection before it takes its turn at the pace, so
        # that turns do not pile up while the relay is slow and go out in a burst later
        self._slots = asyncio.Semaphore(transport.pool_size)
        self._draining = False
        self._drained = asyncio.Event()  # set with _draining, to wake sleepers
        self._lease_lost = asyncio.Event()

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
            with self.store.write() as session:
                state = lease.acquire(session, self.holder, self.settings.lease_ttl)
            if state.held:
                log.info("engine %s holds the lease", self.holder)
                return True
            if announced != state.holder:
                log.warning(
                    "another engine (%s) holds the lease until %s; waiting for it to stop",
                    state.holder,
                    state.expires_at.isoformat(timespec="seconds"),
                )
                announced = state.holder
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.settings.lease_renew_seconds)
        return False

    async def _serve(self, stop: asyncio.Event) -> None:
        with self.store.write() as session:
            in_doubt = deliveries.recover_in_flight(session)
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
            self._renew_lease, "interval", seconds=self.settings.lease_renew_seconds, id="lease"
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
                with self.store.write() as session:
                    lease.release(session, self.holder)
                log.info("engine stopped; lease released")

    async def _drain(self, cancel: bool) -> None:
        """Lets every dispatcher finish and record its batch in flight (or cancels them)."""
        self._draining = True
        self._drained.set()
        tasks = list(self._tasks.values())
        if cancel:
            for task in tasks:
                task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()

    async def _renew_lease(self) -> None:
        with self.store.write() as session:
            state = lease.acquire(session, self.holder, self.settings.lease_ttl)
        if not state.held:
            self._lease_lost.set()

    # --- timing -------------------------------------------------------------------------

    async def _reconcile(self) -> None:
        """Brings the engine in line with the database: due mailings started, the queue
        promoted, a task per starting or sending mailing, none for the others."""
        if self._draining:
            return
        now = utc_now()
        with self.store.write() as session:
            for mailing in lifecycle.start_due(session, now):
                log.info("mailing %s %r: its time has come, starting up", mailing.id, mailing.name)
            promoted = lifecycle.promote_head(session, now)
            if promoted is not None:
                log.info(
                    "mailing %s %r: next in the sequential queue, starting up",
                    promoted.id,
                    promoted.name,
                )
        with self.store.read() as session:
            active = session.exec(
                select(Mailing.id, Mailing.state, Mailing.scheduled_at).where(
                    Mailing.state.in_([State.SCHEDULED, State.STARTING, State.SENDING])
                )
            ).all()
        self._sync_start_jobs({m_id: at for m_id, state, at in active if state == State.SCHEDULED})
        running = {m_id: state for m_id, state, _ in active if state != State.SCHEDULED}
        for mailing_id, task in list(self._tasks.items()):
            if task.done():
                del self._tasks[mailing_id]
                self._halted.discard(mailing_id)
            elif mailing_id not in running:
                # stopped by an operator: messages in the relay's hands finish (and count as
                # sent), the others are handed back untried
                self._halted.add(mailing_id)
        for mailing_id, state in running.items():
            if mailing_id not in self._tasks:
                work = self._prepare if state == State.STARTING else self._dispatch
                self._tasks[mailing_id] = asyncio.create_task(work(mailing_id))

    def _sync_start_jobs(self, scheduled: dict) -> None:
        """One date job per scheduled mailing, at its time; none for any other."""
        wanted = {f"start:{m_id}": at for m_id, at in scheduled.items()}
        for job in self._scheduler.get_jobs():
            if job.id.startswith("start:") and (
                job.id not in wanted or job.next_run_time != wanted[job.id]
            ):
                job.remove()
        existing = {job.id for job in self._scheduler.get_jobs()}
        for job_id, at in wanted.items():
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
            mailing = session.get(Mailing, mailing_id)
            template = _template(mailing)
        backoff = RelayBackoff(self.settings.relay_retry_max_seconds, self._pause)
        while not self._draining and mailing_id not in self._halted:
            try:
                await self.transport.check(template.sender_address)
                break
            except RelayRefused as refusal:
                self._interrupt(mailing_id, refusal.reply)
                return
            except RelayUnavailable as trouble:
                await backoff.wait(mailing_id, trouble)
        if (
            self._draining
            or mailing_id in self._halted
            or not self._write(lifecycle.mark_prepared, mailing_id)
        ):
            return
        log.info("mailing %s: prepared, sending", mailing_id)
        await self._dispatch(mailing_id, template)

    # --- sending ------------------------------------------------------------------------

    async def _dispatch(self, mailing_id: int, template: Template | None = None) -> None:
        if template is None:
            with self.store.read() as session:
                template = _template(session.get(Mailing, mailing_id))
        backoff = RelayBackoff(self.settings.relay_retry_max_seconds, self._pause)
        while not self._draining:
            with self.store.write() as session:
                mailing = session.get(Mailing, mailing_id)
                if mailing is None or mailing.state != State.SENDING:
                    return  # stopped by an operator
                batch = deliveries.claim(session, mailing_id, self._batch_size())
                if not batch and mailing.remaining == 0:
                    lifecycle.complete(session, mailing_id)
                    log.info("mailing %s: completed", mailing_id)
                    return
            if not batch:  # only deferred recipients left, waiting for their retry time
                await self._pause(min(1.0, self.settings.retry_base.total_seconds()))
                continue
            outcomes, trouble = await self._send_batch(template, batch)
            with self.store.write() as session:
                deliveries.record(session, mailing_id, outcomes)
            if isinstance(trouble, RelayRefused):
                self._interrupt(mailing_id, trouble.reply)
                return
            if isinstance(trouble, RelayUnavailable):
                await backoff.wait(mailing_id, trouble)
            else:
                backoff.reset()

    def _batch_size(self) -> int:
        # about a second's worth at the contracted rate, so that stopping is quick
        per_second = self.settings.rate_per_second
        size = self.settings.batch_size if not per_second else int(per_second)
        return max(self.transport.pool_size, min(size, self.settings.batch_size))

    async def _send_batch(
        self, template: Template, batch: list[Claimed]
    ) -> tuple[list[Outcome], Exception | None]:
        """Sends a batch; every recipient comes back with an outcome, also on cancel."""
        sends = [asyncio.create_task(self._send_one(template, r)) for r in batch]
        try:
            await asyncio.gather(*sends, return_exceptions=True)
        except asyncio.CancelledError:
            for send in sends:
                send.cancel()
            await asyncio.gather(*sends, return_exceptions=True)
            self._record_after_cancel(template.mailing_id, batch, sends)
            raise
        outcomes, trouble = [], None
        for send in sends:
            outcome, problem = send.result()
            outcomes.append(outcome)
            trouble = trouble or problem
        return outcomes, trouble

    def _record_after_cancel(self, mailing_id, batch, sends) -> None:
        outcomes = [
            send.result()[0]
            if send.done() and not send.cancelled()
            else Outcome(recipient, deliveries.PENDING)
            for recipient, send in zip(batch, sends, strict=True)
        ]
        with self.store.write() as session:
            deliveries.record(session, mailing_id, outcomes)

    async def _send_one(
        self, template: Template, recipient: Claimed
    ) -> tuple[Outcome, Exception | None]:
        try:
            message = render(template, recipient.id, recipient.email, recipient.field_values)
        except (KeyError, ValueError, UnicodeError) as exc:
            return Outcome(recipient, deliveries.FAILED, f"cannot build the message: {exc}"), None
        async with self._slots:
            if template.mailing_id not in self._halted:
                await self.pace.wait_turn()
            if template.mailing_id in self._halted:
                return Outcome(recipient, deliveries.PENDING), None
            return await self._hand_over(template, recipient, message)

    async def _hand_over(
        self, template: Template, recipient: Claimed, message: bytes
    ) -> tuple[Outcome, Exception | None]:
        try:
            reply = await self.transport.send(template.sender_address, recipient.email, message)
        except TemporaryFailure as exc:
            return self._deferred(recipient, exc.reply), None
        except PermanentFailure as exc:
            return Outcome(recipient, deliveries.FAILED, exc.reply), None
        except (RelayUnavailable, RelayRefused) as exc:
            return Outcome(recipient, deliveries.PENDING), exc
        except Exception as exc:  # noqa: BLE001  an unforeseen relay error must not lose anyone
            log.exception("unexpected error sending to recipient %s", recipient.id)
            return Outcome(recipient, deliveries.PENDING), RelayUnavailable(repr(exc))
        return Outcome(recipient, deliveries.SENT, reply), None

    def _deferred(self, recipient: Claimed, reply: str) -> Outcome:
        attempt = recipient.attempts + 1
        if attempt >= self.settings.max_attempts:
            return Outcome(
                recipient, deliveries.FAILED, f"gave up after {attempt} attempts: {reply}"
            )
        retry_at = utc_now() + deliveries.back_off(attempt, self.settings.retry_base)
        return Outcome(recipient, deliveries.DEFERRED, reply, retry_at)

    async def _pause(self, seconds: float) -> None:
        """Sleeps, but wakes at once when the engine is told to stop."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._drained.wait(), seconds)

    def _interrupt(self, mailing_id: int, reason: str) -> None:
        """The relay refuses us: the mailing waits in Sends to schedule with the reason."""
        self._write(lifecycle.interrupt, mailing_id, reason)
        log.error("mailing %s: interrupted: %s", mailing_id, reason)

    def _write(self, operation, mailing_id: int, *args) -> bool:
        """Applies a lifecycle step; False when an operator changed the state first."""
        try:
            with self.store.write() as session:
                operation(session, mailing_id, *args)
            return True
        except (TransitionRefused, lifecycle.MailingNotFound) as exc:
            log.info("mailing %s: %s", mailing_id, exc)
            return False


def _template(mailing: Mailing) -> Template:
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

    def __init__(self, cap_seconds: float, pause):
        self._cap, self._pause = cap_seconds, pause
        self.reset()

    def reset(self) -> None:
        self._next = min(1.0, self._cap)

    async def wait(self, mailing_id: int, trouble: RelayUnavailable) -> None:
        log.warning(
            "mailing %s: relay unavailable (%s); retrying in %.1f s",
            mailing_id,
            trouble.reply,
            self._next,
        )
        await self._pause(self._next)
        self._next = min(self._next * 2, self._cap)
