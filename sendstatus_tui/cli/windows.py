"""``--window`` of ``mailing add``, ``schedule`` and ``send-now``: the days and hours a mailing
may send in, read in the zone it is planned in."""

from typing import Any

from sendstatus_tui import config
from sendstatus_tui.core.model.window import ALWAYS, EXAMPLE, parse_window

HELP = (
    f"the days and hours it may send in, e.g. '{EXAMPLE}' (24:00 allowed; without a zone:"
    f" --tz, else the zone it was scheduled in, else yours); '{ALWAYS}': any hour;"
    " default: `config get window` for a new mailing, its own for one that has one"
)


def add_option(parser: Any) -> None:
    parser.add_argument("--window", metavar="'DAYS HH:MM-HH:MM[,...][; ...] [ZONE]'", help=HELP)


def given(args: Any) -> bool:
    return args.window is not None


def stored(args: Any, planned_zone: str | None = None) -> str | None:
    """``--window`` as the mailing keeps it (naming its zone), None for ``always``; read in
    --tz when given, else in ``planned_zone`` (where its time was typed), else the
    operator's zone. Refused with the reason, before anything is written."""
    parsed = parse_window(args.window, args.tz or planned_zone or config.zone_name(None))
    return None if parsed is None else parsed.text


def described(window: str | None) -> str:
    """How a command's confirmation ends for a mailing with a window."""
    return f"; sends only {window}" if window else ""
