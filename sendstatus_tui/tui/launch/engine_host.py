"""The engine a dashboard runs: started when no engine holds the lease, at opening and
again whenever the engine that held it stops, through the relay given with ``--smtp`` or
else the relays stored in the database (``sendstatus relay``), which it follows."""

import logging
import os
import threading
from pathlib import Path

from sendstatus_tui.core.coordination import lease
from sendstatus_tui.core.model import relays
from sendstatus_tui.core.model.models import utc_now
from sendstatus_tui.core.store.store import Store, make_private_folder
from sendstatus_tui.engine.engine import Engine
from sendstatus_tui.engine.settings import EngineSettings
from sendstatus_tui.engine.smtp.credentials import load_credentials
from sendstatus_tui.engine.thread import EngineThread
from sendstatus_tui.engine.transports import Transport, transport_for
from sendstatus_tui.errors import mask_url

log = logging.getLogger("sendstatus.dashboard")
DEFAULT_MAILDIR = "the default maildir"


class EngineHost:
    def __init__(
        self,
        store: Store,
        *,
        relay_override: str | None,
        rate_per_second: float | None,
        transport: tuple[str, Transport] | None = None,
    ):
        self.store = store
        self.relay_override = relay_override
        self.rate_per_second = rate_per_second
        self._fixed_transport = transport  # (what it is, the transport): the demo's maildir
        self.engine: EngineThread | None = None
        self._starting = threading.Lock()

    def start_if_free(self) -> EngineThread | None:
        """Starts an engine here unless one runs here or another holds the lease; returns
        the engine it started (None: none was needed). Safe from any thread."""
        with self._starting:
            if (self.engine is not None and self.engine.alive) or self._lease_taken():
                return None
            relay, transport = self._relay()
            engine = Engine(self.store, transport, EngineSettings(self.rate_per_second))
            log.info("starting an engine in this dashboard: relay %s", relay)
            self.engine = EngineThread(engine, relay=relay).start()
            return self.engine

    def _relay(self) -> tuple[str, Transport | None]:
        """What the engine sends through: the demo's maildir, ``--smtp``, else (None) the
        relays stored in the database, which the engine follows as they change."""
        if self._fixed_transport is not None:
            return self._fixed_transport
        if self.relay_override:
            url = self.relay_override
            return mask_url(url), transport_for(url, load_credentials())
        with self.store.read() as session:
            stored = relays.all_relays(session)
        if not stored:
            return DEFAULT_MAILDIR, None
        if len(stored) == 1:
            return mask_url(stored[0].url), None
        return f"relays {', '.join(r.name for r in stored)} (stored, followed)", None

    def _lease_taken(self) -> bool:
        with self.store.read() as session:
            current = lease.current(session)
        return current is not None and current.expires_at > utc_now()


def log_engine_to(path: Path) -> None:
    """The engine logs to a file: the terminal belongs to the dashboard. It names
    recipients: made readable by its owner only (0600, in folders made 0700)."""
    make_private_folder(path.parent)
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600))
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    engine_log = logging.getLogger("sendstatus")
    engine_log.addHandler(handler)
    engine_log.setLevel(logging.INFO)
