"""Settings from the command line, the environment, and defaults."""

import os
from pathlib import Path
from urllib.parse import quote

from platformdirs import user_data_path

DB_ENV = "SENDSTATUS_DB"
TZ_ENV = "SENDSTATUS_TZ"
SMTP_ENV = "SENDSTATUS_SMTP"
RATE_ENV = "SENDSTATUS_RATE"
BLINK_ENV = "SENDSTATUS_BLINK"


def default_db_url() -> str:
    """The embedded default: an SQLite file in the user's data directory."""
    path = Path(user_data_path("sendstatus", appauthor=False)) / "sendstatus.db"
    return sqlite_url(path)


def sqlite_url(path: Path) -> str:
    """The URL of an SQLite file: its path percent-encoded, as SQLAlchemy reads URLs (a
    ``%``, ``?`` or space in a folder's name stays part of the name)."""
    return f"sqlite:///{quote(str(path), safe='/')}"


def db_url(option: str | None) -> str:
    return option or os.environ.get(DB_ENV) or default_db_url()


def zone_name(option: str | None) -> str | None:
    """The operator's zone name, or None for the system's."""
    return option or os.environ.get(TZ_ENV) or None


def relay_url(option: str | None) -> str | None:
    """The relay URL, or None for the default maildir."""
    return option or os.environ.get(SMTP_ENV) or None


def rate(option: str | None) -> str | None:
    return option or os.environ.get(RATE_ENV) or None


def blink(no_blink_option: bool) -> bool:
    """Whether "starting up" blinks (operators who dislike it switch it off)."""
    return not no_blink_option and os.environ.get(BLINK_ENV, "1") not in ("0", "no", "off")
