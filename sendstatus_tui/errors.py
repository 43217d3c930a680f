"""The one root of every error sendstatus raises on purpose, and the masking of secrets.

The command line catches ``SendStatusError`` once and prints its message as one ``error:``
line; anything else that escapes is a bug. Messages must never carry a password: build
them from ``mask_url`` (and the command line masks the URLs it was given once more).

This module imports nothing of the project, textual or apscheduler: every layer may use it.
"""

import re

MASK = "***"
# the user:password@ of a URL, also of one too broken to parse (a password with a "/" must
# be percent-encoded in a URL, so the password never spans one)
_USERINFO = re.compile(r"^((?:[^/?#]*//)?[^:/?#@]*):[^/]*@")


class SendStatusError(Exception):
    """An error sendstatus raises on purpose; its message is meant for the operator."""


def mask_url(url: str) -> str:
    """``url`` with its password (if any) replaced by ``***``."""
    return _USERINFO.sub(lambda match: f"{match[1]}:{MASK}@", url, count=1)
