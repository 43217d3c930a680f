"""Where the engine runs, as the dashboard's header tells it (the app computes it on every
refresh; the header shows ``text()``)."""

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

    def text(self) -> str:
        """For the header at 80 columns: short, the host without the process."""
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
