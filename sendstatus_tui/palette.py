"""The command palette offers the same actions as the keys, for the selected mailing."""

from functools import partial

from textual.command import DiscoveryHit, Hit, Hits, Provider

# (palette label, app action, help)
PALETTE_ACTIONS = (
    ("Send now", "send_now", "start the selected mailing now"),
    ("Schedule at a date and time", "schedule", "the selected mailing"),
    ("Send sequentially", "enqueue", "append the selected mailing to the sequential queue"),
    ("Stop", "stop", "park the selected mailing in Sends to schedule"),
    ("Move up in the queue", "move_up", "the selected queued mailing"),
    ("Move down in the queue", "move_down", "the selected queued mailing"),
    ("Delete", "delete", "the selected parked mailing"),
    ("Details", "details", "counters, send rate and errors of the selected mailing"),
    ("New mailing", "new_mailing", "name, subject, sender, body, recipients"),
    ("Filter by name", "filter", "show only mailings whose name matches"),
    ("Help", "help", "keys and panes"),
)


class MailingCommands(Provider):
    def _applicable(self):
        app = self.app
        for label, action, help_text in PALETTE_ACTIONS:
            if app.action_applies(action):
                yield label, partial(app.run_action, action), help_text

    async def discover(self) -> Hits:
        for label, run, help_text in self._applicable():
            yield DiscoveryHit(label, run, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for label, run, help_text in self._applicable():
            score = matcher.match(label)
            if score > 0:
                yield Hit(score, matcher.highlight(label), run, help=help_text)
