"""Speed to a relay far away: pipelining (RFC 2920) and connections that adapt, against
real SMTP servers on loopback (aiosmtpd), some behind a proxy that adds round trips."""

import asyncio
import socket
import time
from dataclasses import replace

import pytest
from sqlmodel import select

from sendstatus_tui.core.model import lifecycle
from sendstatus_tui.core.model.models import Recipient
from sendstatus_tui.core.model.relay_url import SmtpSettings, parse_relay_url
from sendstatus_tui.engine.engine import Engine
from sendstatus_tui.engine.smtp import pool as smtp_pool
from sendstatus_tui.engine.smtp.connection import open_connection
from sendstatus_tui.engine.smtp.wire import ConnectionClosed, Reply, ReplyReader
from sendstatus_tui.engine.thread import EngineThread
from sendstatus_tui.engine.transports import transport_for

from .engine_processes import assert_books_balance, failure_classes
from .helpers import FAST, mailing, stop_engine_thread, wait_until
from .latency_proxy import LatencyProxy
from .smtp_relay import RelayScript


@pytest.fixture
def start_engine(store):
    threads: dict[Engine, EngineThread] = {}

    def start(url: str, settings=FAST) -> Engine:
        engine = Engine(store, transport_for(url), settings)
        threads[engine] = EngineThread(engine).start()
        return engine

    def stop(engine: Engine) -> None:
        thread = threads.pop(engine)
        stop_engine_thread(thread)

    start.stop = stop
    yield start
    for engine in list(threads):
        stop(engine)


@pytest.fixture
def proxies():
    started: list[LatencyProxy] = []

    def start(port: int, round_trip_seconds: float) -> LatencyProxy:
        proxy = LatencyProxy(port, round_trip_seconds).start()
        started.append(proxy)
        return proxy

    yield start
    for proxy in started:
        proxy.stop()


def send_now(store, mailing_id: int) -> None:
    with store.write() as session:
        lifecycle.send_now(session, mailing_id)


def recipients_by_email(store, mailing_id: int) -> dict[str, Recipient]:
    with store.read() as session:
        rows = session.exec(select(Recipient).where(Recipient.mailing_id == mailing_id)).all()
    return {r.email: r for r in rows}


def smtp_settings(url: str) -> SmtpSettings:
    settings = parse_relay_url(url)
    assert isinstance(settings, SmtpSettings)
    return settings


def test_a_connection_pipelines_only_when_the_relay_offers_it(relays):
    offering, silent = relays(), relays(pipelining=False)

    async def pipelines(url: str) -> bool:
        connection = await open_connection(smtp_settings(url))
        await connection.quit(2)
        return connection.pipelining

    assert asyncio.run(pipelines(offering.url)) is True
    assert asyncio.run(pipelines(silent.url)) is False
    assert asyncio.run(pipelines(offering.url + "&pipelining=off")) is False


@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelining", "one-by-one"])
def test_each_refusal_is_recorded_against_its_own_recipient(
    store, make_mailing, relays, start_engine, pipelining
):
    """Refusals at RCPT and at the final dot, in the middle of pipelined groups: each lands
    on the recipient it was for, and nobody else is affected."""
    script = RelayScript(
        rcpt_replies={
            "person3@example.com": ["550 5.1.1 no such user"],
            "person7@example.com": ["451 4.7.1 greylisted, try later"],  # then accepted
            "person21@example.com": ["552 5.2.2 mailbox full"],
        },
        data_replies={
            "person10@example.com": ["554 5.7.1 content rejected"],
            "person12@example.com": ["452 4.3.1 insufficient storage"],  # then accepted
        },
    )
    relay = relays(script, pipelining=pipelining)
    mailing_id = make_mailing(recipients=40)
    send_now(store, mailing_id)
    start_engine(relay.url + "&pool=2&adapt=off")
    wait_until(lambda: mailing(store, mailing_id).state == "completed", what="completion")

    by_email = recipients_by_email(store, mailing_id)
    failed = {e: r.last_reply for e, r in by_email.items() if r.status == "failed"}
    assert failed == {
        "person3@example.com": "550 5.1.1 no such user",
        "person10@example.com": "554 5.7.1 content rejected",
        "person21@example.com": "552 5.2.2 mailbox full",
    }
    assert by_email["person7@example.com"].status == "sent"
    assert by_email["person7@example.com"].attempts == 2
    assert by_email["person12@example.com"].status == "sent"
    assert by_email["person12@example.com"].attempts == 2
    # the relay has every accepted recipient once, and none it refused
    assert relay.copies() == {e: 1 for e, r in by_email.items() if r.status == "sent"}
    assert failure_classes(store, mailing_id) == {"5xx": 3}
    assert assert_books_balance(store, mailing_id).sent == 37


