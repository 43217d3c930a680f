"""The cyclic garbage collector, set for a process that sends.

CPython runs a collection of its youngest objects every 700 net allocations of container
objects. A sending engine allocates thousands per batch (messages, replies, rows) that live
until the batch is recorded: collected that often, most of them are alive at the moment,
survive, and are promoted until full collections walk them, and a full collection stops
every thread of the process, the dashboard's too (up to 96 ms each, about one a second,
at 10 M recipients: docs/benchmarks.md, bench_dashboard.py). Collected every 50,000, a batch
is mostly gone by then: fewer collections, next to no promotions. Reference counting still
frees nearly everything at once; only cycles wait longer, and they are few."""

import gc

# (youngest, middle, oldest): every 50,000 net allocations, every 20 of those, every 10 of
# those (and CPython's own rule: not before the long-lived have grown by a quarter)
SENDING_THRESHOLDS = (50_000, 20, 10)


def set_for_sending() -> None:
    gc.set_threshold(*SENDING_THRESHOLDS)
