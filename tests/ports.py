"""Free loopback ports for the servers tests start (relays, dovecot, metrics, serve).

Each pytest-xdist worker takes its ports from a range of its own, and a run without xdist
(the slow set) from one below theirs, all below the ephemeral ports (32768 and up on Linux)
the kernel hands out to outgoing connections: a server stopped and started again on its port
(a relay down, then up) never finds another worker's server there, and the ports after a
free one (``engine --workers 2 --metrics PORT`` serves PORT+1 and PORT+2) are not taken in
the meantime by a connection to the database.

A port handed out is not handed out again by the next calls of the same process, though no
server has bound it yet: two calls in a row drew the same port once in CI (one chance in
2,000), and Dovecot refused its two listeners on it.
"""

import os
import random
import socket
from collections import deque

PORTS_PER_WORKER = 2000
FIRST_PORT = 20000
_handed_out: deque[int] = deque(maxlen=256)  # recent ports, bound by now or soon


def free_port(count: int = 1) -> int:
    """A loopback port from which ``count`` ports in a row are free now."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")  # gw0, gw1, ...
    # without xdist: the range just below the workers'
    number = int(worker[2:]) if worker.startswith("gw") else -1
    start = FIRST_PORT + number * PORTS_PER_WORKER
    firsts = range(start, start + PORTS_PER_WORKER - count + 1)
    for first in random.sample(firsts, len(firsts)):
        ports = range(first, first + count)
        if not any(port in _handed_out for port in ports) and _all_free(first, count):
            _handed_out.extend(ports)
            return first
    raise AssertionError(f"no {count} free ports in a row in {start}..{firsts[-1] + count - 1}")


def _all_free(first: int, count: int) -> bool:
    for port in range(first, first + count):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:  # in use
                return False
    return True
