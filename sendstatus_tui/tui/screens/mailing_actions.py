"""The actions on one selected mailing that every list of mailings offers alike: the panes
and H (today's completed). Each screen says which mailing is selected; the action code is
here once.

What changes a mailing goes to the app as an Operation message: the app runs the database
transaction in a worker, says what came of it and refreshes the panes.
"""

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, tzinfo
from pathlib import Path
from typing import Any, Protocol, cast

from textual.message import Message
from textual.screen import Screen

from sendstatus_tui.core.coordination.deliveries import failed_by_class
from sendstatus_tui.core.importing.copying import copy_mailing, copy_name
from sendstatus_tui.core.model import lifecycle, retry
from sendstatus_tui.core.model.retry import CLASSES
from sendstatus_tui.core.model.states import State, TransitionRefused
from sendstatus_tui.core.reads import failed, trial
from sendstatus_tui.core.store.store import Store
from sendstatus_tui.engine.send_test import RelayForTests, send_test
from sendstatus_tui.errors import SendStatusError
from sendstatus_tui.tui.actions import BY_NAME
from sendstatus_tui.tui.screens.actions_menu import ActionsMenu
from sendstatus_tui.tui.screens.confirm import ConfirmModal
from sendstatus_tui.tui.screens.detail import DetailScreen
from sendstatus_tui.tui.screens.export_failed import ExportFailedModal
from sendstatus_tui.tui.screens.preview import PreviewScreen
from sendstatus_tui.tui.screens.send_test import SendTestModal
from sendstatus_tui.tui.trouble import (
    Trouble,
    guarded,
    report,
    report_from_thread,
    tell,
    tell_from_thread,
)
from sendstatus_tui.views.cells import quoted
from sendstatus_tui.views.preview import Preview, mailing_preview


class DashboardApp(Protocol):
    """What these actions use of the app (tui/app.py, which imports this module)."""

    test_relay: RelayForTests | None  # where test sends go (None: the dashboard sends none)
    dashboard: Any  # the dashboard screen: follow_next highlights a new mailing

    def refresh_panes(self) -> None: ...


class Selection(Protocol):
    """What the actions read of the selected mailing (a pane's row, a row of H)."""

    @property
    def mailing_id(self) -> int: ...
    @property
    def name(self) -> str: ...
    @property
    def state(self) -> State: ...


@dataclass(frozen=True)
class DashboardSettings:
    zone_name: str | None
    clock: Callable[[], datetime]
    blink: bool
    refresh_seconds: float  # also how often an open details screen reloads


class Operation(Message):
    """Asks the app to run ``operation(session, mailing_id, *args)`` in a transaction, then
    to say ``done`` (if anything), refresh the panes and call ``after`` (if any)."""

    def __init__(self, done: str, operation: Callable, mailing_id: int, *args: Any):
        super().__init__()
        self.done, self.operation, self.mailing_id, self.args = done, operation, mailing_id, args
        self.after: Callable[[], None] | None = None


