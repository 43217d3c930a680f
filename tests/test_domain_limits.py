"""Limits per recipient domain: the parser, the stored setting, and how a throttling slows a
group down and lets it recover (issue 20)."""

import pytest

from sendstatus_tui.core.coordination import domain_rate
from sendstatus_tui.core.model.domain_limits import (
    KEY_LENGTH,
    DomainGroup,
    DomainLimitsError,
    parse_domain_limits,
)
from sendstatus_tui.core.model.models import NextSlot

EXAMPLE = "gmail.com,googlemail.com=20/s:10; yahoo.com=5/s"


@pytest.fixture
def config(run):
    assert run("init")[0] == 0
    return lambda *args: run("config", *args)


def test_groups_are_read_with_their_rate_and_in_flight_cap():
    gmail, yahoo = parse_domain_limits(EXAMPLE)
    assert gmail == DomainGroup(
        ("gmail.com", "googlemail.com"), 20.0, 10, "gmail.com,googlemail.com=20/s:10"
    )
    assert (yahoo.domains, yahoo.per_second, yahoo.in_flight) == (("yahoo.com",), 5.0, None)
    assert gmail.key == "gmail.com"
    # every unit --rate takes, spaces and case as an operator may write them
    (group,) = parse_domain_limits(" Hotmail.COM , outlook.com = 600/min : 3 ;")
    assert (group.domains, group.per_second, group.in_flight) == (
        ("hotmail.com", "outlook.com"),
        10.0,
        3,
    )
    assert parse_domain_limits("aol.com=3600/h")[0].per_second == 1.0
    assert parse_domain_limits("") == ()


def test_a_long_domain_gets_a_key_that_fits_its_rate_row():
    (group,) = parse_domain_limits("mail.a-very-long-provider-name.example.com=5/s")
    assert len(domain_rate.row_name(group.key)) <= 32 and len(group.key) == KEY_LENGTH


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("gmail.com=20/s; gmail.com=5/s", "gmail.com is in two groups"),
        ("gmail.com,yahoo.com=20/s; yahoo.com=5/s", "yahoo.com is in two groups"),
        ("gmail.com=20/fortnight", "not a rate: '20/fortnight'"),
        ("gmail.com=0/s", "would send nothing"),
        ("gmail.com=", "a group needs a rate"),
        ("gmail.com=unlimited", "a group needs a rate"),
        ("gmail.com=20/s;; yahoo.com=5/s", "an empty group"),
        ("=20/s", "the group names no domain"),
        ("gmail=20/s", "'gmail' is not a domain"),
        ("gm ail.com=20/s", "is not a domain"),
        ("gmail.com 20/s", "expected DOMAIN[,DOMAIN]=RATE[:N]"),
        ("gmail.com=20/s:0", "the most messages in flight, a whole number from 1"),
        ("gmail.com=20/s:many", "the most messages in flight"),
        ("gmail.com,gmail.com=20/s", "a domain is named twice"),
    ],
)
def test_limits_that_do_not_parse_get_one_error_and_nothing_is_stored(config, text, why):
    assert config("set", "domain_limits", EXAMPLE)[0] == 0
    status, out, err = config("set", "domain_limits", text)
    assert status == 1 and out == ""
    assert err.startswith("error: setting domain_limits: ") and why in err, err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert config("get", "domain_limits") == (0, f"{EXAMPLE}\n", "")
    with pytest.raises(DomainLimitsError):
        parse_domain_limits(text)


def test_the_setting_is_stored_shown_and_cleared(config, capsys):
    assert config("set", "domain_limits", " Gmail.com,googlemail.com = 20/s:10 ;yahoo.com=5/s") == (
        0,
        f"domain_limits = {EXAMPLE}\n",
        "",
    )
    assert config("get", "domain_limits") == (0, f"{EXAMPLE}\n", "")
    status, out, _ = config()  # the listing of every setting
    assert status == 0 and f"domain_limits           {EXAMPLE}" in out
    # a blank value never acts (docs/promises.md): it is `config unset` that clears it
    with pytest.raises(SystemExit) as usage_error:
        config("set", "domain_limits", "")
    assert usage_error.value.code == 2
    capsys.readouterr()  # argparse's usage message
    assert config("get", "domain_limits") == (0, f"{EXAMPLE}\n", "")
    assert config("unset", "domain_limits") == (0, "domain_limits: not set\n", "")
    status, out, _ = config("--json")
    assert status == 0 and '"domain_limits": null' in out


def test_a_throttling_halves_the_group_once_then_it_recovers_a_tenth_a_clean_minute(store):
    t = 1_000_000.0
    with store.write() as session:
        domain_rate.throttle(session, "gmail.com", "gmail.com", "4.7.28", 20.0, now=t)
        # the replies to the messages in flight then are the same throttling
        domain_rate.throttle(session, "gmail.com", "googlemail.com", "4.7.28", 20.0, now=t + 1)
    with store.read() as session:
        row = session.get(NextSlot, "domain:gmail.com")
        assert domain_rate.effective(row, 20.0, t + 30) == 10.0
        assert domain_rate.effective(row, 20.0, t + 61) == pytest.approx(11.0)
        # back at the configured rate after enough clean minutes, not above it
        assert domain_rate.effective(row, 20.0, t + 60 * 9) == 20.0
        (shown,) = domain_rate.throttles(session, {"gmail.com": 20.0}, now=t + 61)
        assert (shown.domain, shown.status, shown.per_second) == (
            "googlemail.com",
            "4.7.28",
            pytest.approx(11.0),
        )
        assert domain_rate.throttles(session, {"gmail.com": 20.0}, now=t + 60 * 9) == []
    with store.write() as session:  # a later throttling halves it again
        domain_rate.throttle(session, "gmail.com", "gmail.com", "4.7.0", 20.0, now=t + 121)
    with store.read() as session:
        row = session.get(NextSlot, "domain:gmail.com")
        assert domain_rate.effective(row, 20.0, t + 122) == pytest.approx(0.5 * 10 * 1.1**2)


def test_the_throttling_of_a_group_since_removed_limits_nothing(store):
    """A domain in no group is not slowed: neither by a throttling noted while it had one."""
    t = 1_000_000.0
    with store.write() as session:
        domain_rate.throttle(session, "yahoo.com", "yahoo.com", "4.7.0", 8.0, now=t)
    with store.read() as session:
        (shown,) = domain_rate.throttles(session, {"yahoo.com": 8.0}, now=t + 1)
        assert (shown.per_second, shown.ceiling) == (4.0, 8.0)
        assert domain_rate.throttles(session, {}, now=t + 1) == []
