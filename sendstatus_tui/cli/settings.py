"""``sendstatus config``: lists, reads and changes the settings stored in the database."""

import json
from typing import Any

from sendstatus_tui.cli.context import Access, Context
from sendstatus_tui.core.model import audit, settings
from sendstatus_tui.core.store.store import Store

_VERBS = ("get", "set", "unset")


def register(commands: Any, context: Context) -> None:
    parser = commands.add_parser(
        "config",
        parents=[context.common],
        help="list, read or change the settings stored in the database",
        description="Settings shared by every engine and dashboard on this database."
        " Without KEY: all of them. With KEY: its value. With KEY and VALUE: change it"
        " ('' or `config unset KEY` removes it). `config get KEY` and `config set KEY VALUE`"
        " do the same. Keys: "
        + "; ".join(f"{key}: {known.help}" for key, known in settings.KEYS.items()),
    )
    parser.add_argument("words", nargs="*", metavar="[get|set|unset] KEY [VALUE]")
    parser.add_argument("--json", action="store_true", help="a JSON object of every setting")
    parser.set_defaults(run=lambda args: _config(args, context))


def _config(args: Any, context: Context) -> None:
    words = args.words
    changes = bool(words) and (words[0] in ("set", "unset") or len(words) > 1)
    run_config(args, context.store(args, Access.CHANGE if changes else Access.READ))


def run_config(args: Any, store: Store) -> None:
    words = list(args.words)
    verb = words.pop(0) if words and words[0] in _VERBS else None
    if not words:
        if verb is not None:
            raise settings.SettingError(
                f"config {verb}: which setting? ({', '.join(settings.KEYS)})"
            )
        _print_all(store, args.json)
        return
    key, values = settings.check_key(words[0]), words[1:]
    expected = {None: (0, 1), "get": (0,), "set": (1,), "unset": (0,)}[verb]
    if len(values) not in expected:
        raise settings.SettingError(f"config {verb or key}: unexpected {' '.join(values)!r}")
    if verb == "unset" or values:
        with store.write() as session:
            stored = settings.write(session, key, None if verb == "unset" else values[0])
            change = f"{key} = {stored}" if stored is not None else f"{key} unset"
            audit.record(session, audit.Change.SETTING, detail=change)
        print(f"{key} = {stored}" if stored is not None else f"{key}: not set")
        return
    with store.read() as session:
        value = settings.read(session, key)
    if args.json:
        print(json.dumps({key: value}))
    else:
        print(value if value is not None else f"{key}: not set")


def _print_all(store: Store, as_json: bool) -> None:
    with store.read() as session:
        stored = settings.read_all(session)
    if as_json:
        print(json.dumps(stored, indent=2))
        return
    width = max(map(len, stored))
    for key, value in stored.items():
        print(f"{key:<{width}}  {value if value is not None else '(not set)'}")
