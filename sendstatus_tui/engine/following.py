"""The stored relays and domain limits, followed as they change: the routes brought in
line with the relays, the domain limits with the setting and the domains throttled now."""

import time

from sqlmodel import Session

from sendstatus_tui.core.coordination import domain_rate
from sendstatus_tui.core.model import relays as stored_relays
from sendstatus_tui.core.model import settings as stored_settings
from sendstatus_tui.core.model.domain_limits import DomainGroup, stored_limits
from sendstatus_tui.core.store.store import StoreError
from sendstatus_tui.engine.database import EngineDatabase
from sendstatus_tui.engine.domain_pace import DomainLimits
from sendstatus_tui.engine.routes import Routes
from sendstatus_tui.engine.trouble import DatabaseTrouble

# how often an engine reads the stored relays and domain limits (a change, or another
# engine's throttling of a domain, is followed within this)
RELAYS_EVERY_SECONDS = 1.0


class RelayFollowing:
    def __init__(
        self, db: EngineDatabase, routes: Routes, domains: DomainLimits, trouble: DatabaseTrouble
    ):
        self.db, self.routes, self.domains, self.trouble = db, routes, domains, trouble
        self._read = 0.0  # monotonic time the stored relays were last read

    @property
    def due(self) -> bool:
        return time.monotonic() - self._read >= RELAYS_EVERY_SECONDS

    async def follow(self) -> None:
        """The routes brought in line with the relays stored now (engine/routes.py), and
        the domain limits with the setting and the domains throttled now."""
        try:
            if self.routes.stored:  # else --smtp: the stored relays are not read
                self.routes.follow(await self.db.read(stored_relays.all_relays))
            self.domains.follow(*await self.db.read(_domain_limits))
        except StoreError as exc:
            self.trouble.report("read", exc)
            return
        self._read = time.monotonic()


def _domain_limits(
    session: Session,
) -> tuple[tuple[DomainGroup, ...], list[domain_rate.Throttle]]:
    """The stored domain limits, and the domains throttled now."""
    groups = stored_limits(stored_settings.read(session, "domain_limits"))
    return groups, domain_rate.throttles(session, {g.key: g.per_second for g in groups})
