"""The free ports the tests' servers take (tests/ports.py)."""

from .ports import free_port


def test_ports_handed_out_one_after_the_other_differ_though_none_is_bound():
    """Servers made before any starts (Dovecot's IMAP and IMAPS listeners, two relays) get
    ports of their own: 200 drawn at random from 2,000 repeat one in all but 1 run in 20,000."""
    singles = [free_port() for _ in range(140)]
    rows = [port for first in (free_port(3) for _ in range(20)) for port in range(first, first + 3)]
    ports = singles + rows
    assert len(set(ports)) == len(ports) == 200
