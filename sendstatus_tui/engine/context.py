"""What the engine's parts share, made once by the engine (engine/engine.py)."""

from dataclasses import dataclass

from sendstatus_tui.engine.database import EngineDatabase
from sendstatus_tui.engine.pauses import Pauses
from sendstatus_tui.engine.settings import EngineSettings
from sendstatus_tui.engine.standing import Standing
from sendstatus_tui.engine.trouble import DatabaseTrouble


@dataclass(frozen=True)
class EngineContext:
    """Its database, its settings, who it is to the database, its pauses (which end at
    once when it drains), and the database trouble it reports."""

    db: EngineDatabase
    settings: EngineSettings
    standing: Standing
    pauses: Pauses
    trouble: DatabaseTrouble
