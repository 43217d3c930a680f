"""The field blocks of a ``multipart/report``'s report part (its ``message/delivery-status``
or ``message/feedback-report``) and the message's headers, read from its lines without
parsing the whole message: the lines are split at the boundary, and the header sections
read, as the ``email`` package's feedparser splits and reads them (its ``compat32`` policy
makes each header). What it gives is what ``email.message_from_bytes`` gives for the same
message (tests/test_report_part.py compares them).

A parse of the whole message costs over twice as much: every part is parsed, the
returned original too, and the boundary's pattern is compiled for each message (each has
a boundary of its own, so the ``re`` module's cache never holds it).

Anything else is left to the whole parse (None): another type, no boundary, no report
part, a part before it that holds parts of its own (the report might be in it), a block
of fields that declares a type of its own, a header section with a Unix "From " line.
"""

import io
import re
from collections.abc import Iterator
from email.message import Message
from email.policy import compat32
from email.utils import collapse_rfc2231_value
from typing import NamedTuple

# as the feedparser's: a header line, a continuation or a Unix "From " line
_HEADER_LINE = re.compile(r"^(From |[\041-\071\073-\176]*:|[\t ])")
_BLANK = {"\r\n", "\n", "\r"}
# what follows "--" + boundary on a boundary line ("--" after it closes the multipart)
_BOUNDARY_REST = re.compile(r"(?P<end>--)?[ \t]*(\r\n|\r|\n)?$")
_REPORT_TYPES = {
    "delivery-status": "message/delivery-status",
    "feedback-report": "message/feedback-report",
}


class ReportPart(NamedTuple):
    headers: Message  # the message's, without its body
    content_type: str  # the report part's: message/delivery-status or message/feedback-report
    blocks: list[Message]  # its blocks of fields, as its payload in the email package's parse


class _Unusual(Exception):
    """A message this reading leaves to the whole parse."""


def report_part(data: bytes) -> ReportPart | None:
    """The report part of ``data``, or None when the whole message must be parsed (see the
    module's docstring)."""
    # the email package's reading of bytes, and its lines (split on \r\n, \r or \n)
    lines = io.StringIO(data.decode("ascii", "surrogateescape"), newline="").readlines()
    try:
        body = _header_end(lines, 0)
        headers = _message_of(lines[:body])
        if headers.get_content_type() != "multipart/report":
            return None
        report_type, boundary = _params(headers)
        wanted = _REPORT_TYPES.get(report_type)
        if wanted is None or boundary is None:
            return None
        if body < len(lines) and lines[body] in _BLANK:
            body += 1  # the blank line ending the headers
        for part in _parts(lines[body:], "--" + boundary):
            end = _header_end(part, 0)
            part_headers = _message_of(part[:end])
            if part_headers.get_content_type() == wanted:
                if end < len(part) and part[end] in _BLANK:
                    end += 1
                if wanted == "message/feedback-report":  # one message: its headers
                    return ReportPart(
                        headers, wanted, [_message_of(part[end : _header_end(part, end)])]
                    )
                return ReportPart(headers, wanted, _status_blocks(part, end))
            if part_headers.get_content_maintype() in ("multipart", "message"):
                return None  # parts of its own come first in a walk
    except _Unusual:
        return None
    return None


def _params(headers: Message) -> tuple[str, str | None]:
    """The report type (lower case) and the boundary, as ``get_param("report-type")`` and
    ``get_boundary()`` give them, from one reading of the Content-Type's parameters."""
    report_type, boundary = None, None
    for name, value in headers.get_params([]):
        name = name.lower()
        if name == "report-type" and report_type is None:
            report_type = str(value or "").lower()
        elif name == "boundary" and boundary is None:
            boundary = collapse_rfc2231_value(value).rstrip()
    return report_type or "", boundary


def _header_end(lines: list[str], start: int) -> int:
    """The index of the first line from ``start`` on that is not a header line."""
    end = start
    while end < len(lines) and _HEADER_LINE.match(lines[end]):
        end += 1
    return end


def _message_of(lines: list[str]) -> Message:
    """A Message of the header ``lines``, as the feedparser makes it (a continuation first
    is dropped, as is a line starting with a colon)."""
    message = Message()
    value: list[str] = []
    for line in lines:
        if line[0] in " \t":
            if value:
                value.append(line)
            continue
        if value:
            message.set_raw(*compat32.header_source_parse(value))
            value = []
        if line.startswith("From "):
            raise _Unusual("a Unix From line in the headers")
        if not line.startswith(":"):
            value = [line]
    if value:
        message.set_raw(*compat32.header_source_parse(value))
    return message


def _status_blocks(part: list[str], start: int) -> list[Message]:
    """The blocks of fields of a delivery-status part from ``start`` on, as the feedparser
    delimits them: each up to a blank line, which is taken; an empty block for each
    further blank line; nothing after the last blank line when it ends the part."""
    blocks, at = [], start
    while True:
        end = _header_end(part, at)
        block = _message_of(part[at:end])
        if block.get_content_maintype() in ("multipart", "message"):
            raise _Unusual("a block of fields with a type of its own")
        blocks.append(block)
        while end < len(part) and part[end] not in _BLANK:
            end += 1  # lines that are no header: the block's body
        at = end + 1  # past the blank line
        if at >= len(part):
            return blocks


def _parts(body: list[str], separator: str) -> Iterator[list[str]]:
    """The lines of each part, as the feedparser delimits them: from the first boundary
    line (a closing one before it: no parts), consecutive boundary lines taken as one, up to
    the closing boundary or the end. Read as they are asked for."""
    at = 0
    while at < len(body) and _boundary(body[at], separator) is None:
        at += 1  # the preamble
    if at == len(body) or _boundary(body[at], separator):
        return
    while True:
        while at < len(body) and _boundary(body[at], separator) is not None:
            at += 1
        end = at
        while end < len(body) and _boundary(body[end], separator) is None:
            end += 1
        yield body[at:end]
        if end == len(body) or _boundary(body[end], separator):
            return
        at = end


def _boundary(line: str, separator: str) -> bool | None:
    """None for a line that is no boundary; else whether it is the closing one."""
    if not line.startswith(separator):
        return None
    rest = _BOUNDARY_REST.match(line, len(separator))
    return None if rest is None else rest["end"] is not None
