"""The dashboard's header: how many engines run and who leads (issue 8), fitted with the
relay, the zone and the speed into the width there is."""

from datetime import timedelta

from sendstatus_tui.views.engine_fact import EngineFact, EngineWhere
from sendstatus_tui.views.header import Part, header_parts, header_status

from .helpers import FIXED_NOW, engine_beat, open_dashboard, scenario, screen_lines

HOLDER = "mailer-1:4242:abcd1234"


def fact(where: EngineWhere, running: int, holder: str | None = HOLDER) -> EngineFact:
    return EngineFact(where, holder, None, self_starting=True, running=running)


class TestEngineFact:
    def test_several_engines_are_counted_and_the_leader_named(self):
        elsewhere = fact(EngineWhere.ELSEWHERE, 3)
        assert (elsewhere.text(), elsewhere.leader_text()) == ("3 engines", "leader mailer-1")
        # this dashboard's engine leads them
        assert fact(EngineWhere.HERE, 2).leader_text() == "leader here"
        # this dashboard's engine is one of those that follow
        assert fact(EngineWhere.STARTING, 2).leader_text() == "leader mailer-1"
        # between the death of a leader and the next one's lead
        assert fact(EngineWhere.NONE, 2, holder=None).leader_text() == "no leader"

    def test_one_engine_is_told_where_it_runs_as_before(self):
        assert fact(EngineWhere.ELSEWHERE, 1).text() == "engine on mailer-1"
        assert fact(EngineWhere.HERE, 1).text() == "engine here"
        # a lease held by an engine whose heartbeat is not written yet
        assert fact(EngineWhere.ELSEWHERE, 0).text() == "engine on mailer-1"
        assert fact(EngineWhere.NONE, 0, holder=None).text() == "no engine: starting one"
        assert all(fact(where, 1).leader_text() is None for where in EngineWhere)


class TestHeaderStatus:
    RELAY_OK = "relay ok"
    SPEED = "1,200/min of rate 36000/h"

    def parts(self, relay: str | None = RELAY_OK) -> list[Part]:
        return header_parts(relay, fact(EngineWhere.ELSEWHERE, 3), "Europe/Rome", self.SPEED)

    def test_everything_shows_where_it_fits(self):
        assert header_status(self.parts(), 200) == (
            "relay ok · 3 engines · leader mailer-1 · Europe/Rome · 1,200/min of rate 36000/h"
        )

    def test_the_least_important_part_is_left_out_first(self):
        widths = {
            79: "relay ok · 3 engines · leader mailer-1 · Europe/Rome",  # no speed
            51: "relay ok · 3 engines · Europe/Rome",  # nor the leader
            33: "relay ok · 3 engines",  # nor the zone
            19: "relay ok",  # the most important part always shows
            3: "relay ok",
        }
        for width, status in widths.items():
            assert header_status(self.parts(), width) == status, width
            assert len(status) <= width or status == "relay ok"

    def test_a_short_part_never_shows_where_a_more_important_one_does_not(self):
        parts = [Part("a very long first part", 0), Part("long second part", 1), Part("x", 2)]
        assert header_status(parts, 30) == "a very long first part"

    def test_parts_with_nothing_to_say_take_no_room(self):
        parts = header_parts(None, fact(EngineWhere.ELSEWHERE, 1), "Europe/Rome", None)
        assert header_status(parts, 80) == "engine on mailer-1 · Europe/Rome"


def beating(db, *engines: tuple[str, int, str, int]) -> None:
    """Heartbeats of engines as (host, pid, role, seconds silent before FIXED_NOW)."""
    for host, pid, role, silent in engines:
        beat = engine_beat(host, pid, role, FIXED_NOW - timedelta(hours=1))
        db.heartbeat(beat, FIXED_NOW - timedelta(seconds=silent))


