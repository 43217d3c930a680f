# the change marker's session events, on for every session of every process (changes.py)
from sendstatus_tui.core.model import changes as _changes  # noqa: F401
