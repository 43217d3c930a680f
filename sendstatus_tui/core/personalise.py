"""Personalisation: ``{field}`` placeholders in the subject and bodies, filled per recipient
from the CSV's columns (and ``{email}``)."""

import re
from collections.abc import Callable, Mapping

PLACEHOLDER = re.compile(r"\{(\w+)\}")


def placeholders(text: str | None) -> set[str]:
    """The field names ``text`` refers to."""
    return set(PLACEHOLDER.findall(text or ""))


def fill(text: str, values: Mapping[str, str], escape: Callable[[str], str] = str) -> str:
    """``text`` with each ``{field}`` replaced by its value (passed through ``escape``)."""
    return PLACEHOLDER.sub(lambda match: escape(values[match[1]]), text)
