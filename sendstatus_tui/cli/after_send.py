"""After the send: ``failed``, ``retry``, ``test`` and ``suppress`` (DESIGN.md §3), and the
unsubscribe warning given when a large mailing without one is planned."""

import csv
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sendstatus_tui.cli.context import Access, Context, counted, mailing_id
from sendstatus_tui.core.coordination.deliveries import failed_by_class
from sendstatus_tui.core.importing import suppression
from sendstatus_tui.core.model import lifecycle
from sendstatus_tui.core.model.models import Mailing
from sendstatus_tui.core.model.retry import CLASSES, RETRY_ALL, RETRYABLE
from sendstatus_tui.core.reads import failed, trial
from sendstatus_tui.errors import SendStatusError

# a mailing larger than this, planned without List-Unsubscribe, is confirmed first: the
# large mailbox providers require one-click unsubscribe of bulk senders
UNSUBSCRIBE_WARNING_ABOVE = 5_000


class AfterSendError(SendStatusError):
    pass


def register(commands: Any, context: Context) -> None:
    common, id_type = context.common, mailing_id

    def runs(command: Callable[[Any, Context], None]) -> Callable[[Any], None]:
        return lambda args: command(args, context)

    listing = commands.add_parser(
        "failed",
        parents=[common],
        help="list a mailing's failed recipients, with why",
        description="Each failed recipient with its class (5xx refused, 4xx deferred too"
        " often, doubt: no reply after DATA, error: not sent by us, bounce: bounced later, the"
        " address does not exist, blocked: bounced later for another reason), the relay's"
        " code and reply (for bounces: the status and diagnostic). --csv writes a file that"
        " `mailing add --recipients` takes back.",
    )
    listing.add_argument("id", type=id_type)
    listing.add_argument("--class", dest="failure_class", choices=[*CLASSES, "all"])
    output = listing.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="one JSON object per line")
    output.add_argument("--csv", type=Path, metavar="FILE", help="write a recipients CSV")
    listing.set_defaults(run=runs(_cmd_failed))

    retry = commands.add_parser(
        "retry",
        parents=[common],
        help="put a mailing's failed recipients back to pending, to send them again",
        description="Puts the failed recipients of a completed or stopped mailing back to"
        " pending (attempts reset) and parks it in Sends to schedule as 'N to retry': send it"
        " now, schedule or enqueue it as usual. Nobody it was sent to gets it again. --class"
        " all (the default) is 5xx and 4xx; doubt only when named (they may have received it);"
        " blocked only when named; a hard bounce (class bounce) never.",
    )
    retry.add_argument("id", type=id_type)
    retry.add_argument("--class", dest="failure_class", choices=[*RETRYABLE, "all"])
    retry.add_argument("--yes", action="store_true", help="confirm without asking")
    retry.set_defaults(run=runs(_cmd_retry))

    test = commands.add_parser(
        "test",
        parents=[common],
        help="send a mailing to a few addresses now, to see it (nothing is counted)",
        description="Sends the mailing, personalised as one of its recipients, to the given"
        " addresses only, now, through the relay the engines use, with a Message-ID of its"
        " own. The mailing and its recipients do not change.",
    )
    test.add_argument("id", type=id_type)
    test.add_argument("--to", required=True, metavar="ADDR[,ADDR...]")
    test.add_argument(
        "--as",
        dest="persona",
        metavar="N|ADDR",
        help="personalise as the N-th recipient or the one with this address (default: the first)",
    )
    test.set_defaults(run=runs(_cmd_test))

    suppress = commands.add_parser(
        "suppress",
        parents=[common],
        help="the suppression list: addresses never to be mailed",
        description="Addresses never to be mailed. They match as duplicates do (any case, the"
        " domain in Unicode or ASCII form). Suppressed addresses are dropped at import and"
        " skipped at send time.",
    )
    verbs = suppress.add_subparsers(dest="suppress_command", metavar="COMMAND")
    verbs.required = True
    add = verbs.add_parser("add", parents=[common], help="put addresses on the list")
    add.add_argument("addresses", nargs="+", metavar="ADDR")
    add.add_argument("--reason", help="why (kept with each address)")
    add.set_defaults(run=runs(_cmd_suppress_add))
    rm = verbs.add_parser("rm", parents=[common], help="take addresses off the list")
    rm.add_argument("addresses", nargs="+", metavar="ADDR")
    rm.set_defaults(run=runs(_cmd_suppress_rm))
    ls = verbs.add_parser("ls", parents=[common], help="list the suppressed addresses")
    ls.add_argument("--json", action="store_true", help="a JSON array of objects")
    ls.set_defaults(run=runs(_cmd_suppress_ls))
    load = verbs.add_parser(
        "import",
        parents=[common],
        help="add the addresses of a file: one per line, or a CSV with an 'email' column",
    )
    load.add_argument("file", type=Path)
    load.set_defaults(run=runs(_cmd_suppress_import))
    export = verbs.add_parser("export", parents=[common], help="write the list as a CSV file")
    export.add_argument("file", type=Path)
    export.set_defaults(run=runs(_cmd_suppress_export))