@scenario
async def test_the_header_counts_the_running_engines_and_names_the_leader(db):
    db.engine_elsewhere(HOLDER)
    beating(
        db,
        ("mailer-1", 4242, "leader", 0),
        ("mailer-1", 4243, "sender", 1),
        ("mailer-2", 77, "sender", 2),
        ("mailer-3", 9, "sender", 60),  # lost: not counted
    )
    async with open_dashboard(db.store, size=(80, 24)) as (app, pilot):
        assert app.sub_title == "3 engines · leader mailer-1 · Europe/Rome"
        assert "3 engines · leader mailer-1 · Europe/Rome" in screen_lines(app)[0]
    async with open_dashboard(db.store, size=(200, 50)) as (app, pilot):
        assert app.title == "Send Status"
        assert "Send Status — 3 engines · leader mailer-1 · Europe/Rome" in screen_lines(app)[0]


@scenario
async def test_one_engine_beating_is_named_by_its_host(db):
    db.engine_elsewhere(HOLDER)
    beating(db, ("mailer-1", 4242, "leader", 0), ("mailer-2", 77, "sender", 60))
    async with open_dashboard(db.store, size=(80, 24)) as (app, pilot):
        assert app.sub_title == "engine on mailer-1 · Europe/Rome"


@scenario
async def test_a_leader_whose_lease_lapsed_is_not_counted(db):
    """Killed while leading: its row says leader until it is silent for 15 s, but its lease
    (renewed with its heartbeat) lapsed after 5: it runs no more."""
    beating(
        db,
        ("mailer-1", 4242, "leader", 6),
        ("mailer-1", 4243, "sender", 0),
        ("mailer-2", 77, "sender", 0),
    )
    async with open_dashboard(db.store, size=(80, 24)) as (app, pilot):
        assert app.sub_title == "2 engines · no leader · Europe/Rome"


@scenario
async def test_the_header_names_a_relay_an_engine_finds_down_and_since_when(db):
    """Issue 20: while the other relays carry the mailings, the header says which relay a
    running engine finds down (the oldest time, in the operator's zone); a lost engine's
    view is not shown."""
    from sendstatus_tui.core.coordination import relay_breakers

    db.engine_elsewhere(HOLDER)
    beating(db, ("mailer-1", 4242, "leader", 0), ("mailer-2", 77, "sender", 60))
    with db.store.write() as session:
        down = relay_breakers.Down(FIXED_NOW - timedelta(minutes=5), "cannot reach it")
        relay_breakers.publish(session, "mailer-1:4242:abcd1234", {"backup": down})
        relay_breakers.publish(session, "mailer-2:77:abcd1234", {"main": down})  # lost
    async with open_dashboard(db.store, size=(120, 24)) as (app, pilot):
        since = (FIXED_NOW - timedelta(minutes=5)).astimezone(app.zone)
        assert app.sub_title == (
            f"relay backup down since {since:%H:%M} · engine on mailer-1 · Europe/Rome"
        )


@scenario
async def test_the_row_of_a_mailing_says_which_of_its_relays_is_down(db):
    """Issue 20: a mailing that uses a relay found down says so in its row (the others
    carry it meanwhile); one that does not use it shows its start as before."""
    from sendstatus_tui.core.coordination import relay_breakers
    from sendstatus_tui.core.model.models import Mailing

    db.engine_elsewhere(HOLDER)
    beating(db, ("mailer-1", 4242, "leader", 0))
    db.sending("Spring")  # every relay, backup among them
    main_only = db.sending("Autumn")
    with db.store.write() as session:
        session.get(Mailing, main_only).relays = "main"
        down = relay_breakers.Down(FIXED_NOW - timedelta(minutes=5), "cannot reach it")
        relay_breakers.publish(session, HOLDER, {"backup": down})
    async with open_dashboard(db.store, size=(120, 24)) as (app, pilot):
        since = (FIXED_NOW - timedelta(minutes=5)).astimezone(app.zone)
        lines = screen_lines(app)
        spring = next(line for line in lines if "Spring" in line)
        autumn = next(line for line in lines if "Autumn" in line)
        assert f"relay backup down since {since:%H:%M}" in spring
        assert "down" not in autumn
