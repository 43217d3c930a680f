"""``sendstatus serve --listen HOST:PORT``: answers one-click unsubscribes (RFC 8058) at the
URLs of the mailings' List-Unsubscribe headers (engine/serve.py)."""

import asyncio
import logging
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from sendstatus_tui.cli.context import Access, CommandError, Context
from sendstatus_tui.engine.ses import DEFAULT_PATH


def register(commands: Any, context: Context) -> None:
    parser = commands.add_parser(
        "serve",
        parents=[context.common],
        help="answer one-click unsubscribes (RFC 8058) over HTTP",
        description="Answers the one-click unsubscribe URLs of the messages (`config set"
        " unsubscribe_url https://shop.example.com/u/{unsubscribe_token}`): a POST with"
        " List-Unsubscribe=One-Click suppresses the recipient and counts it in its mailing's"
        " unsubscribed; a GET shows a confirmation page and changes nothing; a token"
        " sendstatus did not sign is a 404. Put it behind a reverse proxy for HTTPS"
        " (docs/guides/reverse-proxy.md). It also takes Amazon SES bounce and complaint"
        " notifications from an SNS topic at --ses-path, checking SNS's signature"
        " (docs/guides/bounce-domain.md). Runs until SIGTERM or SIGINT.",
    )
    parser.add_argument(
        "--listen",
        required=True,
        metavar="HOST:PORT",
        help="where to listen, e.g. 127.0.0.1:8025 (behind the proxy)",
    )
    parser.add_argument(
        "--metrics",
        metavar="HOST:PORT",
        help="also serve the database's figures for Prometheus at http://HOST:PORT/metrics:"
        " each sending mailing's remaining, sent, failed, bounced and complained, and the"
        " engines alive (docs/guides/metrics.md)",
    )
    parser.add_argument(
        "--ses-path",
        default=DEFAULT_PATH,
        metavar="PATH",
        help=f"where SNS posts SES notifications (default {DEFAULT_PATH})",
    )
    parser.add_argument(
        "--ses-topic",
        action="append",
        default=[],
        metavar="ARN",
        help="an SNS topic of yours: its subscription is confirmed at once, and only its"
        " notifications (and those of other --ses-topic ARNs) are taken; repeat for several."
        " Without it, every topic's notifications are taken and subscriptions only logged",
    )
    parser.set_defaults(run=lambda args: _serve(args, context))


def _serve(args: Any, context: Context) -> None:
    # aiohttp and cryptography take a third of a second to import: only `serve` pays it,
    # not every other command (and engine process) that builds this parser
    from sendstatus_tui.engine.database_metrics import serve_database_metrics
    from sendstatus_tui.engine.metrics import parse_address
    from sendstatus_tui.engine.serve import ListenError, parse_listen, serve
    from sendstatus_tui.engine.ses.endpoint import SesOptions

    try:
        listen = parse_listen(args.listen)
    except ListenError as exc:
        raise CommandError(str(exc)) from None
    if args.metrics is not None:
        parse_address(args.metrics)  # refused before anything starts
    if not args.ses_path.startswith("/") or any(c.isspace() for c in args.ses_path):
        raise CommandError(f"--ses-path {args.ses_path!r}: expected a path such as /ses")
    bad = [arn for arn in args.ses_topic if not arn.startswith("arn:aws")]
    if bad:
        raise CommandError(f"--ses-topic {bad[0]!r}: expected an ARN, arn:aws:sns:REGION:...")
    ses = SesOptions(path=args.ses_path, topics=frozenset(args.ses_topic))
    store = context.store(args, Access.CHANGE)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr
    )
    if args.metrics is not None:
        serve_database_metrics(store, args.metrics)
    try:
        asyncio.run(_until_signalled(lambda stop: serve(store, listen, stop, ses)))
    except OSError as exc:
        raise CommandError(f"cannot listen on {listen}: {exc.strerror or exc}") from None


async def _until_signalled(run: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await run(stop)
