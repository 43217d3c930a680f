"""The intake at scale: bounce messages through ``sendstatus intake maildir:DIR`` into a
big mailing, against a bare parse of the same messages with the ``email`` package.

    python benchmarks/bench_intake.py [--messages 100000] [--recipients 1000000]
                                      [--directory DIR]

A fresh SQLite file holds one completed mailing of ``--recipients`` recipients, all counted
sent (written by one SQL statement in the import's form). A maildir gets ``--messages``
delivery status notifications, each sent back to the real VERP return path of a distinct
recipient (its code signed with the database's key), quoting the original's headers with
its signed ``X-Sendstatus-Recipient``, as Postfix writes them: 90 % hard bounces (5.1.1),
5 % blocked (5.7.1), 5 % delayed (4.4.1).

Then, each in a child process of its own:

- bare: every message of ``new/`` read and parsed with ``email.message_from_bytes``, and
  nothing else; before and after ours, the faster counts (the harsher comparison);
- ours: ``sendstatus intake maildir:DIR`` (parse, apply in a transaction each, the guard's
  check, move to ``cur/``, a log line each into a file).

Printed: both rates in messages per second, ours / bare (aim: at least 0.5), the processor
time of each, and ours' peak resident memory (VmHWM of its process; aim: under 150 MB).
Finally the books are checked: the mailing's counters against the rows.
"""

import argparse
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from email.utils import formatdate
from pathlib import Path

from sqlmodel import select

from sendstatus_tui.core.importing.drafts import MailingDraft, create_mailing
from sendstatus_tui.core.model import signing
from sendstatus_tui.core.model.models import Mailing, Recipient
from sendstatus_tui.core.model.verp import sign
from sendstatus_tui.core.store.store import Store

RATIO_AIM, MEMORY_AIM_MB = 0.5, 150
RETURN_PATH_DOMAIN = "bounce.example.com"
DRAFT = MailingDraft(
    name="Big list",
    subject="Hello {first_name}",
    sender="Shop <news@shop.example.org>",
    text_body="Hello {first_name},\n\nour news of the week.\n",
    unsubscribe_url="https://shop.example.org/u/{unsubscribe_token}",
)
# a Postfix DSN, as it arrives in the bounce maildir (Delivered-To added by virtual delivery)
DSN = """\
Return-Path: <>
Delivered-To: {verp}
Received: by mx-bounce.example.com (Postfix) id 4Xyz{n:08d}; {date}
Date: {date}
From: MAILER-DAEMON@mx.example.net (Mail Delivery System)
Subject: Undelivered Mail Returned to Sender
To: {verp}
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status;
\tboundary="B{n:08d}/mx.example.net"
Message-Id: <{n:08d}.A1B2C3@mx.example.net>

This is a MIME-encapsulated message.

--B{n:08d}/mx.example.net
Content-Description: Notification
Content-Type: text/plain; charset=us-ascii

This is the mail system at host mx.example.net.

I'm sorry to have to inform you that your message could not
be delivered to one or more recipients. It's attached below.

<{address}>: host mail.example.com[192.0.2.7] said: {reply}

--B{n:08d}/mx.example.net
Content-Description: Delivery report
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.net
X-Postfix-Queue-ID: 4Xyz{n:08d}
Arrival-Date: {date}

Final-Recipient: rfc822; {address}
Original-Recipient: rfc822;{address}
Action: {action}
Status: {status}
Remote-MTA: dns; mail.example.com
Diagnostic-Code: smtp; {reply}

--B{n:08d}/mx.example.net
Content-Description: Undelivered Message Headers
Content-Type: text/rfc822-headers

From: Shop <news@shop.example.org>
To: {address}
Subject: Hello Person {recipient}
Date: {date}
Message-ID: <m1.r{recipient}.6fb44d7d504d375b@shop.example.org>
MIME-Version: 1.0
X-Sendstatus-Recipient: {code}
Feedback-ID: 1:mailing:sendstatus
List-Unsubscribe: <https://shop.example.org/u/abcdefghijklmnopqrstuvwxyz>
List-Unsubscribe-Post: List-Unsubscribe=One-Click
Content-Type: text/plain; charset="utf-8"

--B{n:08d}/mx.example.net--
"""
KINDS = [  # (share in twentieths, Action, Status, reply)
    (18, "failed", "5.1.1", "550 5.1.1 <{address}>: Recipient address rejected: User unknown"),
    (1, "failed", "5.7.1", "550 5.7.1 Message rejected due to local policy"),
    (1, "delayed", "4.4.1", "451 4.4.1 Connection timed out"),
]
BARE = textwrap.dedent(
    """
    import email, os, sys
    new = sys.argv[1]
    count = 0
    for name in sorted(os.listdir(new)):
        with open(os.path.join(new, name), "rb") as stream:
            email.message_from_bytes(stream.read())
        count += 1
    print(count)
    """
)


def build(directory: Path, recipients: int) -> tuple[Store, int]:
    """A fresh SQLite file with one completed mailing of ``recipients``, all counted sent."""
    csv = directory / "one.csv"
    csv.write_text("email,first_name\nperson0@example.com,Person 0\n", encoding="utf-8")
    store = Store(f"sqlite:///{directory / 'sendstatus.db'}")
    with store.write() as session:
        mailing, _ = create_mailing(session, DRAFT, csv)
        mailing_id = mailing.id
        assert mailing_id is not None
        session.connection().exec_driver_sql(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)"
            " INSERT INTO recipient (mailing_id, email, mailbox, field_values, status, attempts)"
            " SELECT ?, 'person' || i || '@example.com', 'person' || i || '@example.com',"
            " '[\"Person ' || i || '\"]', 'sent', 1 FROM n",
            (recipients - 1, mailing_id),
        )
        session.connection().exec_driver_sql(
            "UPDATE recipient SET status = 'sent', attempts = 1 WHERE mailing_id = ?",
            (mailing_id,),
        )  # the first, the import's
        mailing.total = mailing.sent = recipients
        mailing.state = "completed"
        session.add(mailing)
    with store.engine.connect() as connection:
        connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    return store, mailing_id


