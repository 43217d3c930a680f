"""What one incoming message is: an RFC 3464 delivery status notification (per recipient:
Action, Status, Diagnostic-Code, Reporting-MTA), a bounce of an MTA that ignores RFC 3464
(flufl.bounce recognises those), an RFC 5965 feedback report (ARF), or none of ours (an
auto-reply, anything else). Never raises: what cannot be read is "not a bounce".

Which recipient it is about is not decided here: the codes found are checked against the
database's key by core/feedback. Codes come from the addresses it was delivered to (the
envelope, ``Delivered-To``, ``X-Original-To``, ``To``) and from the signed recipient
header of the returned original; an address written anywhere else is never used.
"""

import email
import hashlib
import re
from email.message import Message
from email.parser import HeaderParser
from typing import Any

from flufl.bounce import all_failures

from sendstatus_tui.core.model.feedback import (
    COMPLAINT_TYPES,
    Report,
    ReportVerdict,
    classify,
    status_of,
)
from sendstatus_tui.core.model.verp import MAX_CODE, RECIPIENT_HEADER, code_in
from sendstatus_tui.engine.intake.report_part import ReportPart, report_part

# the headers naming where a message was delivered (a local MTA adds the first two)
_DELIVERED_TO = ("Delivered-To", "X-Original-To", "Envelope-To", "X-Envelope-To", "To")
_SIGNED = re.compile(
    rb"^" + RECIPIENT_HEADER.encode() + rb":[ \t]*([A-Za-z2-7]{8,64})", re.I | re.M
)
_VERP_CODE = re.compile(rf"\+([A-Za-z2-7]{{8,{MAX_CODE}}})@")
_SEVERITY = {
    ReportVerdict.BOUNCE: 4,
    ReportVerdict.BLOCKED: 3,
    ReportVerdict.SOFT: 2,
    ReportVerdict.NOT_A_BOUNCE: 0,
}
_FIELD_MAX = 1000  # characters kept of a diagnostic or a reporting MTA


def parse(data: bytes, envelope_to: str | None = None, truncated: bool = False) -> Report:
    """The report ``data`` (a whole message, or its first bytes) is."""
    basis = "sha256:" + hashlib.sha256(data).hexdigest()
    try:
        report = _report_part(data)
        # the headers alone, else the whole message
        message = report.headers if report is not None else email.message_from_bytes(data)
        message_id = " ".join(str(message.get("Message-ID", "")).split())
        if message_id:
            basis = f"message-id:{message_id}"
        return_codes = _return_codes(message, envelope_to)
        header_codes = tuple(
            dict.fromkeys(m.decode("ascii").lower() for m in _SIGNED.findall(data))
        )
        found = _report_fields(report) if report is not None else _what_it_is(message)
    except Exception as exc:  # noqa: BLE001  malformed MIME, a detector's surprise: never fatal
        why = f"unreadable ({type(exc).__name__}: {' '.join(str(exc).split())[:200]})"
        return Report(ReportVerdict.NOT_A_BOUNCE, basis, why=why)
    if truncated:
        found["why"] = f"{found['why']} (read its first {len(data):,} bytes)"
    return Report(basis=basis, return_codes=return_codes, header_codes=header_codes, **found)


def _return_codes(message: Message, envelope_to: str | None) -> tuple[str, ...]:
    addresses = [envelope_to] if envelope_to else []
    codes = [code_in(address) for address in addresses]
    for name in _DELIVERED_TO:
        for value in message.get_all(name, []):
            # the codes of the VERP addresses in it: "+CODE@" (the intake verifies them)
            codes += [code.lower() for code in _VERP_CODE.findall(str(value))]
    return tuple(dict.fromkeys(code for code in codes if code))


def _report_part(data: bytes) -> ReportPart | None:
    """The report part of a plain multipart/report (report_part.py); None for any other
    message, or one that reading only its report part fails on: then the whole is parsed,
    and fails or not as it does."""
    try:
        return report_part(data)
    except Exception:  # noqa: BLE001
        return None


def _report_fields(report: ReportPart) -> dict[str, Any]:
    if report.content_type == "message/delivery-status":
        return _dsn_fields(report.blocks)
    return _arf_fields(report.blocks)


def _what_it_is(message: Message) -> dict[str, Any]:
    if message.get_content_type() == "multipart/report":
        report_type = str(message.get_param("report-type", "") or "").lower()
        if report_type == "delivery-status":
            return _dsn(message)
        if report_type == "feedback-report":
            return _arf(message)
    for part in message.walk():  # a report nested in a forward, or with a wrong type
        if part.get_content_type() == "message/delivery-status":
            return _dsn(message)
        if part.get_content_type() == "message/feedback-report":
            return _arf(message)
    return _other(message)


