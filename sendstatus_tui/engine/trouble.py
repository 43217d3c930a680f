"""Database trouble, told to the operator once when it starts and once when it is over."""

import logging

log = logging.getLogger("sendstatus.engine")


class DatabaseTrouble:
    def __init__(self) -> None:
        # what failed, by the kind of work that failed: {work: reason}
        self._failing: dict[str, str] = {}

    def report(self, work: str, exc: Exception | None) -> None:
        """Logs once when the database starts to fail (once per reason), and once when it
        works again: when every kind of ``work`` that failed (a beat, a claim, a record,
        the leader's, a step) has since committed, not merely one that never failed."""
        failing = self._failing
        if exc is not None:
            if str(exc) not in failing.values():
                log.error("%s; retrying", exc)
            failing[work] = str(exc)
        elif failing.pop(work, None) is not None and not failing:
            log.warning("the database works again; going on")