# --- failed and retry ----------------------------------------------------------------------


def _cmd_failed(args, context: Context) -> None:
    classes = failed.classes_named(args.failure_class, CLASSES)
    with context.store(args, Access.READ).read() as session:
        mailing = lifecycle.get(session, args.id)
        assert mailing.id is not None
        names = json.loads(mailing.field_names)
        rows = failed.failed_recipients(session, mailing.id, names, classes)
        if args.csv:
            written = failed.write_failed_csv(args.csv, names, rows)
            what = counted(written, "failed recipient")
            print(f"mailing {mailing.id}: {what} written to {args.csv}")
        elif args.json:
            encode = json.JSONEncoder(ensure_ascii=False).encode  # one encoder, not one a row
            sys.stdout.writelines(encode(row.as_json()) + "\n" for row in rows)
        else:
            listed = 0
            for row in rows:
                sys.stdout.write(f"{row.email}\t{row.failure_class}\t{row.reply or ''}\n")
                listed += 1
            if not listed:  # said on stderr: stdout stays the list, empty, for scripts
                which = "" if args.failure_class in (None, "all") else f" of class {classes[0]}"
                print(f"mailing {mailing.id} has no failed recipients{which}", file=sys.stderr)


def _cmd_retry(args, context: Context) -> None:
    classes = failed.classes_named(args.failure_class, RETRY_ALL)
    store = context.store(args, Access.CHANGE)
    with store.read() as session:
        mailing = lifecycle.get(session, args.id)
        assert mailing.id is not None
        by_class = failed_by_class(session, mailing.id)
    count = sum(by_class.get(cls, 0) for cls in classes)
    if count:  # else the retry itself says why not
        what = counted(count, "failed recipient")
        context.confirm(
            args, f"put {what} ({', '.join(classes)}) of mailing {mailing.id} back to pending?"
        )
    with store.write() as session:
        count = lifecycle.retry(session, args.id, classes)
    print(
        f"mailing {args.id} {mailing.name!r}: {count:,} to retry, parked in Sends to schedule;"
        f" send it with `sendstatus send-now {args.id}` or schedule it"
    )


# --- test send ---------------------------------------------------------------------------


def _cmd_test(args, context: Context) -> None:
    try:
        addresses = trial.parse_test_addresses(args.to)
    except trial.BadTestAddress as exc:
        raise AfterSendError(f"--to: {exc}") from None
    with context.store(args, Access.READ).read() as session:
        mailing = lifecycle.get(session, args.id)
        persona = trial.persona(session, mailing, args.persona)
        session.expunge(mailing)
    import asyncio

    from sendstatus_tui.engine.send_test import relay_for_tests, send_test

    relay = relay_for_tests(context.relay_url(args))
    transport = relay.open()  # checks the relay URL and the credentials
    number = f"recipient {persona.number}" if persona.number else "recipient"
    print(
        f"test of mailing {mailing.id} {mailing.name!r} as {number} {persona.email},"
        f" through {relay.description}"
    )
    if persona.empty_fields:
        names = ", ".join("{" + name + "}" for name in persona.empty_fields)
        print(
            f"warning: {persona.email} has no value for {names}: the test shows them empty",
            file=sys.stderr,
        )
    results = asyncio.run(send_test(transport, mailing, persona, addresses))
    for result in results:
        print(f"  {result.address}: {result.reply}")
    refused = [r for r in results if not r.delivered]
    if refused:
        raise AfterSendError(
            f"the relay did not take the test for {len(refused)} of {len(results)} addresses"
        )


