"""``sendstatus serve``: the HTTP side of one-click unsubscribe (RFC 8058).

The mail providers POST ``List-Unsubscribe=One-Click`` (urlencoded or multipart) to the
URL of a message's List-Unsubscribe header, without cookies and without following
redirects, and expect an answer at once. The URL carries a token sendstatus signed
(``{unsubscribe_token}``, core/model/unsubscribe.py): the server answers at whatever path
the mailing's URL template has, and finds the token among the path's segments and the
query's values. A token nobody signed is a 404 and changes nothing.

- POST with ``List-Unsubscribe=One-Click``: the recipient is suppressed and counted in its
  mailing's ``unsubscribed`` in the request's own transaction, then 200, plain text.
- GET (and HEAD): a small confirmation page whose button POSTs the same; it unsubscribes
  nobody, since link scanners and previews follow links.
- A test send's token: 200, and nothing changes.

It also takes Amazon SES bounce and complaint notifications through SNS, at ``/ses``
(engine/ses/endpoint.py).

Why aiohttp: it is a well-kept asyncio HTTP server (and client) that parses both form
encodings, bounds request sizes, and shuts down cleanly, without a framework around it; the
database work runs on worker threads, off its loop. It serves behind a reverse proxy that
terminates HTTPS (docs/guides/reverse-proxy.md).
"""

import asyncio
import html
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass

from aiohttp import web

from sendstatus_tui.core.feedback import one_click
from sendstatus_tui.core.feedback.one_click import Unsubscribed
from sendstatus_tui.core.model.signing import signing_key
from sendstatus_tui.core.model.unsubscribe import Token
from sendstatus_tui.core.model.verp import MAX_CODE
from sendstatus_tui.core.store.store import Store
from sendstatus_tui.engine.ses.endpoint import SesEndpoint, SesOptions

log = logging.getLogger("sendstatus.serve")

_MAX_BODY = 64 * 1024  # a one-click POST is a few bytes; a form with a file is refused
_TOKEN_SHAPE = re.compile(rf"[a-z2-7]{{8,{MAX_CODE}}}")  # lowercase base32 (verp.py)
_SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<title>Unsubscribe</title></head>
<body style="font-family: sans-serif; max-width: 32em; margin: 3em auto; padding: 0 1em">
<h1>Unsubscribe</h1>
<p>Press the button to stop receiving these emails.</p>
<form method="post" action="{action}">
<input type="hidden" name="List-Unsubscribe" value="One-Click">
<button type="submit">Unsubscribe</button>
</form>
</body></html>
"""


@dataclass(frozen=True)
class Listen:
    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


class ListenError(ValueError):
    pass


def parse_listen(text: str) -> Listen:
    """``HOST:PORT`` (``[::1]:8025`` for IPv6)."""
    host, colon, port = text.strip().rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ListenError(f"--listen {text!r}: expected HOST:PORT, e.g. 127.0.0.1:8025")
    return Listen(host, int(port))


def _candidates(request: web.Request) -> Iterator[str]:
    """What may be a token: each segment of the path, then each value of the query."""
    for segment in request.path.split("/"):
        yield segment.lower()
    for value in request.query.values():
        yield value.strip().lower()


class OneClickServer:
    def __init__(self, store: Store, ses: SesOptions):
        self.store = store
        self.key: bytes | None = None
        self.ses = SesEndpoint(store, ses)
        self.ses_path = ses.path

    def app(self) -> web.Application:
        app = web.Application(client_max_size=_MAX_BODY)
        app.router.add_post(self.ses_path, self.ses.handle)
        app.router.add_route("*", "/{tail:.*}", self.handle)
        return app

    async def load_key(self) -> None:
        def read() -> bytes | None:
            with self.store.read() as session:
                return signing_key(session)

        self.key = await asyncio.to_thread(read)
        if self.key is None:
            log.error("this database has no signing key: every token is refused")

    def _token(self, request: web.Request) -> Token | None:
        for candidate in _candidates(request):
            if _TOKEN_SHAPE.fullmatch(candidate):
                token = one_click.check(self.key, candidate)
                if token is not None:
                    return token
        return None

    async def handle(self, request: web.Request) -> web.StreamResponse:
        token = self._token(request)
        if token is None or not await self._exists(token):
            return _text(404, "Not found.")
        if request.method in ("GET", "HEAD"):
            page = _PAGE.format(action=html.escape(request.path_qs, quote=True))
            return web.Response(
                status=200,
                text=page,
                content_type="text/html",
                headers=_SECURITY_HEADERS,
            )
        if request.method != "POST":
            return _text(405, "Method not allowed.", Allow="GET, HEAD, POST")
        try:
            form = await request.post()
        except web.HTTPRequestEntityTooLarge:
            return _text(413, "Too large.")
        except ValueError:
            return _text(400, "Expected List-Unsubscribe=One-Click.")
        if str(form.get("List-Unsubscribe", "")).strip() != "One-Click":
            return _text(400, "Expected List-Unsubscribe=One-Click.")
        outcome = await asyncio.to_thread(self._unsubscribe, token)
        log.info(
            "%s %s: mailing %s recipient %s: %s",
            request.method,
            request.path,
            token.mailing_id,
            token.recipient_id,
            outcome.value,
        )
        if outcome == Unsubscribed.UNKNOWN:
            return _text(404, "Not found.")
        return _text(200, "You are unsubscribed.")

    async def _exists(self, token: Token) -> bool:
        def read() -> bool:
            with self.store.read() as session:
                return one_click.exists(session, token)

        return await asyncio.to_thread(read)

    def _unsubscribe(self, token: Token) -> Unsubscribed:
        with self.store.write() as session:
            return one_click.unsubscribe(session, token)


def _text(status: int, text: str, **headers: str) -> web.Response:
    return web.Response(status=status, text=text, headers={**_SECURITY_HEADERS, **headers})


async def serve(
    store: Store, listen: Listen, stop: asyncio.Event, ses: SesOptions | None = None
) -> None:
    """Answers at ``listen`` until ``stop`` is set; then finishes the requests in hand."""
    server = OneClickServer(store, ses or SesOptions())
    await server.load_key()
    runner = web.AppRunner(
        server.app(), access_log=None, handle_signals=False, shutdown_timeout=5.0
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, listen.host, listen.port)
        await site.start()
        log.info(
            "serving one-click unsubscribe on http://%s, SES notifications at %s",
            listen,
            server.ses_path,
        )
        await stop.wait()
        log.info("stopping")
    finally:
        await runner.cleanup()
    log.info("%s", server.ses.line())
