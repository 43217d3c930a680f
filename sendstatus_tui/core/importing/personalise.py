"""Personalisation: ``{field}`` placeholders in the subject and bodies, filled per recipient
from the CSV's columns (and ``{email}``)."""

import re
from collections.abc import Mapping

PLACEHOLDER = re.compile(r"\{(\w+)\}")

# (literals, field names): the text is literals[0] + value of names[0] + literals[1] + ...
Compiled = tuple[tuple[str, ...], tuple[str, ...]]


def placeholders(text: str | None) -> set[str]:
    """The field names ``text`` refers to."""
    return set(PLACEHOLDER.findall(text or ""))


def compile_text(text: str) -> Compiled:
    """``text`` split at its placeholders, once per mailing rather than once per message."""
    pieces = PLACEHOLDER.split(text)
    return tuple(pieces[0::2]), tuple(pieces[1::2])


def fill(compiled: Compiled, values: Mapping[str, str]) -> str:
    """The text with each placeholder replaced by its value."""
    literals, names = compiled
    out = [literals[0]]
    for name, literal in zip(names, literals[1:], strict=True):
        out.append(values[name])
        out.append(literal)
    return "".join(out)
