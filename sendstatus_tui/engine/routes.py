"""The relays one engine sends through: one pool of connections per relay, each message
given to one of them by weight (smooth weighted round robin, so that the shares hold over
any stretch of messages), only to relays this engine finds up (engine/breaker.py).

A message a relay certainly did not take (it could not be reached, refused the connection
or dropped it before the message went out) goes to the next relay at once; one whose
reply was lost stays in doubt (ReplyLost), as with a single relay: only a message whose
verdict is untried (engine/smtp/verdict.py) may go elsewhere. With every relay down,
each send tries them all once and the mailing waits, as it does for a single relay.

The relays are the database's (``sendstatus relay``), followed as they change
(``follow``); or one fixed transport: ``--smtp``, the demo's maildir, a test's relay."""

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from sendstatus_tui.core.coordination.relay_breakers import Down
from sendstatus_tui.core.model.models import Relay, utc_now
from sendstatus_tui.core.model.rates import parse_rate
from sendstatus_tui.core.model.relays import EVERY_RELAY_DOWN
from sendstatus_tui.core.model.retry_policy import RetryPolicy
from sendstatus_tui.core.model.verdict import SendVerdict
from sendstatus_tui.core.store.store import StoreError
from sendstatus_tui.engine.breaker import Breaker
from sendstatus_tui.engine.relay_pace import RelayPace, Reserve
from sendstatus_tui.engine.smtp.credentials import Credentials, load_relay_credentials
from sendstatus_tui.engine.smtp.errors import RelayError, RelayUnavailable
from sendstatus_tui.engine.smtp.verdict import verdict_of
from sendstatus_tui.engine.transports import MaildirTransport, Transport, transport_for
from sendstatus_tui.errors import SendStatusError, mask_url

log = logging.getLogger("sendstatus.engine")
# the route of a fixed transport, and of the default maildir while no relay is stored
FIXED = "--smtp"
# a stored relay left out for its credentials is tried again this often: an operator may
# mend the credentials file while the engine runs
LEFT_OUT_RETRY_SECONDS = 10.0
DEFAULT_MAILDIR = "maildir"


@dataclass(eq=False)
class Route:
    name: str
    weight: int
    transport: Transport
    breaker: Breaker
    # what built it: a change of URL or connections builds another
    built_from: tuple[str, int | None] = ("", None)
    pace: RelayPace | None = None  # its own rate, shared by every engine, if it has one
    current: float = field(default=0.0)  # its standing in the weighted round robin


@dataclass(frozen=True)
class RouteState:
    name: str
    up: bool  # this engine's breaker lets messages through (a relay left out is not up)
    connections: int


@dataclass(frozen=True)
class LeftOut:
    """A stored relay this engine cannot use (its credentials): why and since when, the
    relay's row it was built from, and when it was last tried (monotonic)."""

    down: Down
    built_from: tuple[str, int | None]
    tried_at: float

    def due(self) -> bool:
        """Whether it is time to try it again (the credentials file may be mended)."""
        return time.monotonic() - self.tried_at >= LEFT_OUT_RETRY_SECONDS