# --- suppression list ----------------------------------------------------------------------


def _cmd_suppress_add(args, context: Context) -> None:
    with context.store(args, Access.CHANGE).write() as session:
        result = suppression.add(session, args.addresses, args.reason)
        _refuse_invalid(result.invalid)  # rolls the whole command back
    print(f"{counted(result.added, 'address')} added" + _already(result.already))


def _cmd_suppress_import(args, context: Context) -> None:
    pairs, bad_lines = suppression.read_file(args.file)
    with context.store(args, Access.CHANGE).write() as session:
        result = suppression.add_entries(session, pairs)
        _refuse_invalid(bad_lines + result.invalid, args.file)
    print(f"{args.file}: {counted(result.added, 'address')} added" + _already(result.already))


def _cmd_suppress_rm(args, context: Context) -> None:
    with context.store(args, Access.CHANGE).write() as session:
        removed, invalid = suppression.remove(session, args.addresses)
        _refuse_invalid(invalid)
    absent = len(args.addresses) - removed
    print(
        f"{counted(removed, 'address')} removed"
        + (f"; {absent:,} not on the list" if absent else "")
    )


def _cmd_suppress_ls(args, context: Context) -> None:
    with context.store(args, Access.READ).read() as session:
        if not args.json:
            for entry in suppression.entries(session):
                print(f"{entry.address}\t{entry.reason or ''}")
            return
        # written as it is read: a list of a million stays out of memory
        print("[", end="")
        for index, entry in enumerate(suppression.entries(session)):
            item = {"address": entry.address, "reason": entry.reason, "added_at": _iso(entry)}
            print(("," if index else "") + "\n  " + json.dumps(item, ensure_ascii=False), end="")
        print("\n]")


def _cmd_suppress_export(args, context: Context) -> None:
    written = 0
    with context.store(args, Access.READ).read() as session:
        try:
            with open(args.file, "w", encoding="utf-8", newline="") as stream:
                writer = csv.writer(stream)
                writer.writerow(["email", "reason", "added_at"])
                for entry in suppression.entries(session):
                    reason = failed.defused(entry.reason or "")  # the address as it is
                    writer.writerow([entry.address, reason, _iso(entry)])
                    written += 1
        except OSError as exc:
            raise AfterSendError(f"{args.file}: cannot write it ({exc.strerror or exc})") from None
    print(f"{args.file}: {counted(written, 'address')} written")


def _refuse_invalid(invalid: list[str], path: Path | None = None) -> None:
    if not invalid:
        return
    first = "; ".join(invalid[:3]) + (
        f"; and {len(invalid) - 3:,} more" if len(invalid) > 3 else ""
    )
    where = f"{path}: " if path else ""
    raise AfterSendError(
        f"{where}{counted(len(invalid), 'invalid address')}, nothing changed: {first}"
    )


def _already(count: int) -> str:
    return f"; {count:,} already on the list" if count else ""


def _iso(entry) -> str:
    return entry.created_at.isoformat().replace("+00:00", "Z")


# --- the unsubscribe warning ---------------------------------------------------------------


def needs_unsubscribe_confirmation(args, mailing: Mailing) -> bool:
    return (
        not args.yes
        and not (mailing.unsubscribe_url or mailing.unsubscribe_mailto)
        and mailing.total > UNSUBSCRIBE_WARNING_ABOVE
    )


def confirm_unsubscribe(args, mailing: Mailing, confirm: Callable[[Any, str], None]) -> None:
    """A large mailing planned without List-Unsubscribe: warn and ask, as the sequential
    warning does."""
    if not needs_unsubscribe_confirmation(args, mailing):
        return
    print(
        f"warning: mailing {mailing.id} goes to {mailing.total:,} recipients without an"
        " unsubscribe header; the large mailbox providers require one-click unsubscribe of"
        " bulk senders (mailing add --unsubscribe-url, or `config set unsubscribe_url`)",
        file=sys.stderr,
    )
    confirm(args, "send it without one?")
