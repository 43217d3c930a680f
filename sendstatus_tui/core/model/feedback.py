"""What comes back after the relay accepted a message, as rules: which report is a hard
bounce, a block, a soft bounce, a complaint, or nothing of ours.

Parsing reports is the intake's (engine/intake/parse.py); applying them is
core/feedback's. A hard bounce is a DSN with Action failed and a status saying the address
does not exist or cannot take mail (5.1.x, 5.2.1, 5.4.4); any other permanent status
(5.7.x policy, DMARC, blocklists) blocks: counted, never suppressed, since the address is
fine; 4.x.x or Action delayed is soft: recorded, not a failure.
"""

import re
from dataclasses import dataclass
from enum import StrEnum


class ReportVerdict(StrEnum):
    BOUNCE = "bounce"  # hard: the address does not exist or cannot take mail
    BLOCKED = "blocked"  # permanent for another reason: the address is fine
    SOFT = "soft"  # delayed, or a temporary status: recorded only
    COMPLAINT = "complaint"  # a feedback report (ARF): the recipient called it spam
    NOT_A_BOUNCE = "not a bounce"  # auto-replies, anything unrecognised: no effect


_STATUS = re.compile(r"([245])\.(\d{1,3})\.(\d{1,3})")
_HARD = re.compile(r"5\.(1\.\d{1,3}|2\.1|4\.4)")
# ARF feedback types that are complaints (not-spam is the opposite)
COMPLAINT_TYPES = {"abuse", "fraud", "virus", "other"}


def status_of(text: str | None) -> str | None:
    """The first enhanced status code (RFC 3463) in ``text``, e.g. ``5.1.1``."""
    found = _STATUS.search(text or "")
    return found[0] if found else None


def classify(action: str | None, status: str | None) -> ReportVerdict:
    """The verdict of one DSN recipient (its Action and Status fields)."""
    action = (action or "").strip().lower()
    code = status_of(status)
    if action == "delayed" or (code is not None and code.startswith("4")):
        return ReportVerdict.SOFT
    if action != "failed":
        return ReportVerdict.NOT_A_BOUNCE  # delivered, relayed, expanded
    if code is not None and _HARD.fullmatch(code):
        return ReportVerdict.BOUNCE
    return ReportVerdict.BLOCKED  # 5.7.x and every other permanent reason, or none given


@dataclass(frozen=True)
class Report:
    """One incoming message, as the intake understood it."""

    verdict: ReportVerdict
    # what makes two copies of one report the same: its Message-ID, else a hash of it
    basis: str
    # the codes of the return paths it was sent to (envelope, To, Delivered-To...)
    return_codes: tuple[str, ...] = ()
    # the codes of the signed recipient header quoted in it (the returned original)
    header_codes: tuple[str, ...] = ()
    action: str | None = None
    status: str | None = None
    diagnostic: str | None = None
    reporting_mta: str | None = None
    feedback_type: str | None = None
    # in a few words, for the log: "DSN failed 5.1.1", "auto-reply", "unreadable: ..."
    why: str = ""
