"""The stored relays and domain limits, followed as they change: the routes brought in
line with the relays, the domain limits with the setting. (A group's throttling needs no
following: every reservation of its slots reads its rate.)"""

from sqlmodel import Session

from sendstatus_tui.core.model import relays as stored_relays
from sendstatus_tui.core.model import settings as stored_settings
from sendstatus_tui.core.model.domain_limits import DomainGroup, stored_limits
from sendstatus_tui.core.store.store import StoreError
from sendstatus_tui.engine.database import EngineDatabase
from sendstatus_tui.engine.domain_pace import DomainLimits
from sendstatus_tui.engine.routes import Routes
from sendstatus_tui.engine.trouble import DatabaseTrouble


class RelayFollowing:
    def __init__(
        self, db: EngineDatabase, routes: Routes, domains: DomainLimits, trouble: DatabaseTrouble
    ):
        self.db, self.routes, self.domains, self.trouble = db, routes, domains, trouble

    async def follow(self) -> None:
        """The routes brought in line with the relays stored now (engine/routes.py), and
        the domain limits with the setting."""
        try:
            if self.routes.stored:  # else --smtp: the stored relays are not read
                self.routes.follow(await self.db.read(stored_relays.all_relays))
            self.domains.follow(await self.db.read(_domain_limits))
        except StoreError as exc:
            self.trouble.report("read", exc)


def _domain_limits(session: Session) -> tuple[DomainGroup, ...]:
    return stored_limits(stored_settings.read(session, "domain_limits"))
