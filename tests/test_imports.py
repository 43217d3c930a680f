"""What the house's layout promises: the short commands start without the dashboard's
toolkit, and no test module leans on another's internals."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).parent


def imported_modules(*args: str) -> set[str]:
    """The modules the real command imports (``-X importtime``), after checking it worked."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "sendstatus_tui.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return {
        line.rsplit("|", 1)[1].strip()
        for line in result.stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    }


@pytest.mark.parametrize("command", [["ls"], ["ls", "--json"], ["show", "{ID}"]])
def test_ls_and_show_never_import_textual(db_url, make_mailing, command):
    mailing_id = make_mailing(recipients=2)
    args = [arg.replace("{ID}", str(mailing_id)) for arg in command]
    modules = imported_modules("--db", db_url, *args)
    assert "sendstatus_tui.core.store.store" in modules  # the probe sees what it imports
    textual = sorted(m for m in modules if m == "textual" or m.startswith("textual."))
    assert textual == []
    # nor what only the engine and the intake use: its metrics, an IMAP client, an SMTP server
    assert {"prometheus_client", "imaplib", "aiosmtpd"} & modules == set()


def test_no_test_module_imports_another():
    """Shared code lives in helpers.py, engine_processes.py, smtp_relay.py, ... and
    fixtures in conftest.py: a test module imports none of the others."""
    offenders = []
    for path in sorted(TESTS.glob("test_*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""] + [alias.name for alias in node.names]
                if node.level and any(n.split(".")[0].startswith("test_") for n in names):
                    offenders.append(f"{path.name}: from {'.' * node.level}{node.module or ''}")
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.startswith("tests.test_"):
                        offenders.append(f"{path.name}: import {alias.name}")
    assert offenders == []
