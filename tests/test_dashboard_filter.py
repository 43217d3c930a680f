"""'/': the filter keeps the header, counts what it hides in each pane's title, and takes
the cursor to the first match."""

from textual.widgets import Input

from sendstatus_tui.core.model.states import Area

from .helpers import open_dashboard, refresh, scenario, screen_lines, settle


def _titles(app) -> list[str]:
    return [str(app.query_one(f"#title-{area}").render()) for area in Area if area != Area.DONE]


@scenario
async def test_the_filter_keeps_the_header_and_counts_what_it_hides(db):
    db.sending("Flash sale")
    db.sending("Newsletter EN")
    db.scheduled("Weekly digest")
    db.add("Spring SALE")
    async with open_dashboard(db.store, size=(80, 24)) as (app, pilot):
        await pilot.press("slash", *"sale")
        await settle(pilot)
        lines = screen_lines(app)
        assert "Send Status" in lines[0]  # the header stays in view, the field under it
        assert lines[1].startswith("sale")
        assert _titles(app) == [
            "Sending now (1 of 2)",
            "Scheduled sendings (0 of 1)",
            "Sends to schedule (1)",
        ]
        await refresh(pilot)  # the counts hold across refreshes
        assert _titles(app)[0] == "Sending now (1 of 2)"
        await pilot.press("escape")
        await settle(pilot)
        assert _titles(app) == [
            "Sending now (2)",
            "Scheduled sendings (1)",
            "Sends to schedule (1)",
        ]


@scenario
async def test_enter_in_the_filter_focuses_the_first_match(db):
    db.sending("Flash sale")
    db.scheduled("Weekly digest")
    first = db.add("Digest for March")
    db.add("Spring news")
    later = db.add("Digest for April")
    async with open_dashboard(db.store) as (app, pilot):
        await pilot.press("slash", *"digest for")
        await settle(pilot)
        assert isinstance(app.focused, Input)  # still typing
        await pilot.press("enter")
        await settle(pilot)
        assert app.focused is app.dashboard.table(Area.STANDBY)
        assert app.dashboard.selected().mailing_id == first
        assert app.dashboard.table(Area.STANDBY).mailing_ids == [first, later]

        # an id finds its mailing too
        await pilot.press("slash", "escape", "slash", *str(later), "enter")
        await settle(pilot)
        assert app.dashboard.selected().mailing_id == later
