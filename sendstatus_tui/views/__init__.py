"""What the operator reads, as text and cells: the panes, ``ls``, ``show`` and the details
screen, all from the formatting functions in ``cells`` (no textual here)."""
