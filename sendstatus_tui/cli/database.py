"""``sendstatus init``: create the database, or bring its schema up to date."""

from typing import Any

from sendstatus_tui.cli.context import Access, Context
from sendstatus_tui.core.importing.drafts import remove_abandoned_imports


def register(commands: Any, context: Context) -> None:
    init = commands.add_parser(
        "init",
        parents=[context.common],
        help="create the database, or bring its schema up to date",
        description="Create the database (an SQLite file, or the tables in an existing"
        " PostgreSQL database) or bring its schema up to date. Commands that only read"
        " (ls, show, log, the dashboard with --no-engine) never do.",
    )
    init.set_defaults(run=lambda args: _init(args, context))


def _init(args: Any, context: Context) -> None:
    store = context.store(args, Access.CREATE, report=False)
    for abandoned in remove_abandoned_imports(store):
        print(f"removed mailing {abandoned}, whose import was interrupted")
    if store.created:
        print(f"created database {store.safe_url}")
    elif store.upgraded_from:
        print(f"upgraded database {store.safe_url} from schema {store.upgraded_from}")
    else:
        print(f"database {store.safe_url} is up to date")
