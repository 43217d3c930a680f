"""The dashboard (``sendstatus`` without a command) and ``sendstatus demo``. Textual is
imported only here, when one of them runs."""

import argparse
import shutil
import sys
from typing import Any

from sendstatus_tui import config
from sendstatus_tui.cli.context import Access, Context
from sendstatus_tui.core.store.store import may_write


def register(commands: Any, context: Context) -> None:
    demo = commands.add_parser(
        "demo",
        parents=[context.common],
        help="the dashboard on a throwaway database with sample mailings",
        description="Open the dashboard on a throwaway database with sample mailings that"
        " deliver to a local maildir at a demo rate.",
    )
    demo.add_argument(
        "--no-blink", action="store_true", default=argparse.SUPPRESS, help="no blinking"
    )
    demo.add_argument(
        "--keep",
        action="store_true",
        help="keep the demo's files (database, maildir, engine log) instead of removing them",
    )
    demo.set_defaults(run=lambda args: _demo(args, context))


def run_dashboard(args: Any, context: Context) -> None:
    """``sendstatus`` without a command."""
    from sendstatus_tui.tui.launch.dashboard import run_dashboard

    # every setting is checked before the screen opens: an error is a line, not a screen;
    # the engine's ones even when another engine holds the lease (the next start needs them)
    zone_name = context.zone_name(args)
    engine_wanted = not args.no_engine
    rate = None
    if engine_wanted:
        store = context.store(args, Access.CREATE)
        context.report_opening(args)  # before the screen opens
        rate = context.rate(args)
        context.transport(args)  # checked now; the engine builds its own at each start
    else:  # a file it may not write is shown all the same (an action says it cannot write)
        access = Access.ATTACH if may_write(config.db_url(args.db)) else Access.READ
        store = context.store(args, access)
    run_dashboard(
        store,
        zone_name=zone_name,
        relay_url=config.relay_url(args.smtp),
        rate_per_second=rate,
        engine_wanted=engine_wanted,
        blink=config.blink(args.no_blink),
    )


def _demo(args: Any, context: Context) -> None:
    from sendstatus_tui.tui.launch.dashboard import run_dashboard
    from sendstatus_tui.tui.launch.demo import DEMO_RATE_PER_SECOND, create_demo

    zone_name = context.zone_name(args)
    print("preparing the demo database…", file=sys.stderr)
    store, transport, directory = create_demo()
    try:
        run_dashboard(
            store,
            zone_name=zone_name,
            rate_per_second=DEMO_RATE_PER_SECOND,
            blink=config.blink(args.no_blink),
            transport=("the demo's maildir", transport),
            log_file=directory / "engine.log",
            demo=True,
        )
    finally:
        store.dispose()
        if args.keep:
            print(
                f"demo files (database, maildir, engine log) kept in {directory}", file=sys.stderr
            )
        else:
            shutil.rmtree(directory, ignore_errors=True)
            print(f"demo files removed ({directory}; --keep keeps them)", file=sys.stderr)