class Routes:
    def __init__(
        self,
        fixed: Transport | None,
        retries: RetryPolicy = RetryPolicy(),  # noqa: B008  frozen: shared safely
        credentials_for: Callable[[str], Credentials | None] = load_relay_credentials,
        reserve: Reserve | None = None,
    ):
        """``fixed``: the one transport (``--smtp``); None: the stored relays, once
        ``follow`` has read them (until then, and while none is stored, the default
        maildir). ``reserve``: reserves send slots of a relay's own rate in the database
        (none: relays' rates are not kept, as for a fixed transport)."""
        self.stored = fixed is None
        self._reserve = reserve
        self._retries = retries  # paces the breakers' probes
        self._credentials_for = credentials_for
        self._routes: dict[str, Route] = {}
        # stored relays this engine cannot use (their credentials), why, and what was tried
        self.left_out: dict[str, LeftOut] = {}
        self._sender = ""  # the last envelope sender: what a probe checks
        self._retiring: set[asyncio.Task[None]] = set()
        first = fixed or MaildirTransport(None)
        self._add(FIXED if fixed else DEFAULT_MAILDIR, 1, first, ("", None))

    # --- what the engine shows ----------------------------------------------------------

    @property
    def reply_timeout(self) -> float:
        return max(route.transport.reply_timeout for route in self._routes.values())

    @property
    def capacity(self) -> int:
        up = [route for route in self._routes.values() if not route.breaker.is_down]
        return max(1, sum(route.transport.capacity for route in up or self._routes.values()))

    @property
    def connections(self) -> int:
        return sum(route.transport.connections for route in self._routes.values())

    @property
    def connections_reason(self) -> str:
        if len(self._routes) == 1:
            return next(iter(self._routes.values())).transport.connections_reason
        return "; ".join(
            f"{route.name}: {route.transport.connections}" for route in self._routes.values()
        )

    def states(self) -> list[RouteState]:
        """Each relay as this engine finds it: up or down (or left out), its connections.
        Read by the metrics' thread too: copies, no awaits."""
        routes = list(self._routes.values())
        found = [RouteState(r.name, not r.breaker.is_down, r.transport.connections) for r in routes]
        return found + [RouteState(name, False, 0) for name in list(self.left_out)]

    def downs(self) -> dict[str, Down]:
        """The relays this engine finds down or leaves out, for the database."""
        found = {r.name: r.breaker.down for r in self._routes.values() if r.breaker.down}
        return {**{name: left.down for name, left in self.left_out.items()}, **found}

    # --- following the stored relays ----------------------------------------------------

    def follow(self, relays: Sequence[Relay]) -> None:
        """Brings the routes in line with the stored relays (a no-op for a fixed
        transport): new ones opened, removed ones closed, changed ones rebuilt."""
        if not self.stored:
            return
        wanted = {relay.name: relay for relay in relays}
        if not wanted:  # the embedded default
            wanted_routes = {DEFAULT_MAILDIR}
            if DEFAULT_MAILDIR not in self._routes:
                self._add(DEFAULT_MAILDIR, 1, MaildirTransport(None), ("", None))
        else:
            wanted_routes = set(wanted)
        for name in [n for n in self._routes if n not in wanted_routes]:
            self._retire(self._routes.pop(name))
        for name in [n for n in self.left_out if n not in wanted]:  # removed meanwhile
            del self.left_out[name]
        for name, relay in wanted.items():
            built_from = (relay.url, relay.connections)
            route = self._routes.get(name)
            if route is not None and route.built_from == built_from:
                route.weight = relay.weight
                route.pace = self._pace(relay, route.pace)
                continue
            left = self.left_out.get(name)
            if left is not None and left.built_from == built_from and not left.due():
                continue  # still left out, and not due to be tried again
            if route is not None:
                self._retire(self._routes.pop(name))
            transport = self._transport(relay, built_from)
            if transport is not None:
                self.left_out.pop(name, None)
                self._add(name, relay.weight, transport, built_from)
                self._routes[name].pace = self._pace(relay, None)

    def _pace(self, relay: Relay, pace: RelayPace | None) -> RelayPace | None:
        """The relay's pace at its stored rate (kept while the rate stays)."""
        per_second = parse_rate(relay.rate)  # checked when it was stored
        if per_second is None or self._reserve is None:
            return None
        if pace is not None and pace.per_second == per_second:
            return pace
        return RelayPace(relay.name, per_second, self._reserve)

    def _transport(self, relay: Relay, built_from: tuple[str, int | None]) -> Transport | None:
        """The relay's transport; None when this engine cannot use it (its credentials are
        unusable here): the relay is left out, and the engine says so."""
        try:
            return transport_for(
                relay.url, self._credentials_for(relay.name), max_connections=relay.connections
            )
        except SendStatusError as exc:
            reason = f"left out by this engine: {exc}"
            before = self.left_out.get(relay.name)
            if before is None or (before.down.reason, before.built_from) != (reason, built_from):
                log.error("relay %s (%s) %s", relay.name, mask_url(relay.url), reason)
                down = Down(utc_now(), reason)
            else:
                down = before.down  # still down since then
            self.left_out[relay.name] = LeftOut(down, built_from, time.monotonic())
            return None

    def left_out_due(self) -> bool:
        """Whether a relay left out is due to be tried again."""
        return any(left.due() for left in self.left_out.values())

    def _add(
        self, name: str, weight: int, transport: Transport, built_from: tuple[str, int | None]
    ) -> None:
        breaker = Breaker(name, lambda: transport.check(self._sender), self._retries)
        self._routes[name] = Route(name, weight, transport, breaker, built_from)

    def _retire(self, route: Route) -> None:
        """Closes a route once the messages in its hands had their time to be answered."""

        async def retire() -> None:
            await route.breaker.close()
            await asyncio.sleep(route.transport.reply_timeout)
            await route.transport.close()

        task = asyncio.ensure_future(retire())
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    # --- sending ------------------------------------------------------------------------

    def pick(self, allowed: Sequence[str] | None, tried: set[str] | None = None) -> Route | None:
        """The next route by weight among those allowed and up; with none up, among those
        allowed (each send then tries the relays down, as the engine's back-off paces it)."""
        candidates = [route for route in self._allowed(allowed) if route.name not in (tried or ())]
        up = [route for route in candidates if not route.breaker.is_down]
        candidates = up or candidates
        if not candidates:
            return None
        total = sum(route.weight for route in candidates)
        for route in candidates:
            route.current += route.weight
        best = max(candidates, key=lambda route: route.current)
        best.current -= total
        return best

    def _allowed(self, allowed: Sequence[str] | None) -> list[Route]:
        """The routes a mailing naming ``allowed`` uses (all: it names none, or --smtp
        overrides every relay)."""
        if allowed is None or not self.stored:
            return list(self._routes.values())
        return [route for route in self._routes.values() if route.name in allowed]

    async def send(
        self, sender: str, recipient: str, message: bytes, relays: Sequence[str] | None = None
    ) -> tuple[str, str]:
        """The reply, and the name of the relay that gave it. A recipient's refusal or
        deferral, or a reply lost, names its relay too (``RelayError.relay``)."""
        self._sender = sender
        tried: set[str] = set()
        last: RelayError | None = None
        while (route := self.pick(relays, tried)) is not None:
            tried.add(route.name)
            if route.pace is not None:
                await self._paced(route.pace)
            asked_at = time.monotonic()
            try:
                reply = await route.transport.send(sender, recipient, message)
            except RelayError as exc:
                exc.relay = route.name
                verdict = verdict_of(exc)
                if verdict.verdict is SendVerdict.IN_DOUBT:
                    # it may have it: in doubt, never sent elsewhere too
                    route.breaker.trip(exc.reply)
                    raise
                if not verdict.may_try_elsewhere:  # this relay's answer for the recipient
                    raise
                if not verdict.refuses_us:  # certainly not taken: the next relay
                    route.breaker.trip(exc.reply)
                elif self._others_up(relays, tried):  # it refuses us: the others take it
                    route.breaker.trip(f"refused: {exc.reply}")
                else:
                    raise
                last = exc
                continue
            route.breaker.answered(asked_at)
            return reply, route.name
        raise self._given_up(last)

    async def check(self, sender: str, relays: Sequence[str] | None = None) -> None:
        """Reaches the relays a mailing uses, until one accepts us and ``sender``."""
        self._sender = sender
        tried: set[str] = set()
        last: RelayError | None = None
        while (route := self.pick(relays, tried)) is not None:
            tried.add(route.name)
            try:
                await route.transport.check(sender)
            except RelayError as exc:
                if not verdict_of(exc).refuses_us:  # not reached
                    route.breaker.trip(exc.reply)
                elif not self._others_up(relays, tried):
                    raise
                last = exc
                continue
            route.breaker.reset()
            return
        raise self._given_up(last)

    @staticmethod
    async def _paced(pace: RelayPace) -> None:
        """Waits for the message's slot of the relay's rate; the message has not gone out
        when the database cannot give one (it waits, untried)."""
        try:
            await pace.wait_turn()
        except StoreError as exc:
            raise RelayUnavailable(
                f"the rate of relay {pace.relay} cannot be read: {exc}"
            ) from None

    def any_up(self, relays: Sequence[str] | None) -> bool:
        """Whether a relay that a mailing naming ``relays`` uses is up for this engine."""
        return self._others_up(relays, set())

    def _others_up(self, relays: Sequence[str] | None, tried: set[str]) -> bool:
        return any(
            not route.breaker.is_down and route.name not in tried for route in self._allowed(relays)
        )

    def _given_up(self, last: RelayError | None) -> RelayError:
        """What a send that no relay took raises: a single relay's own error, else that
        every relay is down (and why)."""
        if last is not None and (verdict_of(last).refuses_us or len(self._routes) == 1):
            return last
        downs = "; ".join(f"{name}: {down.reason}" for name, down in self.downs().items())
        return RelayUnavailable(f"{EVERY_RELAY_DOWN} ({downs or 'none usable'})")

    async def close(self) -> None:
        for route in self._routes.values():
            await route.breaker.close()
            await route.transport.close()
        for task in list(self._retiring):
            task.cancel()
