"""The suppression list through the command line: what it keeps, how addresses match, its
files; and the relay's 5.1.1 refusals added to it when the operator asks for that."""

import json

import pytest

from .helpers import mailing, wait_until
from .smtp_relay import RelayScript


@pytest.fixture(autouse=True)
def database(run):
    """The database exists (a failed first command leaves none)."""
    assert run("init")[0] == 0


def listed(run) -> list[dict]:
    status, out, err = run("suppress", "ls", "--json")
    assert status == 0, err
    return json.loads(out)


def test_addresses_match_as_duplicates_do(run):
    assert run("suppress", "add", "Ann@Example.COM", "bob@münchen.de", "--reason", "asked")[1] == (
        "2 addresses added\n"
    )
    # the same mailboxes in other spellings: already there
    status, out, _ = run("suppress", "add", "ann@example.com", "BOB@xn--mnchen-3ya.de")
    assert (status, out) == (0, "0 addresses added; 2 already on the list\n")
    assert [(e["address"], e["reason"]) for e in listed(run)] == [
        ("Ann@example.com", "asked"),
        ("bob@münchen.de", "asked"),
    ]
    status, out, _ = run("suppress", "rm", "bob@XN--MNCHEN-3YA.DE", "carl@example.com")
    assert (status, out) == (0, "1 address removed; 1 not on the list\n")
    assert [e["address"] for e in listed(run)] == ["Ann@example.com"]


def test_bad_input_changes_nothing(run, tmp_path):
    status, _, err = run("suppress", "add", "good@example.com", "not-an-address")
    assert status == 1
    assert err.startswith("error: 1 invalid address, nothing changed: 'not-an-address':")
    assert listed(run) == []
    bad = tmp_path / "bad.csv"
    bad.write_text("email,reason\nok@example.com,x\nbroken\n", encoding="utf-8")
    status, _, err = run("suppress", "import", str(bad))
    assert status == 1 and err.startswith(f"error: {bad}: 1 invalid address, nothing changed")
    assert "line 3: 1 fields, the header has 2" in err
    assert listed(run) == []
    assert run("suppress", "import", str(tmp_path / "none.txt"))[2] == (
        f"error: {tmp_path / 'none.txt'}: no such file\n"
    )


def test_export_and_import_round_trip(run, tmp_path):
    plain = tmp_path / "plain.txt"
    plain.write_text("a@example.com\n\nB@example.com\nc@例え.jp\n", encoding="utf-8")
    assert run("suppress", "import", str(plain))[1] == f"{plain}: 3 addresses added\n"
    exported = tmp_path / "list.csv"
    assert run("suppress", "export", str(exported))[1] == f"{exported}: 3 addresses written\n"
    assert exported.read_text(encoding="utf-8").splitlines()[0] == "email,reason,added_at"
    assert run("suppress", "rm", "a@example.com", "b@example.com", "c@例え.jp")[0] == 0
    assert run("suppress", "import", str(exported))[1] == f"{exported}: 3 addresses added\n"
    assert {e["address"] for e in listed(run)} == {"a@example.com", "B@example.com", "c@例え.jp"}


def test_unknown_users_are_suppressed_by_default(run, store, make_mailing, relays, engine_for):
    relay = relays(
        RelayScript(
            rcpt_replies={
                "person0@example.com": ["550 5.1.1 <person0@example.com>: no such user"],
                "person1@example.com": ["550 5.7.1 policy"],
            }
        )
    )
    mailing_id = make_mailing(recipients=4)
    assert run("send-now", str(mailing_id))[0] == 0
    engine_for(relay)
    wait_until(lambda: mailing(store, mailing_id).state == "completed", what="the mailing done")
    assert [(e["address"], e["reason"]) for e in listed(run)] == [
        ("person0@example.com", "550 5.1.1 <person0@example.com>: no such user")
    ]


def test_unknown_users_are_not_suppressed_when_switched_off(
    run, store, make_mailing, relays, engine_for
):
    """suppress_unknown_users is on by default (as suppress_bounces): `no` switches it off."""
    assert run("config", "set", "suppress_unknown_users", "no")[0] == 0
    relay = relays(RelayScript(rcpt_replies={"person0@example.com": ["550 5.1.1 no such user"]}))
    mailing_id = make_mailing(recipients=2)
    assert run("send-now", str(mailing_id))[0] == 0
    engine_for(relay)
    wait_until(lambda: mailing(store, mailing_id).state == "completed", what="the mailing done")
    assert mailing(store, mailing_id).failed == 1
    assert listed(run) == []
