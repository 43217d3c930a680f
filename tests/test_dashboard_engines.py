"""E: the engines on the database, from their heartbeats (``sendstatus engines`` on the
dashboard), on a default 80×24 terminal."""

from datetime import timedelta

from textual.widgets import Label

from sendstatus_tui.tui.screens.engines import EnginesScreen

from .helpers import (
    FIXED_NOW,
    engine_beat,
    footer_keys,
    open_dashboard,
    scenario,
    screen_lines,
    settle,
    wait_for_screen,
)

SMALL = (80, 24)
BUSY = "connections busy 95% at 300 msg/s"
REFUSED = "the relay refused connection 2: 421 4.7.0 Too many"


def shown(app) -> list[str]:
    """The E screen's lines under its header and title, as the operator reads them."""
    lines = [line.rstrip() for line in screen_lines(app)]
    assert len(lines) == 24
    return [line.removeprefix(" ") for line in lines[2:-1]]


async def open_engines(pilot) -> EnginesScreen:
    await pilot.press("E")
    screen = await wait_for_screen(pilot, EnginesScreen)
    await settle(pilot)
    return screen


def title_of(screen: EnginesScreen) -> str:
    return str(screen.query_one("#engines-title", Label).render())


@scenario
async def test_e_shows_the_leader_a_sender_and_a_lost_engine(db):
    # FIXED_NOW is 10:00 in Rome
    leader = engine_beat(
        "mailer-1", 4242, "leader", FIXED_NOW - timedelta(hours=2), sending=(3, 7),
        sent=12_345, rate=299.6, connections=4, reason=BUSY,
    )  # fmt: skip
    sender = engine_beat("mailer-2", 515, "sender", FIXED_NOW - timedelta(minutes=30))
    lost = engine_beat(
        "mailer-3", 77, "sender", FIXED_NOW - timedelta(minutes=20), connections=1,
        reason=f"{REFUSED} connections from your IP",
    )  # fmt: skip
    db.heartbeat(leader, FIXED_NOW - timedelta(seconds=1))
    db.heartbeat(sender, FIXED_NOW)
    db.heartbeat(lost, FIXED_NOW - timedelta(seconds=42))
    async with open_dashboard(db.store, size=SMALL) as (app, pilot):
        screen = await open_engines(pilot)
        assert title_of(screen) == "Engines on this database (3), start times in Europe/Rome"
        # all of it on the 80×24 screen (under the header and the title), the reason of
        # the engine's connections wrapped under itself
        assert shown(app)[:12] == [
            "mailer-1 pid 4242: leader, since 2030-03-04 08:00 Europe/Rome",
            "  sending 3, 7; 12,345 sent, 300 msg/s",
            f"  4 relay connections ({BUSY})",
            "",
            "mailer-2 pid 515: sender, since 2030-03-04 09:30 Europe/Rome",
            "  sending nothing; 0 sent, 0 msg/s",
            "  0 relay connections",
            "",
            "mailer-3 pid 77: lost (silent 42 s), since 2030-03-04 09:40 Europe/Rome",
            "  sending nothing; 0 sent, 0 msg/s",
            f"  1 relay connection ({REFUSED}",
            "  connections from your IP)",
        ]
        assert footer_keys(app)["escape"] == "Back"
        await pilot.press("escape")
        await pilot.pause()
        assert app.screen is app.dashboard
        # E closes it too
        await open_engines(pilot)
        await pilot.press("E")
        await pilot.pause()
        assert app.screen is app.dashboard


@scenario
async def test_e_says_when_no_engine_runs_on_the_database(db):
    async with open_dashboard(db.store, size=SMALL) as (app, pilot):
        screen = await open_engines(pilot)
        assert title_of(screen) == "Engines on this database (0), start times in Europe/Rome"
        assert shown(app)[0] == "no engine running on this database"
