"""Where the dashboard's errors go: every SendStatusError that reading or acting raises, and
any unforeseen error in a worker, becomes a notification, never the end of the dashboard
(nor of the engine it runs, which stops when the dashboard does). One table says how each
kind of trouble is told: its severity and how long it stays on screen.

Workers that touch the database are started with ``guarded`` instead of Textual's ``work``:
the same options, but an error is reported here instead of ending the app.
"""

import contextlib
import functools
import inspect
import logging
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any

from textual import work
from textual.app import App
from textual.notifications import SeverityLevel

from sendstatus_tui.core.store.store import StoreError
from sendstatus_tui.errors import SendStatusError

log = logging.getLogger("sendstatus.dashboard")


class Trouble(Enum):
    DONE = "done"  # not a trouble: an action went through (its confirmation)
    REFUSED = "refused"  # the rules refuse it: a key that does not apply, a time now past
    FAILED = "failed"  # what was asked did not happen: a test message the relay refused
    DATABASE = "database"  # the database cannot be read or written at the moment
    UNFORESEEN = "unforeseen"  # a bug: logged with its traceback, and the dashboard goes on


@dataclass(frozen=True)
class Notice:
    severity: SeverityLevel
    timeout: float  # seconds on screen
    # shown again while the same text is on screen: an answer to a key pressed again is;
    # a trouble that repeats at every refresh (a periodic read) is not stacked
    repeats: bool = True


NOTICES: dict[Trouble, Notice] = {
    Trouble.DONE: Notice("information", 3),
    Trouble.REFUSED: Notice("warning", 6),
    Trouble.FAILED: Notice("error", 8),
    Trouble.DATABASE: Notice("error", 8, repeats=False),
    Trouble.UNFORESEEN: Notice("error", 15, repeats=False),
}


def kind_of(error: BaseException) -> Trouble:
    if isinstance(error, StoreError):
        return Trouble.DATABASE
    if isinstance(error, SendStatusError):
        return Trouble.REFUSED
    return Trouble.UNFORESEEN


def text_of(error: BaseException) -> str:
    """What the operator reads: our own errors are written for them; a bug is named as one."""
    if kind_of(error) is Trouble.UNFORESEEN:
        return (
            f"unexpected error ({type(error).__name__}: {error}); the dashboard goes on,"
            " details in the log"
        )
    return str(error)


# per app, when each text that does not repeat was last shown
_shown: "weakref.WeakKeyDictionary[App, dict[str, float]]" = weakref.WeakKeyDictionary()


def tell(app: App, kind: Trouble, text: str) -> None:
    """Shows ``text`` as ``kind`` says (on the app's thread), unless it is on screen."""
    notice = NOTICES[kind]
    if not notice.repeats:
        shown = _shown.setdefault(app, {})
        now = time.monotonic()
        if now - shown.get(text, -notice.timeout) < notice.timeout:
            return
        shown[text] = now
    app.notify(text, severity=notice.severity, timeout=notice.timeout)


def report(app: App, error: BaseException) -> None:
    """Tells the operator of ``error`` (on the app's thread); a bug is also logged."""
    if kind_of(error) is Trouble.UNFORESEEN:
        log.error("unexpected error in the dashboard", exc_info=error)
    tell(app, kind_of(error), text_of(error))


def report_from_thread(app: App, error: BaseException) -> None:
    """``report`` from a worker thread; nothing when the app has closed meanwhile."""
    with contextlib.suppress(RuntimeError):  # the app is no longer running
        app.call_from_thread(report, app, error)


def tell_from_thread(app: App, kind: Trouble, text: str) -> None:
    with contextlib.suppress(RuntimeError):
        app.call_from_thread(tell, app, kind, text)


def guarded(*, thread: bool = False, **options: Any) -> Callable[[Callable], Callable]:
    """Textual's ``work`` (same options), for a method of a widget, screen or app, whose
    errors are reported by ``report`` instead of ending the app."""

    def decorate(method: Callable) -> Callable:
        if inspect.iscoroutinefunction(method):

            async def run_async(self: Any, app: App, *args: Any, **kwargs: Any) -> Any:
                try:
                    return await method(self, *args, **kwargs)
                except Exception as error:  # noqa: BLE001  told, and the dashboard goes on
                    report(app, error)
                    return None

            body: Callable = run_async
        else:

            def run(self: Any, app: App, *args: Any, **kwargs: Any) -> Any:
                try:
                    return method(self, *args, **kwargs)
                except Exception as error:  # noqa: BLE001  told, and the dashboard goes on
                    if thread:
                        report_from_thread(app, error)
                    else:
                        report(app, error)
                    return None

            body = run
        worker = work(body, thread=thread, exit_on_error=False, **options)

        @functools.wraps(method)
        def start(self: Any, *args: Any, **kwargs: Any) -> Any:
            # the app is looked up here, on its own thread: a worker thread may not know it
            return worker(self, self.app, *args, **kwargs)

        return start

    return decorate