@pytest.mark.slow  # a measurement of time
def test_pipelining_at_least_halves_the_time_per_message(relays, proxies):
    """One connection to a relay 30 ms away: one message after the other, pipelined and
    not. What the relay received is the same."""
    relay = relays()
    proxy = proxies(relay.port, 0.030)
    url = f"smtp://127.0.0.1:{proxy.port}?starttls=off"

    async def send_twenty(url: str) -> float:
        connection = await open_connection(smtp_settings(url))
        turns = asyncio.Queue[None]()  # the write turn, handed on as the pool hands it
        turns.put_nowait(None)

        async def send(k: int) -> None:
            await turns.get()
            await connection.send(
                "news@shop.example.com",
                f"p{k}@example.com",
                b"Subject: hi\r\n\r\nhi\r\n",
                lambda: turns.put_nowait(None),
            )

        started = time.monotonic()
        await asyncio.gather(*(send(k) for k in range(20)))
        seconds = time.monotonic() - started
        await connection.quit(2)
        return seconds

    pipelined = asyncio.run(send_twenty(url))
    one_by_one = asyncio.run(send_twenty(url + "&pipelining=off"))
    assert relay.copies() == {f"p{k}@example.com": 2 for k in range(20)}
    # one by one: 4 round trips a message (MAIL, RCPT, DATA, the dot), 2.4 s in all;
    # pipelined, the next envelope rides with the previous dot: about 1 round trip each
    print(f"20 messages, 30 ms away: pipelined {pipelined:.2f} s, one by one {one_by_one:.2f} s")
    assert pipelined <= 0.5 * one_by_one, (pipelined, one_by_one)


@pytest.mark.idle  # mostly waits, under 0.4 of a core (docs/maintenance.md)
def test_connections_settle_at_what_the_relay_takes(store, make_mailing, relays, start_engine):
    """A relay that greets connection N+1 with 421: the pool settles within one of N,
    sends as fast as a pool held at N, and delivers everyone."""
    limit = 6
    # 25 ms a command: 10 messages a second a connection, whatever else the machine does
    script = RelayScript(command_delay_seconds=0.025, max_connections=limit)
    held_relay, adapting_relay = relays(replace(script)), relays(replace(script))
    # the adapting mailing sends for some 14 s at the relay's 70/s: its pool grows within a
    # second or two, settles within two more, then its rate is measured for 5 s while it
    # still sends
    held_id, adapting_id = make_mailing(recipients=500), make_mailing(recipients=1000)
    settings = replace(FAST, batch_size=500)

    send_now(store, held_id)
    held = start_engine(held_relay.url + f"&pool={limit}&adapt=off", settings)
    wait_until(lambda: len(held_relay.received) >= 30, what="the held pool sending")
    held_rate = measured_rate(held_relay, seconds=5.0)
    wait_until(lambda: mailing(store, held_id).state == "completed", timeout=30, what="held")
    start_engine.stop(held)

    adapting = start_engine(adapting_relay.url, settings)
    send_now(store, adapting_id)
    wait_until(
        lambda: adapting_relay.refused_connections > 0,
        timeout=30,
        what="the pool to grow to the relay's limit",
    )
    # its one-second window sees the refusal and settles: within two such windows
    wait_until(
        lambda: limit - 1 <= adapting.routes.connections <= limit + 1,
        timeout=2.0,
        what=f"the pool to settle at {limit} +- 1 connections",
    )
    adapting_rate = measured_rate(adapting_relay, seconds=5.0)
    assert limit - 1 <= adapting_relay.connections <= limit
    wait_until(lambda: mailing(store, adapting_id).state == "completed", timeout=60, what="done")
    print(f"held at {limit}: {held_rate:.0f} msg/s; adapting: {adapting_rate:.0f} msg/s")
    assert held_rate > 0 and adapting_rate >= 0.9 * held_rate, (adapting_rate, held_rate)
    assert adapting_relay.copies() == {f"person{i}@example.com": 1 for i in range(1000)}
    assert_books_balance(store, adapting_id)


def measured_rate(relay, seconds: float) -> float:
    """Messages a second the relay accepted over the next ``seconds``."""
    before, started = len(relay.received), time.monotonic()
    time.sleep(seconds)
    return (len(relay.received) - before) / (time.monotonic() - started)


@pytest.mark.idle  # mostly waits, under 0.4 of a core (docs/maintenance.md)
def test_under_a_contracted_rate_connections_grow_only_as_far_as_it_needs(
    store, make_mailing, relays, start_engine
):
    """A relay slow to answer (about 13 messages a second a connection) and a rate of 60/s:
    some 5 connections are needed, not the 64 the pool may open."""
    relay = relays(RelayScript(command_delay_seconds=0.025))
    mailing_id = make_mailing(recipients=600)
    send_now(store, mailing_id)
    engine = start_engine(relay.url, replace(FAST, rate_per_second=60))
    wait_until(lambda: len(relay.received) >= 30, what="sending")
    rate = measured_rate(relay, seconds=6.0)
    assert rate <= 60 * 1.05
    assert rate >= 60 * 0.8  # and the connections it has do keep up with the rate
    assert relay.peak_connections <= 16
    assert engine.routes.connections <= 10


