"""`sendstatus demo`: a throwaway database with a believable set of mailings, delivering to
a local maildir at a demo rate, so that a newcomer sees every pane move within seconds."""

import asyncio
import random
import tempfile
from datetime import timedelta
from pathlib import Path

from sendstatus_tui.config import sqlite_url
from sendstatus_tui.core.importing.drafts import MailingDraft, create_mailing
from sendstatus_tui.core.model import lifecycle
from sendstatus_tui.core.model.models import utc_now
from sendstatus_tui.core.store.store import Store
from sendstatus_tui.engine.transports import MaildirTransport

DEMO_RATE_PER_SECOND = 40.0
# long enough to see "starting up" blink; a real relay check takes what it takes
DEMO_STARTUP_SECONDS = 4.0

_FIRST = "Anna Ben Chloé Dario Emma Farid Greta Hugo Inès Jonas Karin Luca Mara Nils".split()
_LAST = "Rossi Martin Müller Novak Silva Costa Dubois Jansen Weber Moreau Ricci".split()


class SlowStartMaildir(MaildirTransport):
    """The demo's maildir, whose check takes a few seconds, like reaching a real relay."""

    async def check(self, sender: str) -> None:
        await asyncio.sleep(DEMO_STARTUP_SECONDS)
        await super().check(sender)


def create_demo(directory: Path | None = None) -> tuple[Store, SlowStartMaildir, Path]:
    """A fresh demo database and its maildir, in ``directory`` (default: a temp dir)."""
    directory = Path(directory or tempfile.mkdtemp(prefix="sendstatus-demo-"))
    store = Store(sqlite_url(directory / "demo.db"))
    seed(store, directory)
    return store, SlowStartMaildir(directory / "maildir"), directory


def seed(store: Store, directory: Path) -> None:
    rng = random.Random(7)
    now = utc_now()

    def add(name: str, recipients: int) -> int:
        csv = directory / f"{name.lower().replace(' ', '-')}.csv"
        rows = [
            f"{first.lower()}.{last.lower()}{i}@example.com,{first},{last}"
            for i in range(recipients)
            for first, last in [(rng.choice(_FIRST), rng.choice(_LAST))]
        ]
        csv.write_text("email,first_name,last_name\n" + "\n".join(rows) + "\n", encoding="utf-8")
        draft = MailingDraft(
            name=name,
            subject="{first_name}, " + name.lower(),
            sender="Demo Shop <news@shop.example.com>",
            text_body="Hello {first_name} {last_name},\n\nthis is the " + name + " mailing.\n",
            html_body="<p>Hello {first_name},</p><p>this is the " + name + " mailing.</p>",
        )
        with store.write() as session:
            mailing, _ = create_mailing(session, draft, csv)
            assert mailing.id is not None  # flushed by create_mailing
            return mailing.id

    def do(operation, mailing_id, *args):
        with store.write() as session:
            operation(session, mailing_id, *args)

    # Sending now
    do(lifecycle.send_now, add("Black Friday last call", 4_000))
    do(lifecycle.send_now, add("Order confirmations", 1_500))
    # Scheduled sendings: at a time, in the next minutes
    do(lifecycle.schedule_at, add("Cyber Monday teaser", 2_000), now + timedelta(seconds=40))
    do(lifecycle.schedule_at, add("Weekly digest", 3_000), now + timedelta(minutes=3))
    do(lifecycle.schedule_at, add("Advent calendar day 1", 5_000), now + timedelta(minutes=9))
    # the sequential queue: the first starts at once, three wait behind it
    for name, size in (
        ("Newsletter EN", 600),
        ("Newsletter DE", 900),
        ("Newsletter FR", 700),
        ("Newsletter IT", 500),
    ):
        do(lifecycle.enqueue, add(name, size))
    # Sends to schedule
    add("Spring collection draft", 1_200)
    add("Loyalty survey", 800)
    stopped = add("Winter sale (wrong prices)", 2_500)
    do(lifecycle.schedule_at, stopped, now + timedelta(hours=2))
    do(lifecycle.stop, stopped)
