"""Writers of one SQLite file in one process take their turns in the order they came: a
dashboard's key press is not starved by an engine writing back to back."""

import threading
import time

import pytest

from sendstatus_tui.core.model import settings
from sendstatus_tui.core.store.store import Store, StoreError
from sendstatus_tui.core.store.writer_queue import WriterQueue

from .helpers import wait_until


def served_in_order(writers: list[tuple[str, bool]]) -> list[str]:
    """The order in which ``writers`` (name, ahead) get their turn, each asking once the one
    before waits, while the turn is held."""
    queue = WriterQueue()
    queue.take(1)
    served: list[str] = []

    def writer(name: str, ahead: bool) -> None:
        queue.take(5, ahead)
        served.append(name)
        queue.release()

    threads = []
    for number, (name, ahead) in enumerate(writers):
        thread = threading.Thread(target=writer, args=(name, ahead))
        thread.start()
        threads.append(thread)
        wait_until(
            lambda n=number: len(queue._ahead) + len(queue._behind) == n + 1,
            what=f"{name} waits",
        )
    queue.release()
    for thread in threads:
        thread.join(5)
    return served


def test_waiters_get_the_turn_in_the_order_they_asked():
    names = [f"writer {number}" for number in range(5)]
    assert served_in_order([(name, False) for name in names]) == names


def test_an_operators_write_goes_ahead_of_the_waiting_bookkeeping_in_its_own_order():
    writers = [("engine 1", False), ("engine 2", False), ("key 1", True), ("key 2", True)]
    assert served_in_order(writers) == ["key 1", "key 2", "engine 1", "engine 2"]


def test_a_writer_that_gives_up_leaves_the_queue_to_the_others():
    queue = WriterQueue()
    queue.take(1)
    with pytest.raises(TimeoutError):
        queue.take(0.05)
    with pytest.raises(TimeoutError):
        queue.take(0.05, ahead=True)
    queue.release()
    queue.take(0.05)  # free again: nobody left waiting in the line
    queue.release()


def test_an_engine_writing_back_to_back_does_not_starve_another_writer(tmp_path):
    """Three threads write back to back, as the engine's database threads do; a fourth (the
    dashboard's key) asks now and then and gets in behind the writers already waiting."""
    url = f"sqlite:///{tmp_path / 'queue.db'}"
    busy, asker = Store(url), Store(url)  # two stores on one file share the queue
    stop = threading.Event()

    def engine_thread() -> None:
        while not stop.is_set():
            with busy.write() as session:
                settings.write(session, "rate", "100/s")
                time.sleep(0.01)  # the lock held, as a batch's bookkeeping holds it

    engines = [threading.Thread(target=engine_thread) for _ in range(3)]
    for thread in engines:
        thread.start()
    waits = []
    try:
        for _ in range(20):
            asked = time.perf_counter()
            with asker.write() as session:
                waits.append(time.perf_counter() - asked)
                settings.write(session, "rate", "200/s")
            time.sleep(0.02)
    finally:
        stop.set()
        for thread in engines:
            thread.join(5)
        busy.dispose()
        asker.dispose()
    # at most the three engine writers ahead of it, 10 ms each (SQLite's own busy wait
    # alone let it wait hundreds of milliseconds, behind writers that came after it)
    assert max(waits) < 0.2, [round(w, 3) for w in waits]


def test_a_write_turn_not_given_within_the_busy_timeout_is_one_error_line(tmp_path, monkeypatch):
    monkeypatch.setattr("sendstatus_tui.core.store.store.SQLITE_BUSY_TIMEOUT_MS", 100)
    store = Store(f"sqlite:///{tmp_path / 'locked.db'}")
    try:
        with store.write():
            failure: list[BaseException] = []

            def second_writer() -> None:
                try:
                    with store.write():
                        pass
                except StoreError as exc:
                    failure.append(exc)

            thread = threading.Thread(target=second_writer)
            thread.start()
            thread.join(5)
        assert len(failure) == 1 and "database is locked" in str(failure[0])
        with store.write() as session:  # the turn came back: writing works again
            settings.write(session, "rate", "1/s")
    finally:
        store.dispose()
