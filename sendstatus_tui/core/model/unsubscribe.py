"""One-click unsubscribe tokens: ``{unsubscribe_token}`` in a mailing's unsubscribe URL
becomes a code naming its mailing and recipient with a MAC under the database's key (the
``secret`` table), in lowercase base32 like the return path's codes but signed for this
use only. The URL carries no address; ``sendstatus serve`` checks the token.

A test send's token is signed for tests: ``serve`` recognises it and answers as for any
token, without unsubscribing the recipient whose data the test borrowed.
"""

from dataclasses import dataclass

from sendstatus_tui.core.model.verp import sign, verify

PLACEHOLDER = "unsubscribe_token"  # reserved: no CSV column may take this name
_CONTEXT = b"sendstatus one-click unsubscribe v1:"
_TEST_CONTEXT = b"sendstatus one-click unsubscribe of a test send v1:"


@dataclass(frozen=True)
class Token:
    mailing_id: int
    recipient_id: int
    test: bool  # a test send's: it unsubscribes nobody


def token_for(key: bytes, mailing_id: int, recipient_id: int, *, test: bool = False) -> str:
    return sign(key, mailing_id, recipient_id, _TEST_CONTEXT if test else _CONTEXT)


def read_token(key: bytes, text: str) -> Token | None:
    """What a token names; None for one nobody signed with ``key``."""
    for context, test in ((_CONTEXT, False), (_TEST_CONTEXT, True)):
        ids = verify(key, text, context)
        if ids is not None:
            return Token(ids[0], ids[1], test)
    return None
