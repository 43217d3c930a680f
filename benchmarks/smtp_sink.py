"""Postfix's ``smtp-sink`` on loopback, for the benchmarks: a C SMTP server that accepts and
discards everything, much faster than any Python sink (DESIGN.md §5).

The machine need not have Postfix installed: without ``--smtp-sink PATH`` and without
``smtp-sink`` on the PATH, the Debian package is fetched once with ``apt-get download`` into
``~/.cache/sendstatus-bench/postfix`` and unpacked there with ``dpkg -x`` (nothing is
installed). The sink runs with ``-c``, so it writes a ``sess=N quit=N mesg=N`` line to its
standard output (a file here) for every message accepted: that file tells how many messages
it took and when the first one came.
"""

import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

CACHE = Path.home() / ".cache" / "sendstatus-bench" / "postfix"
_BINARY = Path("usr/sbin/smtp-sink")
_LIBRARIES = Path("usr/lib/postfix")
_COUNTERS = re.compile(rb"mesg=(\d+)")


class SinkUnavailable(RuntimeError):
    pass


def find_smtp_sink(explicit: str | None = None) -> tuple[Path, dict[str, str]]:
    """The smtp-sink binary and the environment it runs in (fetched into CACHE if need be)."""
    env = dict(os.environ)
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise SinkUnavailable(f"{path}: no such file")
        return path, env
    on_path = shutil.which("smtp-sink") or (
        "/usr/sbin/smtp-sink" if Path("/usr/sbin/smtp-sink").is_file() else None
    )
    if on_path:
        return Path(on_path), env
    binary = CACHE / _BINARY
    if not binary.is_file():
        _fetch_postfix(CACHE)
    env["LD_LIBRARY_PATH"] = os.pathsep.join(
        filter(None, [str(CACHE / _LIBRARIES), env.get("LD_LIBRARY_PATH")])
    )
    return binary, env


def _fetch_postfix(directory: Path) -> None:
    """``apt-get download postfix`` and ``dpkg -x`` into ``directory``."""
    if not (shutil.which("apt-get") and shutil.which("dpkg")):
        raise SinkUnavailable(
            "smtp-sink not found and no apt-get/dpkg to fetch it: pass --smtp-sink PATH"
        )
    directory.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="postfix-deb-") as download:
        print(f"fetching postfix's smtp-sink into {directory} (apt-get download postfix)")
        # the download directory must be readable by apt's sandbox user, or apt warns
        os.chmod(download, 0o755)
        fetched = subprocess.run(
            ["apt-get", "download", "postfix"], cwd=download, capture_output=True, text=True
        )
        packages = sorted(Path(download).glob("postfix_*.deb"))
        if fetched.returncode != 0 or not packages:
            raise SinkUnavailable(
                f"apt-get download postfix failed: {fetched.stderr.strip() or fetched.stdout}"
            )
        subprocess.run(["dpkg", "-x", str(packages[-1]), str(directory)], check=True)
    if not (directory / _BINARY).is_file():
        raise SinkUnavailable(f"the postfix package has no {_BINARY}")


def smtp_source_beside(sink_binary: Path) -> Path:
    """Postfix's ``smtp-source`` (a C client: N parallel sessions sending fixed-size
    messages), from the same package as ``sink_binary``; it runs in the sink's environment."""
    source = sink_binary.with_name("smtp-source")
    if not source.is_file():
        raise SinkUnavailable(f"no smtp-source beside {sink_binary}")
    return source


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class SmtpSink:
    """One smtp-sink process on 127.0.0.1, counting what it accepts."""

    def __init__(self, binary: Path, env: dict[str, str], workdir: Path):
        self.port = free_port()
        self.counters = workdir / "smtp-sink.counters"
        command = [str(binary), "-c"]
        if os.geteuid() == 0:  # it refuses to run as root without a user to switch to
            command += ["-u", pwd.getpwuid(os.geteuid()).pw_name]
        command += [f"127.0.0.1:{self.port}", "256"]
        self._stdout = open(self.counters, "wb")  # noqa: SIM115  closed in stop()
        self._stderr = open(workdir / "smtp-sink.log", "wb")  # noqa: SIM115
        self.process = subprocess.Popen(command, env=env, stdout=self._stdout, stderr=self._stderr)
        self._wait_until_listening()

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    def accepted(self) -> int:
        """Messages accepted so far (the last counter line the sink wrote)."""
        with open(self.counters, "rb") as stream:
            size = stream.seek(0, os.SEEK_END)
            stream.seek(max(0, size - 256))
            found = _COUNTERS.findall(stream.read())
        return int(found[-1]) if found else 0

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._stdout.close()
        self._stderr.close()

    def _wait_until_listening(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self._stderr.flush()
                log = self.counters.with_name("smtp-sink.log").read_text(errors="replace")
                raise SinkUnavailable(f"smtp-sink exited at once: {log.strip()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.02)
        self.stop()
        raise SinkUnavailable(f"smtp-sink did not listen on port {self.port}")
