"""The command palette offers the same actions as the keys, where they apply."""

from functools import partial

from textual.command import DiscoveryHit, Hit, Hits, Provider

from sendstatus_tui.tui.actions import ACTIONS


class DashboardCommands(Provider):
    def _applicable(self):
        for action in ACTIONS:
            target = self.app if action.scope == "app" else self.screen
            if action.palette and target.check_action(action.name, ()):
                yield action.title, partial(target.run_action, action.name), action.help

    async def discover(self) -> Hits:
        for title, run, help_text in self._applicable():
            yield DiscoveryHit(title, run, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for title, run, help_text in self._applicable():
            score = matcher.match(title)
            if score > 0:
                yield Hit(score, matcher.highlight(title), run, help=help_text)
