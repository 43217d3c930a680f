"""Where the engine runs, as the dashboard's header tells it (the app computes it on every
refresh; the header shows ``text()`` and ``leader_text()``)."""

from dataclasses import dataclass
from enum import StrEnum


class EngineWhere(StrEnum):
    HERE = "here"  # this dashboard's engine holds the lease
    STARTING = "starting"  # this dashboard's engine waits for the lease
    ELSEWHERE = "elsewhere"  # another process's engine holds it
    NONE = "none"  # no engine holds it: nothing is sent


@dataclass(frozen=True)
class EngineFact:
    where: EngineWhere
    holder: str | None  # who holds the lease (unexpired), if anyone
    relay: str | None  # where this dashboard's engine sends (password masked), if it runs one
    self_starting: bool  # this dashboard starts an engine when none runs (no --no-engine)
    # the engines whose heartbeat says they run (none lost), this dashboard's included
    running: int = 0

    def text(self) -> str:
        """For the header at 80 columns: short, the host without the process; how many
        engines run when there are several (``leader_text`` then says who leads)."""
        if self.running > 1:
            return f"{self.running} engines"
        if self.where == EngineWhere.HERE:
            return "engine here"
        if self.where == EngineWhere.STARTING:
            return "engine starting"
        if self.where == EngineWhere.ELSEWHERE:
            host, _, _ = (self.holder or "").partition(":")
            return f"engine on {host}"
        if self.self_starting:
            return "no engine: starting one"
        return "no engine: nothing is sent"

    def leader_text(self) -> str | None:
        """Who leads, when several engines run (one alone: ``text`` already says where)."""
        if self.running <= 1:
            return None
        if self.where == EngineWhere.HERE:
            return "leader here"
        if self.holder is None:
            return "no leader"
        host, _, _ = self.holder.partition(":")
        return f"leader {host}"
