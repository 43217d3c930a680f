"""Who an engine is to the database, and what that lets it do now."""

import os
import socket
import uuid

from sendstatus_tui.core.model.models import utc_now


class Standing:
    """Its name as a lease holder and heartbeat; the claimant its claims carry (a new one
    each time the leader hands its claims back); whether its engine row names that
    claimant; until when its heartbeat surely stands (no message goes out after); and the
    lease generation while it leads (0: not leading)."""

    def __init__(self) -> None:
        self.holder = f"{socket.gethostname()[:64]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.started_at = utc_now()
        self._claimants = 0
        self.claimant = self.next_claimant()
        self.registered = False  # the engine's row names the claimant
        self.send_deadline = 0.0  # monotonic time
        self.generation = 0

    def next_claimant(self) -> str:
        self._claimants += 1
        return f"{self.holder}#{self._claimants}"
