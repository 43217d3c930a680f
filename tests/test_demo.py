"""`sendstatus demo` in a real terminal (a pseudo-terminal): it quits promptly on `q`, says
what it waits for, and removes its files unless --keep."""

import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

QUIT_WITHIN_SECONDS = 10  # a hang fails the test; the figure seen is well under a second


def run_demo(tmp_path: Path, *options: str) -> str:
    """Runs the demo on an 80×24 pseudo-terminal, presses q once it is drawn; returns
    everything it wrote (screen and messages)."""
    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    os.set_blocking(controller, False)
    environment = {**os.environ, "TMPDIR": str(tmp_path), "COLUMNS": "80", "LINES": "24"}
    process = subprocess.Popen(
        [sys.executable, "-m", "sendstatus_tui.cli.main", "demo", "--no-blink", *options],
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
        env=environment,
        close_fds=True,
    )
    os.close(terminal)
    output = b""

    def read_until(done, timeout: float) -> None:
        nonlocal output
        deadline = time.monotonic() + timeout
        while not done() and time.monotonic() < deadline:
            if select.select([controller], [], [], 0.1)[0]:
                try:
                    output += os.read(controller, 65536)
                except OSError:  # the process ended and closed the terminal
                    return

    try:
        # drawn, and refreshed once the engine holds the lease: it takes keys by then
        read_until(lambda: b"engine here" in output, 60)
        assert b"engine here" in output, "the dashboard was never drawn with its engine"
        os.write(controller, b"q")
        pressed = time.monotonic()
        read_until(lambda: process.poll() is not None, QUIT_WITHIN_SECONDS)  # to the last word
        remaining = QUIT_WITHIN_SECONDS - (time.monotonic() - pressed)
        assert process.wait(max(remaining, 0.1)) == 0
    finally:
        if process.poll() is None:
            process.kill()
        os.close(controller)
    return re.sub(
        r"\x1b\[[0-9;?<>=$]*[a-zA-Z~]|\x1b[\]P][^\x07\x1b]*(\x07|\x1b\\)",
        "",
        output.decode(errors="replace"),
    )


@pytest.mark.parametrize("keep", [False, True])
def test_the_demo_quits_promptly_and_cleans_up_unless_kept(tmp_path, keep):
    text = run_demo(tmp_path, *(["--keep"] if keep else []))
    assert "stopping the engine: finishing the batches in flight…" in text
    left = list(tmp_path.glob("sendstatus-demo-*"))
    if keep:
        (directory,) = left
        assert f"demo files (database, maildir, engine log) kept in {directory}" in text
        assert (directory / "demo.db").exists() and (directory / "engine.log").exists()
    else:
        assert left == []
        assert "demo files removed (" in text and "--keep keeps them)" in text