class MailingActions(Screen):
    """A screen listing mailings, whose selected one these actions act on."""

    Operation = Operation  # also DashboardScreen.Operation, its name before

    store: Store
    zone: tzinfo
    settings: DashboardSettings

    def selected(self) -> Selection | None:
        raise NotImplementedError

    @property
    def sendstatus(self) -> DashboardApp:
        return cast(DashboardApp, self.app)  # these screens run in no other app

    def applies(self, name: str) -> bool:
        """Whether the action ``name`` applies to the selection."""
        selected = self.selected()
        return BY_NAME[name].applies_to(selected.state if selected else None)

    def _operate(self, done: str, operation: Callable, mailing_id: int, *args: Any) -> None:
        asked = self.Operation(done, operation, mailing_id, *args)
        asked.after = self.operated
        self.post_message(asked)

    def operated(self) -> None:
        """Called once an operation asked from here is done (the panes refresh anyway)."""

    def action_why(self, name: str) -> None:
        """A key that does not apply to the selection says why, in the command line's
        words (its own binding came first and was not allowed: see actions.bindings)."""
        action = BY_NAME[name]
        row = self.selected()
        if row is None:
            tell(self.app, Trouble.REFUSED, f"{action.title}: no mailing is selected here")
        elif not action.applies_to(row.state):
            assert action.rule is not None  # only a rule can refuse a selected mailing
            refusal = TransitionRefused(action.rule, row.state, row.mailing_id)
            report(self.app, refusal)

    def action_actions(self) -> None:
        row = self.selected()
        if row is None:
            return

        async def chosen(action: str | None) -> None:
            if action is not None:
                await self.run_action(action)

        self.app.push_screen(ActionsMenu(row.name, row.state), chosen)

    def action_details(self) -> None:
        if row := self.selected():
            self.app.push_screen(
                DetailScreen(
                    self.store,
                    row.mailing_id,
                    self.zone,
                    self.settings.clock,
                    self.settings.refresh_seconds,
                )
            )

    def action_preview(self) -> None:
        row = self.selected()
        if row is None:
            return
        store, mailing_id = self.store, row.mailing_id

        def load(number: int) -> Preview:
            with store.read() as session:
                return mailing_preview(session, lifecycle.get(session, mailing_id), number)

        self.app.push_screen(PreviewScreen(f"Preview of {quoted(row.name)}", load))

    @guarded(group="actions")
    async def action_retry(self) -> None:
        row = self.selected()
        if row is None:
            return
        classes = retry.RETRY_ALL
        by_class = await asyncio.to_thread(self._failed_by_class, row.mailing_id)
        count = sum(by_class.get(cls, 0) for cls in classes)
        if count and not await self.app.push_screen_wait(
            ConfirmModal(
                f"Retry {quoted(row.name)}?",
                f"{count:,} failed recipients ({', '.join(classes)}) go back to pending; it"
                " waits in Sends to schedule until you send it. Nobody it was sent to gets"
                " it again.",
                "Retry",
                safe=True,
            )
        ):
            return
        # with nothing to retry, the operation says why, as the command line does
        self._operate(f"{row.name}: {count:,} to retry", lifecycle.retry, row.mailing_id, classes)

    def _failed_by_class(self, mailing_id: int) -> dict[str, int]:
        with self.store.read() as session:
            return failed_by_class(session, mailing_id)

    @guarded(group="actions")
    async def action_test_send(self) -> None:
        row = self.selected()
        relay = self.sendstatus.test_relay
        if row is None or relay is None:
            return
        addresses = await self.app.push_screen_wait(SendTestModal(row.name, relay.description))
        if addresses:
            await asyncio.to_thread(self._send_test, row.mailing_id, row.name, relay, addresses)

    def _send_test(self, mailing_id: int, name: str, relay: RelayForTests, to: list[str]) -> None:
        """Sends the test (in a thread: the relay may be slow) and tells what came of it."""
        try:
            with self.store.read() as session:
                mailing = lifecycle.get(session, mailing_id)
                persona = trial.persona(session, mailing, None)
                session.expunge(mailing)
            results = asyncio.run(send_test(relay.open(), mailing, persona, to))
        except SendStatusError as exc:
            report_from_thread(self.app, exc)
            return
        if persona.empty_fields:
            names = ", ".join("{" + field + "}" for field in persona.empty_fields)
            tell_from_thread(self.app, Trouble.REFUSED, f"{persona.email} has no value for {names}")
        for result in results:
            tell_from_thread(
                self.app,
                Trouble.DONE if result.delivered else Trouble.FAILED,
                f"test of {name} to {result.address}: {result.reply}",
            )

    @guarded(group="actions")
    async def action_export_failed(self) -> None:
        row = self.selected()
        if row is None:
            return
        suggested = Path.cwd() / f"failed-{row.mailing_id}.csv"
        path = await self.app.push_screen_wait(ExportFailedModal(row.name, suggested))
        if path is not None:
            await asyncio.to_thread(self._export_failed, row.mailing_id, row.name, path)

    def _export_failed(self, mailing_id: int, name: str, path: Path) -> None:
        """Writes the CSV as ``sendstatus failed ID --csv FILE`` does, and says how many."""
        try:
            with self.store.read() as session:
                mailing = lifecycle.get(session, mailing_id)
                names = mailing.field_names
                rows = failed.failed_recipients(session, mailing_id, _names(names), CLASSES)
                written = failed.write_failed_csv(path, _names(names), rows)
        except SendStatusError as exc:
            report_from_thread(self.app, exc)
            return
        if written:
            what = f"{written:,} failed recipient{'' if written == 1 else 's'}"
            tell_from_thread(self.app, Trouble.DONE, f"{quoted(name)}: {what} written to {path}")
        else:
            tell_from_thread(
                self.app,
                Trouble.REFUSED,
                f"{quoted(name)} has no failed recipients: {path} lists none",
            )

    @guarded(group="actions")
    async def action_copy(self) -> None:
        row = self.selected()
        if row is None:
            return
        new_name = copy_name(row.name)
        if not await self.app.push_screen_wait(
            ConfirmModal(
                f"Copy {quoted(row.name)}?",
                f"A new mailing, {quoted(new_name)}, parked in Sends to schedule: the same"
                " message, recipients and settings, none of its outcomes (everyone is"
                " pending again).",
                "Copy",
            )
        ):
            return
        try:
            copied = await asyncio.to_thread(copy_mailing, self.store, row.mailing_id)
        except SendStatusError as exc:
            report(self.app, exc)
            return
        dropped = f", {copied.suppressed:,} suppressed dropped" if copied.suppressed else ""
        what = f"{copied.recipients:,} recipient{'' if copied.recipients == 1 else 's'}"
        tell(
            self.app,
            Trouble.DONE,
            f"{quoted(copied.name)} created as a copy of {quoted(row.name)} with {what}{dropped}"
            " (parked in Sends to schedule)",
        )
        self.sendstatus.dashboard.follow_next(copied.mailing_id)
        self.sendstatus.refresh_panes()


def _names(field_names: str) -> list[str]:
    names: list[str] = json.loads(field_names)
    return names