def _blocks(part: Message) -> list[Message]:
    """The field blocks of a delivery-status or feedback-report part."""
    payload = part.get_payload()
    if isinstance(payload, list):
        return [block for block in payload if isinstance(block, Message)]
    text = part.get_payload(decode=True) or b""
    assert isinstance(text, bytes)
    return [
        HeaderParser().parsestr(chunk.strip() + "\n")
        for chunk in re.split(r"\r?\n\s*\r?\n", text.decode("utf-8", "replace"))
        if chunk.strip()
    ]


def _field(block: Message, name: str) -> str | None:
    value = block.get(name)
    return " ".join(str(value).split())[:_FIELD_MAX] if value is not None else None


def _typed(value: str | None) -> str | None:
    """``rfc822; mx.example.com`` → ``mx.example.com``; ``smtp; 550 5.1.1 ...`` → as is
    after the type."""
    if value is None:
        return None
    kind, semicolon, rest = value.partition(";")
    return rest.strip() if semicolon and " " not in kind.strip() else value


def _dsn(message: Message) -> dict[str, Any]:
    part = next(p for p in message.walk() if p.get_content_type() == "message/delivery-status")
    return _dsn_fields(_blocks(part))


def _dsn_fields(blocks: list[Message]) -> dict[str, Any]:
    if not blocks:
        return {"verdict": ReportVerdict.NOT_A_BOUNCE, "why": "a DSN without fields"}
    per_message, recipients = blocks[0], blocks[1:] or blocks[:1]
    worst: tuple[int, ReportVerdict, Message] | None = None
    for block in recipients:
        verdict = classify(_field(block, "Action"), _field(block, "Status"))
        if worst is None or _SEVERITY[verdict] > worst[0]:
            worst = (_SEVERITY[verdict], verdict, block)
    assert worst is not None
    _, verdict, block = worst
    action, status = _field(block, "Action"), status_of(_field(block, "Status"))
    return {
        "verdict": verdict,
        "action": action,
        "status": status,
        "diagnostic": _typed(_field(block, "Diagnostic-Code")),
        "reporting_mta": _typed(_field(per_message, "Reporting-MTA"))
        or _typed(_field(block, "Remote-MTA")),
        "why": f"DSN {action or 'without Action'} {status or 'without Status'}",
    }


def _arf(message: Message) -> dict[str, Any]:
    part = next(p for p in message.walk() if p.get_content_type() == "message/feedback-report")
    return _arf_fields(_blocks(part))


def _arf_fields(fields: list[Message]) -> dict[str, Any]:
    feedback_type = (_field(fields[0], "Feedback-Type") or "").lower() if fields else ""
    if feedback_type not in COMPLAINT_TYPES:
        return {
            "verdict": ReportVerdict.NOT_A_BOUNCE,
            "feedback_type": feedback_type or None,
            "why": f"feedback report of type {feedback_type or 'none'}: not a complaint",
        }
    return {
        "verdict": ReportVerdict.COMPLAINT,
        "feedback_type": feedback_type,
        "reporting_mta": _typed(_field(fields[0], "Reporting-MTA"))
        or _field(fields[0], "User-Agent"),
        "why": f"feedback report ({feedback_type})",
    }


def _other(message: Message) -> dict[str, Any]:
    """Not a standard report: what flufl.bounce's detectors make of it, else an auto-reply
    or nothing of ours."""
    if _auto_reply(message):
        return {"verdict": ReportVerdict.NOT_A_BOUNCE, "why": "an auto-reply"}
    temporary, permanent = all_failures(message)
    if not permanent and not temporary:
        return {"verdict": ReportVerdict.NOT_A_BOUNCE, "why": "not a bounce (unrecognised)"}
    text = _first_text(message)
    status = status_of(text)
    if permanent:
        # a detector's permanent failure without a status code: the address is refused
        verdict = classify("failed", status) if status else ReportVerdict.BOUNCE
        action = "failed"
    else:
        verdict, action = ReportVerdict.SOFT, "delayed"
    diagnostic = _diagnostic_line(text, status)
    return {
        "verdict": verdict,
        "action": action,
        "status": status,
        "diagnostic": diagnostic,
        "why": f"non-standard bounce ({action} {status or 'without status'})",
    }


def _auto_reply(message: Message) -> bool:
    auto = str(message.get("Auto-Submitted", "no")).strip().lower()
    precedence = str(message.get("Precedence", "")).strip().lower()
    return (
        auto.startswith("auto-replied")
        or precedence == "auto_reply"
        or message.get("X-Autoreply") is not None
        or message.get("X-Autorespond") is not None
    )


def _first_text(message: Message) -> str:
    for part in message.walk():
        if part.get_content_maintype() == "text":
            payload = part.get_payload(decode=True)
            if isinstance(payload, bytes):
                return payload[:65536].decode(part.get_content_charset() or "utf-8", "replace")
    return ""


def _diagnostic_line(text: str, status: str | None) -> str | None:
    """The line of the bounce that gives the reason (the one with the status, if any)."""
    lines = [" ".join(line.split()) for line in text.splitlines() if line.strip()]
    if status:
        lines = [line for line in lines if status in line] or lines
    return lines[0][:_FIELD_MAX] if lines else None
