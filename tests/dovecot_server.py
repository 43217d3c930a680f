"""A private Dovecot IMAP server on loopback for the IMAP intake's tests (Debian package
dovecot-imapd; .ci/run installs it), and a proxy that cuts a connection half-way.

The configuration, certificate, password file and log live in the test's tmp_path, the
sockets in a short directory under /tmp. Dovecot refuses to give mail to uid 0, so the
mail processes run as ``nobody``, with the mailboxes in a directory of their own under /tmp
that ``nobody`` can reach (pytest's tmp_path is private to root)."""

import contextlib
import imaplib
import os
import pwd
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from .ports import free_port

USER, PASSWORD = "bounces", "s3cret-for-tests"
KEYWORD = "SendstatusProcessed"


def why_no_dovecot() -> str | None:
    """Why these tests cannot run here, or None when they can."""
    if shutil.which("dovecot") is None:
        return "no dovecot binary (apt-get install dovecot-imapd; .ci/run does)"
    if shutil.which("openssl") is None:
        return "no openssl binary to make the test certificate"
    if os.geteuid() != 0:
        return "the private dovecot is started as root (it drops to nobody for the mail)"
    return None


class Dovecot:
    def __init__(self, directory: Path):
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.certificate = directory / "cert.pem"
        self.log = directory / "dovecot.log"
        self.imap_port, self.imaps_port = free_port(), free_port()
        self.process: subprocess.Popen | None = None
        nobody = pwd.getpwnam("nobody")
        self.mail = Path(tempfile.mkdtemp(prefix="sendstatus-dovecot-"))
        os.chmod(self.mail, 0o711)
        os.chown(self.mail, nobody.pw_uid, nobody.pw_gid)
        self._ids = (nobody.pw_uid, nobody.pw_gid)
        # its sockets: a path of at most 108 bytes, which pytest's tmp_path under xdist
        # (…/popen-gw0/test_…/) outgrows
        self.sockets = Path(tempfile.mkdtemp(prefix="dv-", dir="/tmp"))

    def url(self, scheme: str = "imaps", folder: str = "INBOX", user: str = USER) -> str:
        port = self.imaps_port if scheme == "imaps" else self.imap_port
        return f"{scheme}://{user}@127.0.0.1:{port}/{folder}"

    def start(self) -> "Dovecot":
        d = self.directory
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2"]
            + ["-keyout", str(d / "key.pem"), "-out", str(self.certificate)]
            + ["-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
            check=True,
            capture_output=True,
        )
        (d / "users").write_text(f"{USER}:{{PLAIN}}{PASSWORD}\n")
        (d / "state").mkdir()
        uid, gid = self._ids
        (d / "dovecot.conf").write_text(
            f"""
base_dir = {self.sockets}
state_dir = {d}/state
log_path = {self.log}
protocols = imap
listen = 127.0.0.1
ssl = yes
ssl_cert = <{self.certificate}
ssl_key = <{d}/key.pem
auth_failure_delay = 0
mail_location = maildir:{self.mail}/%u
passdb {{
  driver = passwd-file
  args = {d}/users
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={self.mail}/%u
}}
# the password file is in root's tmp_path
service auth {{
  user = root
}}
service auth-worker {{
  user = root
}}
# no penalty after a refused login (tests refuse some on purpose): the next login from
# 127.0.0.1 would wait 2 s and more
service anvil {{
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {self.imap_port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {self.imaps_port}
    ssl = yes
  }}
}}
"""
        )
        # what it says before its log is open (doveconf's refusals) goes to stderr
        stderr_path = d / "stderr"
        with stderr_path.open("wb") as stderr:
            self.process = subprocess.Popen(
                ["dovecot", "-F", "-c", str(d / "dovecot.conf")],
                stdout=subprocess.DEVNULL,
                stderr=stderr,
            )
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.imaps_port), timeout=1).close()
                return self
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    said = "".join(
                        path.read_text()[-2000:]
                        for path in (stderr_path, self.log)
                        if path.exists()
                    )
                    raise RuntimeError(
                        f"dovecot did not start (exit status {self.process.poll()}): {said}"
                    ) from None
                time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.mail, ignore_errors=True)
        shutil.rmtree(self.sockets, ignore_errors=True)

    # --- as a mail client -----------------------------------------------------------

    def client(self) -> imaplib.IMAP4_SSL:
        context = ssl.create_default_context(cafile=str(self.certificate))
        imap = imaplib.IMAP4_SSL("127.0.0.1", self.imaps_port, ssl_context=context)
        imap.login(USER, PASSWORD)
        return imap

    def append(self, *messages: bytes, folder: str = "INBOX") -> None:
        imap = self.client()
        try:
            for data in messages:
                status, response = imap.append(folder, None, None, data)
                assert status == "OK", response
        finally:
            imap.logout()

    def count(self, criteria: str = "ALL", folder: str = "INBOX") -> int:
        """How many messages of ``folder`` match an IMAP search."""
        imap = self.client()
        try:
            imap.select(folder, readonly=True)
            _, data = imap.uid("SEARCH", criteria)
            return len(data[0].split())
        finally:
            imap.logout()

    def processed(self) -> int:
        return self.count(f"KEYWORD {KEYWORD} SEEN")


class CuttingProxy:
    """A TCP proxy to ``port`` that closes its first connection once it has passed
    ``cut_after`` bytes from the server (mid-fetch), and passes later ones whole."""

    def __init__(self, port: int, cut_after: int):
        self.target, self.cut_after = port, cut_after
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.connections = 0
        self.cuts = 0
        self._open: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            server = socket.create_connection(("127.0.0.1", self.target))
            self._open += [client, server]
            limit = self.cut_after if self.connections == 1 else None
            threading.Thread(target=self._pump, args=(client, server, None), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, limit), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, limit: int | None) -> None:
        passed = 0
        try:
            while chunk := source.recv(4096):
                if limit is not None and passed + len(chunk) > limit:
                    sink.sendall(chunk[: limit - passed])
                    self.cuts += 1
                    break
                sink.sendall(chunk)
                passed += len(chunk)
        except OSError:
            pass
        for end in (source, sink):
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)
            end.close()

    def close(self) -> None:
        self.listener.close()
        for end in self._open:
            end.close()
