"""Alerts, told by the leading engine: the incidents of core/coordination/incidents.py, each
as one JSON event, to ``alert_command`` (on its stdin) and/or ``alert_webhook`` (a POST).

Anyone who can write the database can set ``alert_command``: an engine runs it only when
started with ``--allow-alert-command``. A command or webhook that fails or hangs is logged
and given up after 10 s (``SENDSTATUS_ALERT_TIMEOUT_SECONDS``, headless.py); telling runs
beside the leading and the sending, never in their way.
"""

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from sqlmodel import Session

from sendstatus_tui.core.coordination import incidents
from sendstatus_tui.core.coordination.incidents import Alert, Progress
from sendstatus_tui.core.model import settings
from sendstatus_tui.core.model.models import utc_now
from sendstatus_tui.engine.database import EngineDatabase

log = logging.getLogger("sendstatus.engine")

ALERTS_EVERY_SECONDS = 5.0  # how often the leader looks for incidents


@dataclass(frozen=True)
class Targets:
    command: str | None
    webhook: str | None


class Alerting:
    def __init__(self, db: EngineDatabase, allow_command: bool, timeout_seconds: float):
        self.db = db
        self.allow_command = allow_command
        self.timeout_seconds = timeout_seconds  # the longest a command or a webhook may take
        self.host = socket.gethostname()
        self._progress = Progress({})
        self._last_pass = 0.0
        self._telling: asyncio.Task[None] | None = None
        self._said_not_allowed = False

    async def step(
        self, check_lead: Callable[[Session], None], leading: Callable[[], bool]
    ) -> None:
        """A pass, every few seconds, of the leader: incidents opened and ended, and those
        due told in the background. ``check_lead`` raises if the lease was lost;
        ``leading`` says whether it still leads, before each alert is told."""
        if time.monotonic() - self._last_pass < ALERTS_EVERY_SECONDS:
            return
        self._last_pass = time.monotonic()
        if self._telling is not None and not self._telling.done():
            return  # the last ones are still being told: they are due again next pass
        alerts, targets = await self.db.write(lambda session: self._pass(session, check_lead))
        if alerts:
            self._telling = asyncio.create_task(self._tell(alerts, targets, leading))

    def stop(self) -> None:
        """No longer leading: what is being told stops (the next leader tells the rest)."""
        if self._telling is not None:
            self._telling.cancel()
        self._progress = Progress({})

    def _pass(
        self, session: Session, check_lead: Callable[[Session], None]
    ) -> tuple[list[Alert], Targets]:
        check_lead(session)
        now = utc_now()
        incidents.reconcile(session, incidents.troubles(session, now, self._progress), now)
        targets = Targets(
            settings.read(session, "alert_command"), settings.read(session, "alert_webhook")
        )
        return incidents.to_tell(session, now), targets

    async def _tell(
        self, alerts: list[Alert], targets: Targets, leading: Callable[[], bool]
    ) -> None:
        for alert in alerts:
            if not leading():
                return
            event = json.dumps(alert.as_json(self.host)).encode()
            what = f"alert {alert.kind} ({'ended' if alert.ended else 'open'})"
            log.warning("%s: %s", what, alert.reason)
            if targets.command is not None:
                await self._run_command(targets.command, event, what)
            if targets.webhook is not None:
                await self._post(targets.webhook, event, what)
            await self.db.write(partial(incidents.told, alert=alert))

    async def _run_command(self, command: str, event: bytes, what: str) -> None:
        if not self.allow_command:
            if not self._said_not_allowed:
                log.warning(
                    "alert_command is set, but this engine was not started with"
                    " --allow-alert-command: it does not run it"
                )
                self._said_not_allowed = True
            return
        process = await asyncio.create_subprocess_exec(
            "/bin/sh",
            "-c",
            command,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            # a group of its own: killed, the command goes with whatever it started
            start_new_session=True,
        )
        try:
            async with asyncio.timeout(self.timeout_seconds):
                _, errors = await process.communicate(event)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            await process.wait()
            log.error("%s: alert_command ran over %g s: killed", what, self.timeout_seconds)
            return
        if process.returncode != 0:
            said = errors.decode(errors="replace").strip().splitlines()[-1:] or [""]
            log.error("%s: alert_command failed (exit %s) %s", what, process.returncode, said[0])

    async def _post(self, url: str, event: bytes, what: str) -> None:
        import aiohttp  # a third of a second to import: paid by an engine only if it posts

        timeout = aiohttp.ClientTimeout(total=self.timeout_seconds)
        try:
            async with (
                aiohttp.ClientSession(timeout=timeout) as client,
                client.post(
                    url, data=event, headers={"Content-Type": "application/json"}
                ) as response,
            ):
                if response.status >= 300:
                    log.error("%s: alert_webhook answered %s", what, response.status)
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.error("%s: alert_webhook %s: %s", what, url, exc or type(exc).__name__)
