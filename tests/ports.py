"""Free loopback ports for the servers tests start (relays, dovecot, metrics, serve).

Under pytest-xdist each worker takes its ports from a range of its own, below the ephemeral
ports (32768 and up on Linux) the kernel hands out: a server stopped and started again on
its port (a relay down, then up) never finds another worker's server there.
"""

import os
import random
import socket

PORTS_PER_WORKER = 2000
FIRST_PORT = 20000


def free_port(count: int = 1) -> int:
    """A loopback port from which ``count`` ports in a row are free now."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")  # gw0, gw1, ...
    if not worker.startswith("gw"):
        while True:
            first = _kernel_port()
            if first + count <= 65536 and _all_free(first, count):
                return first
    start = FIRST_PORT + int(worker[2:]) * PORTS_PER_WORKER
    firsts = range(start, start + PORTS_PER_WORKER - count + 1)
    for first in random.sample(firsts, len(firsts)):
        if _all_free(first, count):
            return first
    raise AssertionError(f"no {count} free ports in a row in {start}..{firsts[-1] + count - 1}")


def _kernel_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _all_free(first: int, count: int) -> bool:
    for port in range(first, first + count):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:  # in use
                return False
    return True
