"""Send slots shared with every engine of the database: a relay's own rate
(shared_rate.py), a group of domains' (domain_rate.py), and a group slowed down by a
domain's 4.7.x deferral."""

from sendstatus_tui.core.coordination import domain_rate, shared_rate
from sendstatus_tui.core.coordination.shared_rate import ReservedSlots
from sendstatus_tui.engine.database import EngineDatabase


class SharedSlots:
    def __init__(self, db: EngineDatabase):
        self.db = db

    async def reserve_for_relay(self, relay: str, per_second: float, count: int) -> ReservedSlots:
        """Send slots of a relay's own rate, shared with every engine (shared_rate.py)."""
        return await self.db.write(
            lambda session: shared_rate.reserve_for_relay(session, relay, count, per_second)
        )

    async def reserve_for_domains(self, key: str, configured: float) -> ReservedSlots:
        """Send slots of a group of domains, shared with every engine (domain_rate.py)."""
        return await self.db.write(lambda session: domain_rate.reserve(session, key, configured))

    async def throttle(self, key: str, domain: str, status: str, configured: float) -> None:
        """A 4.7.x deferral slows the domain's group down, for every engine."""
        await self.db.write(
            lambda session: domain_rate.throttle(session, key, domain, status, configured)
        )
