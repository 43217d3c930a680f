"""The relay's user name and password: from the environment or from a file only its owner can
read; never from the command line (every user sees it), never stored in the database, never
logged."""

import os
import stat
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from platformdirs import user_config_path

from sendstatus_tui.errors import SendStatusError

USER_ENV = "SENDSTATUS_SMTP_USER"
PASSWORD_ENV = "SENDSTATUS_SMTP_PASSWORD"
FILE_ENV = "SENDSTATUS_CREDENTIALS"


class CredentialsError(SendStatusError, ValueError):
    pass


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str = field(repr=False)  # kept out of reprs, and so out of logs


def default_credentials_file() -> Path:
    return user_config_path("sendstatus", appauthor=False) / "credentials.toml"


def load_credentials(environ: Mapping[str, str] = os.environ) -> Credentials | None:
    """From SENDSTATUS_SMTP_USER / SENDSTATUS_SMTP_PASSWORD, else from the credentials file
    (``[relay]`` with ``username`` and ``password``); None when neither is there."""
    user, password = environ.get(USER_ENV), environ.get(PASSWORD_ENV)
    if user or password:
        if not (user and password):
            raise CredentialsError(f"set both {USER_ENV} and {PASSWORD_ENV}, or neither")
        return Credentials(user, password)
    relay = credentials_table("relay", environ)
    if relay is None:
        return None
    path = credentials_path(environ)
    name, secret = relay.get("username"), relay.get("password")
    if not (isinstance(name, str) and isinstance(secret, str)):
        raise CredentialsError(f"{path}: expected a [relay] table with username and password")
    return Credentials(name, secret)


def credentials_path(environ: Mapping[str, str] = os.environ) -> Path:
    return Path(environ.get(FILE_ENV) or default_credentials_file())


def credentials_table(
    name: str, environ: Mapping[str, str] = os.environ
) -> dict[str, object] | None:
    """The table ``[name]`` of the credentials file (empty when the file has none), or None
    when there is no file; refused when others can read the file."""
    path = credentials_path(environ)
    if not path.exists():
        return None
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise CredentialsError(
            f"{path} can be read by other users (mode {stat.S_IMODE(mode):o}): run chmod 600 {path}"
        )
    try:
        table = tomllib.loads(path.read_text(encoding="utf-8")).get(name, {})
    except tomllib.TOMLDecodeError as exc:
        raise CredentialsError(f"{path}: not valid TOML ({exc})") from None
    except UnicodeDecodeError as exc:
        raise CredentialsError(
            f"{path}: not UTF-8 text (bad byte at offset {exc.start}); save it as UTF-8"
        ) from None
    except OSError as exc:
        raise CredentialsError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    if not isinstance(table, dict):
        raise CredentialsError(f"{path}: [{name}] must be a table")
    return table
