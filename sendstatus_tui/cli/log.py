"""``sendstatus log [ID] [--json]``: the audit trail, all of it or one mailing's history
(also of a deleted mailing), oldest first."""

import argparse
import json
from typing import Any

from sendstatus_tui import config
from sendstatus_tui.cli.context import Access, Context, mailing_id
from sendstatus_tui.core.model import audit, lifecycle
from sendstatus_tui.core.model.when import zone
from sendstatus_tui.core.store.store import Store
from sendstatus_tui.views.audit import entries_text, entry_json


def register(commands: Any, context: Context) -> None:
    log = commands.add_parser(
        "log",
        parents=[context.common],
        help="who changed what, when: the audit trail (of one mailing with ID)",
        description="Print the audit trail: every change to the mailings (by operators, on"
        " the command line or a dashboard, and by engines), oldest first, with who made it"
        " (user, sudo user, SSH client address) and from where. With ID, that mailing's"
        " history, also once it is deleted.",
    )
    log.add_argument("id", nargs="?", type=mailing_id, metavar="ID")
    log.add_argument("--json", action="store_true", help="a JSON array, one object per entry")
    log.set_defaults(run=lambda args: _cmd_log(args, context.store(args, Access.READ)))


def _cmd_log(args: argparse.Namespace, store: Store) -> None:
    with store.read() as session:
        if args.id is not None and not lifecycle.can_exist(session, args.id):
            raise lifecycle.MailingNotFound(args.id)  # beyond the database's integers
        entries = audit.history(session, args.id)
        mailing = lifecycle.find(session, args.id) if args.id is not None else None
        if args.id is not None and not entries and mailing is None:
            raise lifecycle.MailingNotFound(args.id)
    if args.json:
        print(json.dumps([entry_json(entry) for entry in entries], indent=2))
        return
    if args.id is not None:  # whose history, also once it is gone
        name = mailing.name if mailing else entries[-1].mailing_name
        print(f"Mailing {args.id} {name!r}{'' if mailing else ' (deleted)'}")
    if not entries:
        print("no changes recorded yet")
    else:
        local_zone = zone(config.zone_name(args.tz))
        print(entries_text(entries, local_zone, with_mailing=args.id is None))
