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

from sendstatus_tui.core.model.relays import credentials_prefix
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
    if relay is None or not ({"username", "password"} & relay.keys()):
        return None  # no file, or only the tables of named relays ([relay.NAME])
    return _pair(relay, "[relay]", environ)


def load_relay_credentials(
    relay: str, environ: Mapping[str, str] = os.environ
) -> Credentials | None:
    """The credentials of the stored relay named ``relay``: from
    SENDSTATUS_RELAY_<NAME>_USER / _PASSWORD (NAME in capitals, - as _), else from the
    credentials file's ``[relay.NAME]`` table; the relay named default also takes those
    that ``--smtp`` takes (SENDSTATUS_SMTP_USER, ``[relay]``). None when there are none."""
    prefix = credentials_prefix(relay)
    user, password = environ.get(f"{prefix}_USER"), environ.get(f"{prefix}_PASSWORD")
    if user or password:
        if not (user and password):
            raise CredentialsError(f"set both {prefix}_USER and {prefix}_PASSWORD, or neither")
        return Credentials(user, password)
    named = (credentials_table("relay", environ) or {}).get(relay)
    if named is not None:
        if not isinstance(named, dict):
            raise CredentialsError(f"{credentials_path(environ)}: [relay.{relay}] must be a table")
        return _pair(named, f"[relay.{relay}]", environ)
    return load_credentials(environ) if relay == "default" else None


def _pair(table: dict[str, object], what: str, environ: Mapping[str, str]) -> Credentials:
    name, secret = table.get("username"), table.get("password")
    if not (isinstance(name, str) and isinstance(secret, str)):
        raise CredentialsError(
            f"{credentials_path(environ)}: expected a {what} table with username and password"
        )
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
