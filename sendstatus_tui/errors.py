"""The one root of every error sendstatus raises on purpose, and the masking of secrets.

The command line catches ``SendStatusError`` once and prints its message as one ``error:``
line; anything else that escapes is a bug. Messages must never carry a password: build
them from ``mask_url`` (and the command line masks the secrets it knows once more).

This module imports nothing of the project, textual or apscheduler: every layer may use it.
"""

from urllib.parse import urlsplit, urlunsplit

MASK = "***"


class SendStatusError(Exception):
    """An error sendstatus raises on purpose; its message is meant for the operator."""


def mask_url(url: str) -> str:
    """``url`` with its password (if any) replaced by ``***``."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:  # unparsable: hide everything between "//" and "@"
        return _mask_userinfo(url)
    if password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username}:{MASK}@{host}"))


def _mask_userinfo(url: str) -> str:
    scheme, separator, rest = url.partition("//")
    userinfo, at, host = rest.rpartition("@")
    if not (separator and at):
        return url
    user = userinfo.partition(":")[0]
    return f"{scheme}//{user}:{MASK}@{host}"


def url_password(url: str | None) -> str | None:
    """The password ``url`` carries, so that a message can be checked for it."""
    if not url:
        return None
    try:
        return urlsplit(url).password
    except ValueError:
        userinfo = url.partition("//")[2].rpartition("@")[0]
        return userinfo.partition(":")[2] or None
