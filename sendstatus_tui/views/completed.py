"""Today's completed mailings (the H screen): which ones, and their rows."""

from datetime import datetime, time, tzinfo

from sendstatus_tui.core.model.models import Mailing
from sendstatus_tui.core.model.when import to_zone
from sendstatus_tui.views.cells import number
from sendstatus_tui.views.layout import Column

COLUMNS = (
    Column("ID", 3, fits_values=True),
    Column("Name", 16, grows=True),
    Column("Finished", 8, fits_values=True),  # a search's show their day too
    Column("Sent", 4, fits_values=True),
    Column("Failed", 6, fits_values=True),
    Column("Recipients", 10, fits_values=True),
)


def start_of_day(now: datetime, zone: tzinfo) -> datetime:
    """Midnight of ``now``'s day in ``zone`` (an aware time)."""
    local = to_zone(now, zone)
    return datetime.combine(local.date(), time(), tzinfo=zone)


def matching(mailings: list[Mailing], wanted: str) -> list[Mailing]:
    """Those whose name holds ``wanted`` (any case), or whose id it is."""
    wanted = wanted.strip().lower()
    return [m for m in mailings if wanted in m.name.lower() or wanted == str(m.id)]


def finished_today(mailings: list[Mailing], now: datetime, zone: tzinfo) -> list[Mailing]:
    """Of completed ``mailings``, those that finished since midnight in ``zone``."""
    midnight = start_of_day(now, zone)
    return [m for m in mailings if m.finished_at is not None and m.finished_at >= midnight]


def completed_row(
    mailing: Mailing, zone: tzinfo, *, with_date: bool = False
) -> tuple[int | str, ...]:
    """``with_date``: the day it finished too (a search finds older ones)."""
    assert mailing.id is not None and mailing.finished_at is not None
    finished = to_zone(mailing.finished_at, zone).strftime(
        "%Y-%m-%d %H:%M" if with_date else "%H:%M"
    )
    return (
        mailing.id,
        mailing.name,
        finished,
        number(mailing.sent),
        number(mailing.failed),
        number(mailing.total),
    )
