"""``sendstatus engine [--workers N|auto]``: the engine alone, headless, for a service
manager; with ``--workers``, N engine processes under one supervisor."""

import argparse
import threading
from typing import Any

from sendstatus_tui import config
from sendstatus_tui.cli.context import Access, Context
from sendstatus_tui.cli.intake import opened, source_of

# the most engine processes one supervisor runs: each is a Python process with its own
# connections, and a few per core already keep a relay busy
MAX_WORKERS = 64


def register(commands: Any, context: Context) -> None:
    engine = commands.add_parser(
        "engine",
        parents=[context.common],
        help="run the sending engine headless (for a service manager)",
        description="Run the sending engine without the dashboard. It logs to stderr and stops"
        " cleanly on SIGTERM or SIGINT, recording the batches in flight. With --workers N it"
        " runs N engines as processes of their own under one supervising process, which starts"
        " another in place of one that dies and stops them all on SIGTERM or SIGINT. With"
        " --intake SOURCE it also reads bounces and complaints back, as `sendstatus intake"
        " SOURCE --follow` does: on a thread beside the sending, or under --workers as one"
        " process of its own beside the workers (never one per worker), restarted like them.",
    )
    engine.add_argument(
        "--workers",
        type=_workers,
        default=1,
        metavar="N|auto",
        help="engine processes on this host, at most 64 (auto: one per core; default: 1, this"
        " process itself)",
    )
    engine.add_argument(
        "--intake",
        metavar="SOURCE",
        help="also run an intake of bounces and complaints: maildir:DIR,"
        " imaps://USER@HOST[:PORT]/FOLDER or smtp://HOST:PORT"
        " (see `sendstatus intake --help`)",
    )
    engine.add_argument(
        "--metrics",
        metavar="HOST:PORT",
        help="serve this engine's Prometheus metrics at http://HOST:PORT/metrics; under"
        " --workers N, worker k serves PORT+k (see docs/guides/metrics.md)",
    )
    engine.add_argument(
        "--allow-alert-command",
        action="store_true",
        help="run the stored alert_command when this engine leads (anyone who can write the"
        " database can set it, so engines run it only when allowed here)",
    )
    engine.set_defaults(run=lambda args: _engine(args, context))


def _engine(args: Any, context: Context) -> None:
    from sendstatus_tui.engine.headless import run_headless, run_supervisor
    from sendstatus_tui.engine.metrics import worker_address

    # a source that names none, or an address that is none, is refused before anything starts
    intake = None if args.intake is None else source_of(args.intake)
    if args.metrics is not None:
        worker_address(args.metrics, args.workers if args.workers > 1 else 0)
    # the database is created and migrated once, here, before any engine or worker uses it
    store = context.store(args, Access.CREATE)
    # --smtp, else None: the relays stored in the database
    relay_url, transport = config.relay_url(args.smtp), context.transport(args)
    rate = context.rate(args)
    context.report_opening(args)  # before the engine's log starts
    if args.workers == 1:
        run_headless(
            config.db_url(args.db),
            relay_url,
            transport,
            rate,
            None if intake is None else opened(intake, threading.Event(), follow=True),
            args.metrics,
            args.allow_alert_command,
        )
        return
    store.dispose()  # the supervisor needs no connection
    run_supervisor(
        args.workers,
        _worker_environment(args),
        store.safe_url,
        relay_url,
        transport,
        rate,
        args.intake,
        args.metrics,
        args.allow_alert_command,
    )


def _worker_environment(args: Any) -> dict[str, str]:
    """This command's settings, as the workers of ``engine --workers`` get them: through
    their environment, which (unlike the command line) other users cannot read."""
    given = {
        config.DB_ENV: config.db_url(args.db),
        config.SMTP_ENV: args.smtp,
        config.RATE_ENV: args.rate,
    }
    return {name: value for name, value in given.items() if value}


def _workers(text: str) -> int:
    from sendstatus_tui.engine.supervisor import cores

    if text == "auto":
        return cores()
    try:
        count = int(text)
    except ValueError:
        count = 0
    if count < 1:
        raise argparse.ArgumentTypeError(
            f"not a number of workers: {text!r} (give a whole number, 1 or more, or auto)"
        )
    if count > MAX_WORKERS:
        raise argparse.ArgumentTypeError(
            f"too many workers: {text} (at most {MAX_WORKERS}; auto: one per core)"
        )
    return count
