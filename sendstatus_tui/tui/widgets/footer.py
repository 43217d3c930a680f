"""The footer, showing only the keys that fit whole: Textual's own clips the last ones at
the terminal's edge, mid-word ("shift+↓ Do"). The keys come in the order of their bindings
(help and quit first: see the dashboard's ``active_bindings``), so what is left out is
what matters least."""

from rich.cells import cell_len
from textual.app import ComposeResult
from textual.widgets import Footer
from textual.widgets._footer import FooterKey

# Textual's footer draws " KEY DESCRIPTION " per key (its CSS pads the key by one either
# side, the description by one on its right)
KEY_PADDING = 2
DESCRIPTION_PADDING = 1
# the command palette's key, docked at the right behind a one-character border
PALETTE_BORDER = 1


def key_width(key: FooterKey) -> int:
    description = cell_len(key.description) + DESCRIPTION_PADDING if key.description else 0
    return cell_len(key.key_display) + KEY_PADDING + description


class FittingFooter(Footer):
    def compose(self) -> ComposeResult:
        # (Textual's footer yields keys alone while no binding has a group: none here)
        keys = [key for key in super().compose() if isinstance(key, FooterKey)]
        palette = [key for key in keys if key.has_class("-command-palette")]
        room = (self.size.width or self.app.size.width) - sum(
            key_width(key) + PALETTE_BORDER for key in palette
        )
        for key in keys:
            if key in palette:
                continue
            room -= key_width(key)
            if room < 0:
                break  # this one and the rest would be cut
            yield key
        yield from palette

    def on_resize(self) -> None:
        self.call_after_refresh(self.recompose)
