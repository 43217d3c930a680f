"""The stored relays and domain limits, followed as they change: the routes brought in
line with the relays, the domain limits with the setting and the domains throttled now."""

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

# how often an engine reads the domains throttled now, between changes: another engine's
# throttling of a domain (a write at each 4.7.x deferral) bumps no change marker, and a
# throttled domain recovers with time
THROTTLES_EVERY_SECONDS = 1.0


class RelayFollowing:
    def __init__(
        self, db: EngineDatabase, routes: Routes, domains: DomainLimits, trouble: DatabaseTrouble
    ):
        self.db, self.routes, self.domains, self.trouble = db, routes, domains, trouble

    async def follow(self) -> None:
        """The routes brought in line with the relays stored now (engine/routes.py), and
        the domain limits with the setting and the domains throttled now."""
        try:
            if self.routes.stored:  # else --smtp: the stored relays are not read
                self.routes.follow(await self.db.read(stored_relays.all_relays))
            await self.follow_domains()
        except StoreError as exc:
            self.trouble.report("read", exc)

    async def follow_domains(self) -> None:
        """The domain limits brought in line with the setting and the domains throttled
        now (StoreError: the caller's)."""
        self.domains.follow(*await self.db.read(_domain_limits))


def _domain_limits(
    session: Session,
) -> tuple[tuple[DomainGroup, ...], list[domain_rate.Throttle]]:
    """The stored domain limits, and the domains throttled now."""
    groups = stored_limits(stored_settings.read(session, "domain_limits"))
    return groups, domain_rate.throttles(session, {g.key: g.per_second for g in groups})
