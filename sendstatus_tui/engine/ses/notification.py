"""An SES notification (the JSON an SNS Notification carries) as the report it is, under
the rules DSNs follow (core/model/feedback.py):

- Bounce, Permanent: a hard bounce, or blocked when its status says so (5.7.x...), as a DSN
  with Action failed; without a status, a hard bounce (SES says the address is gone).
- Bounce, Transient or Undetermined: soft, recorded only.
- Complaint: a complaint, as a feedback report (``not-spam`` is none).
- Delivery and any other event: not ours, counted.

Which recipient it is about comes only from our signed codes: of the envelope sender SES
sent with (``mail.source``, the VERP return path) and of the ``X-Sendstatus-Recipient``
header among ``mail.headers`` (SES quotes the original's headers where the configuration
asks it to); the addresses it lists are never used. The basis of a report (what makes two
copies the same) is SES's feedback id, so the same event through two topics counts once.
"""

import json
import re
from typing import Any

from sendstatus_tui.core.model.feedback import (
    COMPLAINT_TYPES,
    Report,
    ReportVerdict,
    classify,
    status_of,
)
from sendstatus_tui.core.model.verp import RECIPIENT_HEADER, code_in

_CODE = re.compile(r"[A-Za-z2-7]{8,64}")
_SEVERITY = {
    ReportVerdict.BOUNCE: 4,
    ReportVerdict.BLOCKED: 3,
    ReportVerdict.SOFT: 2,
    ReportVerdict.NOT_A_BOUNCE: 0,
}
_FIELD_MAX = 1000


def report_of(message: str, sns_message_id: str) -> tuple[str, Report]:
    """The SES event type (``Bounce``, ``Delivery``...) of an SNS Notification's ``Message``
    and the report it is; never raises."""
    try:
        notification = json.loads(message)
    except (TypeError, json.JSONDecodeError):
        notification = None
    if not isinstance(notification, dict):
        return "", Report(ReportVerdict.NOT_A_BOUNCE, f"sns:{sns_message_id}", why="not SES JSON")
    # notifications say notificationType, configuration set events eventType
    kind = str(notification.get("notificationType") or notification.get("eventType") or "")
    mail = _dict(notification.get("mail"))
    codes: dict[str, Any] = {
        "return_codes": _return_codes(mail),
        "header_codes": _header_codes(mail),
    }
    if kind == "Bounce":
        bounce = _dict(notification.get("bounce"))
        basis = f"ses:{bounce.get('feedbackId') or sns_message_id}"
        return kind, Report(basis=basis, **codes, **_bounce(bounce))
    if kind == "Complaint":
        complaint = _dict(notification.get("complaint"))
        basis = f"ses:{complaint.get('feedbackId') or sns_message_id}"
        return kind, Report(basis=basis, **codes, **_complaint(complaint))
    why = f"SES {kind.lower()} notification" if kind else "SES notification of no type"
    return kind, Report(ReportVerdict.NOT_A_BOUNCE, f"sns:{sns_message_id}", why=why)


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _text(value: Any) -> str | None:
    return " ".join(str(value).split())[:_FIELD_MAX] if value not in (None, "") else None


def _typed(value: str | None) -> str | None:
    """``dsn; a1-2.smtp-out.amazonses.com`` → the name after the type."""
    if value is None:
        return None
    kind, semicolon, rest = value.partition(";")
    return rest.strip() if semicolon and " " not in kind.strip() else value


def _return_codes(mail: dict[str, Any]) -> tuple[str, ...]:
    addresses = [mail.get("source")]
    common = _dict(mail.get("commonHeaders"))
    addresses.append(common.get("returnPath"))
    codes = (code_in(str(a)) for a in addresses if isinstance(a, str) and a)
    return tuple(dict.fromkeys(code for code in codes if code))


def _header_codes(mail: dict[str, Any]) -> tuple[str, ...]:
    headers = mail.get("headers")
    found = []
    for header in headers if isinstance(headers, list) else []:
        header = _dict(header)
        if str(header.get("name", "")).lower() != RECIPIENT_HEADER.lower():
            continue
        value = str(header.get("value", "")).strip()
        if _CODE.fullmatch(value):
            found.append(value.lower())
    return tuple(dict.fromkeys(found))


def _bounce(bounce: dict[str, Any]) -> dict[str, Any]:
    bounce_type = str(bounce.get("bounceType", ""))
    sub_type = str(bounce.get("bounceSubType", ""))
    recipients = [_dict(r) for r in bounce.get("bouncedRecipients") or [] if isinstance(r, dict)]
    worst: tuple[int, ReportVerdict, dict[str, Any]] | None = None
    for recipient in recipients or [{}]:
        status = status_of(_text(recipient.get("status")) or _text(recipient.get("diagnosticCode")))
        if bounce_type == "Permanent":
            verdict = classify("failed", status) if status else ReportVerdict.BOUNCE
        else:
            verdict = ReportVerdict.SOFT
        if worst is None or _SEVERITY[verdict] > worst[0]:
            worst = (_SEVERITY[verdict], verdict, recipient)
    assert worst is not None
    _, verdict, recipient = worst
    status = status_of(_text(recipient.get("status")) or _text(recipient.get("diagnosticCode")))
    return {
        "verdict": verdict,
        "action": "failed" if bounce_type == "Permanent" else "delayed",
        "status": status,
        "diagnostic": _typed(_text(recipient.get("diagnosticCode"))),
        "reporting_mta": _typed(_text(bounce.get("reportingMTA"))),
        "why": f"SES bounce {bounce_type or 'of no type'}/{sub_type or '-'} {status or ''}".strip(),
    }


def _complaint(complaint: dict[str, Any]) -> dict[str, Any]:
    feedback_type = str(complaint.get("complaintFeedbackType") or "abuse").lower()
    if feedback_type not in COMPLAINT_TYPES:
        return {
            "verdict": ReportVerdict.NOT_A_BOUNCE,
            "feedback_type": feedback_type,
            "why": f"SES complaint of type {feedback_type}: not a complaint",
        }
    return {
        "verdict": ReportVerdict.COMPLAINT,
        "feedback_type": feedback_type,
        "reporting_mta": _text(complaint.get("userAgent")),
        "why": f"SES complaint ({feedback_type})",
    }
