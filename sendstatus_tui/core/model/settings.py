"""Stored settings: what every engine and dashboard on a database shares (``sendstatus
config``). Each value is checked before it is written, so a reader can trust it; credentials
are never stored (a relay URL that carries them is refused)."""

import functools
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

import sqlalchemy as sa
from sqlmodel import Session, col, select

from sendstatus_tui import config
from sendstatus_tui.core.model import domain_limits, relays, window
from sendstatus_tui.core.model.addresses import normalize_address
from sendstatus_tui.core.model.models import Relay, Setting, utc_now
from sendstatus_tui.core.model.rates import parse_rate
from sendstatus_tui.core.model.relay_url import parse_relay_url
from sendstatus_tui.core.model.verp import check_return_path
from sendstatus_tui.core.store.together import Reading, read_one
from sendstatus_tui.errors import SendStatusError


class SettingError(SendStatusError, ValueError):
    pass


@dataclass(frozen=True)
class Known:
    help: str
    # the value as stored, or SendStatusError saying why it cannot be
    check: Callable[[str], str]


def _relay(value: str) -> str:
    parse_relay_url(value)
    return value


def _rate(value: str) -> str:
    parse_rate(value)
    return value.strip()


def _https_template(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme != "https" or not parts.netloc:
        raise SettingError(
            f"{value!r}: expected an https:// URL, e.g. https://shop.example.com/u/{{unsubscribe_token}}"
        )
    return value


def _address(value: str) -> str:
    return normalize_address(value.removeprefix("mailto:"))


def _yes_no(value: str) -> str:
    answer = value.strip().lower()
    if answer in ("yes", "on", "true", "1"):
        return "yes"
    if answer in ("no", "off", "false", "0"):
        return "no"
    raise SettingError(f"expected yes or no, not {value!r}")


def _share_or_off(value: str) -> str:
    """A guard's limit: a percentage (``5%``, ``0.1 %``, ``5``) stored as ``5%``, or off."""
    text = value.strip().lower()
    if text in ("off", "no", "none"):
        return "off"
    number = text.removesuffix("%").strip()
    try:
        share = float(number)
    except ValueError:
        raise SettingError(f"expected a percentage such as 5% or off, not {value!r}") from None
    if not 0 < share <= 100:
        raise SettingError(f"{value!r}: a percentage above 0 and at most 100, or off")
    return f"{share:g}%"


def _command(value: str) -> str:
    command = value.strip()
    if not command or "\n" in command or "\r" in command:
        raise SettingError(f"expected one command line, e.g. /usr/local/bin/page-me, not {value!r}")
    return command


def _web_url(value: str) -> str:
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise SettingError(f"{value!r}: expected an http:// or https:// URL")
    if parts.username or parts.password:
        raise SettingError(f"{value!r}: no credentials in the URL (put a token in its path)")
    return value.strip()


def _window(value: str) -> str:
    """A sending window, stored naming its zone: one that names none is read in the
    operator's (SENDSTATUS_TZ, else the system's)."""
    parsed = window.parse_window(value, config.zone_name(None))
    if parsed is None:
        raise SettingError(f"{value!r}: for no default window, `config unset window`")
    return parsed.text


DURATION_UNITS = {"s": 1, "min": 60, "h": 3600}  # ``min``, not ``m``: months or minutes?


def _duration(value: str) -> str:
    """A duration: ``30s``, ``5min`` or ``2h`` (whole numbers), from 1 s to a week."""
    text = value.strip().lower().replace(" ", "")
    number = text.rstrip("abcdefghijklmnopqrstuvwxyz")
    unit = text[len(number) :]
    if not number.isdigit() or unit not in DURATION_UNITS or int(number) == 0:
        raise SettingError(f"expected a duration such as 30s, 5min or 2h, not {value!r}")
    if int(number) * DURATION_UNITS[unit] > 7 * 24 * 3600:
        raise SettingError(f"{value!r}: at most a week")
    return f"{int(number)}{unit}"


def seconds(stored: str) -> float:
    """A duration setting, in seconds."""
    number = stored.rstrip("abcdefghijklmnopqrstuvwxyz")
    return float(number) * DURATION_UNITS[stored[len(number) :]]


KEYS: dict[str, Known] = {
    "relay": Known(
        "the URL of the relay named default (a shorthand for `sendstatus relay set default"
        " URL`, which adds it if need be; see `sendstatus relay`): smtp://HOST[:PORT],"
        " smtps://HOST[:PORT] or maildir:DIR (credentials never: they come from the"
        " environment or the credentials file)",
        _relay,
    ),
    "rate": Known(
        "the contracted speed shared by every engine, e.g. 36000/h, 600/min, 10/s (from"
        " 1/h to 1000000/s; unset: unlimited; a pause is `sendstatus stop`); engines follow a"
        " change within a second",
        _rate,
    ),
    "unsubscribe_url": Known(
        "the one-click unsubscribe URL template new mailings get, e.g."
        " https://shop.example.com/u/{unsubscribe_token} (a token sendstatus signs, which"
        " `sendstatus serve` answers)",
        _https_template,
    ),
    "unsubscribe_mailto": Known(
        "the unsubscribe address new mailings get, e.g. unsubscribe@shop.example.com", _address
    ),
    "suppress_unknown_users": Known(
        "yes (the default): a 5.1.1 refusal (no such mailbox) adds the address to the"
        " suppression list",
        _yes_no,
    ),
    "return_path": Known(
        "turns on VERP: each message's envelope sender becomes LOCAL+CODE@DOMAIN of this"
        " address, e.g. bounces@bounce.example.com, and bounces sent back to it are matched"
        " by `sendstatus intake`",
        check_return_path,
    ),
    "complaints_address": Known(
        "where the providers' feedback loops send complaints (ARF reports), e.g."
        " fbl@bounce.example.com: deliver it to the intake's mailbox too",
        _address,
    ),
    "suppress_bounces": Known(
        "yes (the default): a hard bounce (the address does not exist) adds the address to"
        " the suppression list",
        _yes_no,
    ),
    "guard_hard_bounces": Known(
        "the guard stops a sending mailing when more than this share of its last 5,000"
        " recipients sent hard-bounced or was blocked (once 500 were sent): 5% (the"
        " default), or off",
        _share_or_off,
    ),
    "guard_complaints": Known(
        "the guard stops a sending mailing when more than this share of its last 5,000"
        " recipients sent complained (once 1,000 were sent): 0.1% (the default), or off",
        _share_or_off,
    ),
    "guard_refusals": Known(
        "the guard stops a sending mailing when the relay refused more than this share of"
        " its last 5,000 recipients tried (once 200 were tried): 20% (the default), or off",
        _share_or_off,
    ),
    "window": Known(
        "the sending window new mailings get: the days and hours they may send in, e.g."
        f" '{window.EXAMPLE}' (24:00 allowed; without a zone, the operator's); outside it"
        " nothing goes out",
        _window,
    ),
    "domain_limits": Known(
        "limits per group of recipient domains, shared by every engine, e.g."
        f" '{domain_limits.EXAMPLE}': a rate per group and, after ':', the most of its"
        " messages one engine has in flight; a 4.7.x deferral halves its group's rate for a"
        " while; engines follow a change within seconds",
        domain_limits.normalised,
    ),
    "alert_command": Known(
        "a command run for each alert, given the alert as JSON on its stdin (killed after"
        " 10 s); only engines started with --allow-alert-command run it",
        _command,
    ),
    "alert_webhook": Known(
        "a URL each alert is POSTed to as JSON (10 s timeout), e.g."
        " https://hooks.example.com/sendstatus",
        _web_url,
    ),
    "alert_relay_down": Known(
        "alert when a sending mailing has waited for its relay this long: 5min (the default)",
        _duration,
    ),
    "alert_stalled": Known(
        "alert when a sending mailing has sent nothing for this long: 10min (the default)",
        _duration,
    ),
    "alert_completed": Known("yes: alert when a mailing completes; no (the default)", _yes_no),
}
# not a setting of its own any more: the URL of the relay named default
SHORTHAND = "relay"
# what a setting means while it is not set
DEFAULTS = {
    "suppress_unknown_users": "yes",
    "suppress_bounces": "yes",
    "guard_hard_bounces": "5%",
    "guard_complaints": "0.1%",
    "guard_refusals": "20%",
    "alert_relay_down": "5min",
    "alert_stalled": "10min",
    "alert_completed": "no",
}


def check_key(key: str) -> str:
    if key not in KEYS:
        raise SettingError(f"unknown setting {key!r}: known are {', '.join(KEYS)}")
    return key


def read(session: Session, key: str) -> str | None:
    """The stored value, or None when it is not set."""
    if check_key(key) == SHORTHAND:
        default = session.get(Relay, relays.DEFAULT_NAME)
        return None if default is None else default.url
    return read_one(session, value_reading(key))


@functools.cache
def value_reading(key: str) -> Reading[str | None]:
    """``read`` of a stored setting (the shorthand is a relay), to read with others."""
    statement = sa.select(col(Setting.value)).where(col(Setting.key) == check_key(key))
    return Reading(statement, lambda rows: rows[0][0] if rows else None)


def enabled(session: Session, key: str) -> bool:
    """A yes/no setting, its default while not set."""
    return (read(session, key) or DEFAULTS.get(key, "no")) == "yes"


def read_or_default(session: Session, key: str) -> str | None:
    """The stored value, else the default (None: neither)."""
    return read(session, key) or DEFAULTS.get(key)


def read_all(session: Session) -> dict[str, str | None]:
    """Every known setting, in the order of KEYS, None where not set."""
    stored: dict[str, str | None] = {row.key: row.value for row in session.exec(select(Setting))}
    stored[SHORTHAND] = read(session, SHORTHAND)
    return {key: stored.get(key) for key in KEYS}


def write(session: Session, key: str, value: str | None) -> str | None:
    """Stores ``value`` (None or empty unsets); returns what was stored."""
    if check_key(key) == SHORTHAND:
        try:
            return _write_default_relay(session, value)
        except SendStatusError as exc:
            raise SettingError(f"setting {key}: {exc}") from None
    row = session.get(Setting, key, with_for_update=True)
    if value is None or not value.strip():
        if row is not None:
            session.delete(row)
        return None
    try:
        stored = KEYS[key].check(value.strip())
    except SendStatusError as exc:
        raise SettingError(f"setting {key}: {exc}") from None
    if row is None:
        session.add(Setting(key=key, value=stored))
    else:
        row.value, row.updated_at = stored, utc_now()
        session.add(row)
    return stored


def _write_default_relay(session: Session, value: str | None) -> str | None:
    """``config set relay URL`` is ``relay set default URL`` (adding it if need be);
    ``config unset relay`` removes the relay named default, as ``relay rm default`` does."""
    if value is None or not value.strip():
        if session.get(Relay, relays.DEFAULT_NAME) is not None:
            relays.remove(session, relays.DEFAULT_NAME)
        return None
    return relays.put(session, relays.DEFAULT_NAME, value.strip()).url


def relay_in_use(session: Session, override: str | None) -> str | None:
    """The one relay of what sends through one (a test send, an engine's description):
    this process's override (``--smtp`` or its environment variable), else the stored relay
    named default, else the first stored one, else None: the default maildir (never while a
    relay is stored)."""
    return override or relays.main_url(session)