def test_an_engine_with_nothing_to_send_keeps_no_connection_open(relays, monkeypatch):
    """Idle connections are closed (here after 0.3 s): nothing held open at the relay, and
    none kept that a firewall on the way may have forgotten."""
    monkeypatch.setattr(smtp_pool, "MAX_IDLE_SECONDS", 0.3)
    relay = relays()
    transport = transport_for(relay.url + "&pool=2&adapt=off")

    async def one_message_then_idle() -> tuple[int, int]:
        await transport.send("news@shop.example.com", "a@example.com", b"hi\r\n")
        open_after_sending = relay.connections
        closed_by = asyncio.get_running_loop().time() + 1.0  # the idle time, and a margin
        while relay.connections and asyncio.get_running_loop().time() < closed_by:
            await asyncio.sleep(0.01)  # the sweep runs on this loop: poll, do not block it
        return open_after_sending, relay.connections

    assert asyncio.run(one_message_then_idle()) == (1, 0)
    assert relay.recipients() == ["a@example.com"]


def test_a_message_s_content_and_the_next_envelope_go_out_in_one_write(relays, monkeypatch):
    """Pipelined through the pool on one connection: each content and its final dot go out
    with the next message's MAIL, RCPT and DATA. As two writes, a relay like Postfix
    answers the dot alone, and its answer to the envelope then waits up to 40 ms for our
    delayed ACK (Nagle's algorithm on its side)."""
    relay = relays()
    transport = transport_for(relay.url + "&pool=1&adapt=off")
    writes: list[bytes] = []
    opened = smtp_pool.open_connection

    async def open_and_watch(*args, **kwargs):
        connection = await opened(*args, **kwargs)
        socket_write = connection._wire.transport.write

        def write(data: bytes) -> None:
            writes.append(bytes(data))
            socket_write(data)

        connection._wire.transport.write = write  # type: ignore[method-assign]
        return connection

    monkeypatch.setattr(smtp_pool, "open_connection", open_and_watch)

    async def send_ten() -> None:
        await asyncio.gather(
            *(
                transport.send("news@shop.example.com", f"p{k}@example.com", b"hi\r\n")
                for k in range(10)
            )
        )
        await transport.close()

    asyncio.run(send_ten())
    assert relay.recipients() == [f"p{k}@example.com" for k in range(10)]
    # the first envelope alone, then each content with the next envelope, the last
    # content alone, then QUIT
    assert [w.count(b"MAIL FROM") for w in writes] == [1] * 10 + [0, 0]
    assert [w.count(b"\r\n.\r\n") for w in writes] == [0] + [1] * 10 + [0]


def test_a_relay_slow_to_answer_each_command_is_waited_for_while_it_keeps_answering(relays):
    """The reply timeout counts from the relay's last reply: a relay that takes 0.4 s per
    command (1.2 s for a pipelined MAIL, RCPT and DATA) is not given up at timeout=1 (one
    silent for the timeout is: test_faults, test_engine_delivery)."""
    relay = relays(RelayScript(command_delay_seconds=0.4))
    transport = transport_for(relay.url + "&pool=1&adapt=off&timeout=1")

    async def send_one() -> str:
        try:
            return await transport.send("news@shop.example.com", "a@example.com", b"hi\r\n")
        finally:
            await transport.close()

    assert asyncio.run(send_one()) == "250 2.0.0 queued"
    assert relay.recipients() == ["a@example.com"]


def test_replies_are_read_in_order_however_the_bytes_arrive():
    """Replies, some of several lines, cut at awkward places on a real socket: each goes
    to its command, in order; a line that is not SMTP closes the connection."""

    async def replies_to(chunks: list[bytes], commands: int) -> list[object]:
        ours, relay = socket.socketpair()
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_connection(asyncio.Protocol, sock=ours)
        reader = ReplyReader(transport, timeout=5)
        futures = reader.send(b"", commands)
        for chunk in chunks:
            relay.sendall(chunk)
            await asyncio.sleep(0.01)  # one read each
        await asyncio.wait(futures, timeout=2)
        reader.close()
        relay.close()
        return [f.result() if not f.exception() else f.exception() for f in futures]

    stream = b"250 2.0.0 Ok: queued\r\n250-first\r\n250-second\r\n250 third\r\n354 go ahead\r\n"
    expected = [
        Reply(250, "2.0.0 Ok: queued"),
        Reply(250, "first\nsecond\nthird"),
        Reply(354, "go ahead"),
    ]
    assert asyncio.run(replies_to([stream], 3)) == expected
    cuts = [stream[:3], stream[3:25], stream[25:26], stream[26:40], stream[40:]]
    assert asyncio.run(replies_to(cuts, 3)) == expected
    broken = asyncio.run(replies_to([b"250 Ok\r\nHTTP/1.1 400 Bad\r\n"], 2))
    assert broken[0] == Reply(250, "Ok")
    assert isinstance(broken[1], ConnectionClosed) and "not an SMTP reply" in str(broken[1])