def fill_maildir(store: Store, mailing_id: int, box: Path, messages: int) -> int:
    """``messages`` DSNs into ``box/new``, one per recipient, spread over the list."""
    for sub in ("new", "cur", "tmp"):
        (box / sub).mkdir(parents=True)
    with store.read() as session:
        key = signing.signing_key(session)
        assert key is not None
        ids = session.exec(
            select(Recipient.id).where(Recipient.mailing_id == mailing_id).order_by(Recipient.id)
        ).all()
    step = max(1, len(ids) // messages)
    chosen = ids[::step][:messages]
    date = formatdate(localtime=False)
    kinds = [kind for share, *kind in KINDS for _ in range(share)]
    size = 0
    for n, recipient_id in enumerate(chosen):
        action, status, reply = kinds[n % len(kinds)]
        address = f"person{recipient_id - ids[0]}@example.com"
        code = sign(key, mailing_id, recipient_id)
        data = (
            DSN.format(
                n=n,
                verp=f"bounces+{code}@{RETURN_PATH_DOMAIN}",
                code=code,
                date=date,
                address=address,
                recipient=recipient_id,
                action=action,
                status=status,
                reply=reply.format(address=address),
            )
            .replace("\n", "\r\n")
            .encode()
        )
        name = f"{1_700_000_000 + n}.M{n}P1.mx-bounce"
        (box / "new" / name).write_bytes(data)
        size += len(data)
    return size


def timed(command: list[str], log: Path) -> tuple[float, float, float, str]:
    """Runs ``command``: (wall seconds, processor seconds, peak resident MB, its stdout).
    The peak is the child's own VmHWM, read while it runs (ru_maxrss would count the pages
    this process had when it forked the child, before the exec)."""
    started = time.perf_counter()
    out_path = log.with_suffix(".out")
    with open(log, "wb") as err, open(out_path, "wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=err)
        peak_kb = 0
        while True:
            try:
                status_text = Path(f"/proc/{process.pid}/status").read_text()
            except OSError:
                status_text = ""
            for line in status_text.splitlines():
                if line.startswith("VmHWM:"):
                    peak_kb = max(peak_kb, int(line.split()[1]))
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                break
            time.sleep(0.1)
    wall = time.perf_counter() - started
    if status != 0:
        raise SystemExit(f"{command[:4]} failed ({status}):\n{log.read_text()[-2000:]}")
    return wall, usage.ru_utime + usage.ru_stime, peak_kb / 1024, out_path.read_text()


def bare(box: Path, directory: Path) -> tuple[float, float, float, str]:
    return timed([sys.executable, "-c", BARE, str(box / "new")], directory / "bare.log")


def ours(store: Store, box: Path, directory: Path) -> tuple[float, float, float, str]:
    env_command = [sys.executable, "-m", "sendstatus_tui.cli.main", "--db", store.url]
    return timed([*env_command, "intake", f"maildir:{box}"], directory / "intake.log")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--recipients", type=int, default=1_000_000)
    parser.add_argument("--directory", type=Path, help="where to work (default: a temporary one)")
    args = parser.parse_args()
    if not 0 < args.messages <= args.recipients:
        parser.error("expected 0 < --messages <= --recipients")
    with tempfile.TemporaryDirectory(dir=args.directory) as temporary:
        directory = Path(temporary)
        started = time.perf_counter()
        store, mailing_id = build(directory, args.recipients)
        print(f"{args.recipients:,} recipients in {time.perf_counter() - started:.1f} s")
        box = directory / "bounces"
        started = time.perf_counter()
        size = fill_maildir(store, mailing_id, box, args.messages)
        print(
            f"{args.messages:,} DSNs ({size / args.messages:,.0f} bytes each) in"
            f" {time.perf_counter() - started:.1f} s"
        )
        before = bare(box, directory)
        mine = ours(store, box, directory)
        for name in os.listdir(box / "cur"):  # back to new/ for the second bare parse
            os.rename(box / "cur" / name, box / "new" / name.split(":")[0])
        after = bare(box, directory)
        best = min(before, after, key=lambda figures: figures[0])
        n = args.messages
        print(f"bare parse:  {n / best[0]:8,.0f} messages/s  ({best[1]:.1f} s processor)")
        print(
            f"intake:      {n / mine[0]:8,.0f} messages/s  ({mine[1]:.1f} s processor,"
            f" peak {mine[2]:.0f} MB)"
        )
        print(f"  {mine[3].strip()}")
        ratio = best[0] / mine[0]
        print(
            f"ratio intake / bare: {ratio:.2f} (aim >= {RATIO_AIM}), processor"
            f" {best[1] / mine[1]:.2f}; peak memory {mine[2]:.0f} MB (aim < {MEMORY_AIM_MB})"
        )
        with store.read() as session:
            mailing = session.get(Mailing, mailing_id)
            assert mailing is not None
            print(
                f"books: sent {mailing.sent:,}, failed {mailing.failed:,}"
                f" (bounced {mailing.bounced:,}, blocked {mailing.blocked:,})"
            )
        store.dispose()


if __name__ == "__main__":
    main()
