"""The SES endpoint of ``sendstatus serve`` (``POST /ses`` unless ``--ses-path`` says
otherwise): SNS posts SES bounce and complaint notifications there.

- A message whose SNS signature does not check out (forged, altered, a certificate off
  SNS's hosts): 403, and nothing changes.
- SubscriptionConfirmation: confirmed at once (a GET of its SubscribeURL) when its topic is
  one of the ``--ses-topic`` ARNs the operator named; any other topic's is only logged with
  its URL, since anyone with an AWS account can sign one: the operator confirms it by hand
  if it is theirs. Then 200.
- Notification: applied as the intake applies a DSN or feedback report (core/feedback), in
  a transaction of its own, then 200; with ``--ses-topic``, another topic's is ignored. A
  notification that matches none of our signed codes is counted "unmatched" and changes
  nothing. When the database cannot be written: 503, and SNS delivers it again later.
"""

import asyncio
import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web

from sendstatus_tui.core.feedback.effects import Applied, Outcome, apply
from sendstatus_tui.core.model.feedback import Report
from sendstatus_tui.core.store.store import Store, StoreError
from sendstatus_tui.engine.intake.run import Tally, guard_after
from sendstatus_tui.engine.ses import DEFAULT_PATH
from sendstatus_tui.engine.ses.notification import report_of
from sendstatus_tui.engine.ses.sns import (
    NOTIFICATION,
    SUBSCRIPTION,
    CertificateSource,
    HttpsCertificates,
    SnsError,
    SnsMessage,
    confirm_over_https,
    sns_url,
    verified,
)

log = logging.getLogger("sendstatus.serve")

_MAX_BODY = 512 * 1024  # SNS messages are 256 KB at most


@dataclass
class SesOptions:
    path: str = DEFAULT_PATH
    topics: frozenset[str] = frozenset()  # the ARNs whose subscriptions are confirmed
    certificates: CertificateSource = field(default_factory=HttpsCertificates)
    confirm: Callable[[str], Awaitable[None]] = confirm_over_https


class SesEndpoint:
    def __init__(self, store: Store, options: SesOptions):
        self.store = store
        self.options = options
        self.tally = Tally()
        self.other = Counter[str]()  # deliveries, refused messages, other topics

    def line(self) -> str:
        o = self.other
        return (
            f"SES: {self.tally.line()}; {o['delivery']:,} deliveries ignored;"
            f" {o['refused']:,} refused (bad signature); {o['other topic']:,} of other topics"
        )

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await _body(request)
        if body is None:
            return web.Response(status=413, text="Too large.")
        try:
            message = await verified(body, self.options.certificates)
        except SnsError as exc:
            self.other["refused"] += 1
            log.warning("POST %s: refused: %s", request.path, exc)
            return web.Response(status=403, text="Forbidden.")
        if message.type == SUBSCRIPTION:
            return await self._subscription(message)
        if message.type != NOTIFICATION:
            log.info("SNS %s for %s: nothing to do", message.type, message.topic_arn)
            return web.Response(text="OK")
        if self.options.topics and message.topic_arn not in self.options.topics:
            self.other["other topic"] += 1
            log.warning(
                "SNS %s: topic %s is no --ses-topic: ignored", message.message_id, message.topic_arn
            )
            return web.Response(text="OK")
        kind, report = report_of(message.message, message.message_id)
        if kind == "Delivery":
            self.other["delivery"] += 1
            log.info("SNS %s: SES delivery: ignored", message.message_id)
            return web.Response(text="OK")
        try:
            applied = await asyncio.to_thread(self._apply, report)
        except StoreError as exc:
            log.error("SNS %s: not applied, SNS will send it again: %s", message.message_id, exc)
            return web.Response(status=503, text="Try again later.")
        self.tally.add(report, applied)
        where = (
            f" mailing {applied.mailing_id} recipient {applied.recipient_id}"
            if applied.recipient_id is not None
            else ""
        )
        log.info(
            "SNS %s: %s%s: %s, %s",
            message.message_id,
            report.verdict.value,
            where,
            applied.outcome.value,
            applied.why or report.why,
        )
        return web.Response(text="OK")

    def _apply(self, report: Report) -> Applied:
        with self.store.write() as session:
            applied = apply(session, report)
        if applied.outcome == Outcome.COUNTED and applied.mailing_id is not None:
            guard_after(self.store, applied.mailing_id)
        return applied

    async def _subscription(self, message: SnsMessage) -> web.Response:
        url = message.subscribe_url or ""
        if message.topic_arn not in self.options.topics:
            log.warning(
                "SNS subscription to %s: not confirmed, as it is no --ses-topic; if the"
                " topic is yours, confirm it by opening %s",
                message.topic_arn,
                url,
            )
            return web.Response(text="OK")
        try:
            await self.options.confirm(sns_url(url, "SubscribeURL"))
        except Exception as exc:  # noqa: BLE001  SNS sends the confirmation again; say why
            log.error(
                "SNS subscription to %s: confirming failed (%s); open %s to confirm it",
                message.topic_arn,
                exc,
                url,
            )
            return web.Response(status=503, text="Try again later.")
        log.info("SNS subscription to %s: confirmed", message.topic_arn)
        return web.Response(text="OK")


async def _body(request: web.Request) -> bytes | None:
    """The request's body, None when it is longer than any SNS message."""
    chunks, size = [], 0
    async for chunk in request.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > _MAX_BODY:
            return None
        chunks.append(chunk)
    return b"".join(chunks)
