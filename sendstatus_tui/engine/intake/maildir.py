"""``maildir:DIR``: where a local MTA delivers the bounce address. Each message in ``new/``
is read, and once its effects are committed moved to ``cur/`` (marked seen): a rename,
which only one of two intakes on the same maildir wins. Nothing is ever deleted."""

import os
from collections.abc import Iterator
from pathlib import Path

from sendstatus_tui.engine.intake.source import MAX_READ, Incoming, SourceError


class MaildirSource:
    def __init__(self, directory: Path):
        self.directory = directory.expanduser()
        # as strings: a Path made for each message costs more than the rename
        self._new, self._cur = str(self.directory / "new"), str(self.directory / "cur")

    @property
    def name(self) -> str:
        return f"maildir:{self.directory}"

    def messages(self) -> Iterator[Incoming]:
        new = self.directory / "new"
        try:
            names = sorted(
                entry.name for entry in os.scandir(new) if not entry.name.startswith(".")
            )
        except OSError as exc:
            raise SourceError(f"{self.name}: cannot read {new}: {exc.strerror or exc}") from None
        for name in names:
            try:
                with open(os.path.join(self._new, name), "rb") as stream:
                    data = stream.read(MAX_READ + 1)
            except FileNotFoundError:
                continue  # another intake took it meanwhile
            except OSError as exc:
                raise SourceError(
                    f"{self.name}: cannot read {name}: {exc.strerror or exc}"
                ) from None
            yield Incoming(name, data[:MAX_READ], len(data) > MAX_READ)

    def acknowledge(self, message: Incoming) -> bool:
        # the maildir convention: info ":2," with S (seen) once read
        base = message.ref.split(":", 1)[0]
        try:
            os.rename(os.path.join(self._new, message.ref), os.path.join(self._cur, f"{base}:2,S"))
        except FileNotFoundError:
            return False
        return True


def maildir_source(text: str) -> MaildirSource | None:
    """The source ``maildir:DIR`` names, or None for another kind; SourceError when DIR is
    not a maildir."""
    if not text.startswith("maildir:"):
        return None
    directory = Path(text.removeprefix("maildir:")).expanduser()
    if not directory.name and not str(directory).strip():
        raise SourceError("maildir: which directory? e.g. maildir:/var/mail/bounces")
    missing = [sub for sub in ("new", "cur") if not (directory / sub).is_dir()]
    if missing:
        raise SourceError(f"{text}: not a maildir (no {' nor '.join(missing)}/ in {directory})")
    return MaildirSource(directory)
