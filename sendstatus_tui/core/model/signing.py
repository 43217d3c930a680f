"""The database's signing key and the return path it signs (core/model/verp.py), as the
engine and the intake read them."""

from sqlmodel import Session

from sendstatus_tui.core.model import settings
from sendstatus_tui.core.model.models import Secret
from sendstatus_tui.core.model.verp import KEY_NAME, ReturnPath, parse_return_path


def signing_key(session: Session) -> bytes | None:
    """The key made by the migration that created the feedback table (None: removed)."""
    row = session.get(Secret, KEY_NAME)
    return None if row is None else bytes.fromhex(row.value)


def return_path(session: Session) -> ReturnPath | None:
    """The ``return_path`` setting with its key; None while it is not set (then every
    message goes out with the mailing's sender as its envelope sender, as before)."""
    stored = settings.read(session, "return_path")
    key = signing_key(session)
    if stored is None or key is None:
        return None
    return parse_return_path(stored, key)
