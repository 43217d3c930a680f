"""Statements sent straight to the database driver, past SQLAlchemy's compiling (which
costs more than the query on the engine's hot paths and in bulk imports): the driver's
parameter marker, and a cursor in the session's transaction."""

from sqlalchemy.engine.interfaces import DBAPICursor, Dialect
from sqlmodel import Session


def parameter_mark(dialect: Dialect) -> str:
    """The driver's placeholder: SQLite's ``?``, psycopg's ``%s``."""
    return "?" if dialect.paramstyle == "qmark" else "%s"


def driver_cursor(session: Session) -> tuple[DBAPICursor, str]:
    """A DB-API cursor in the session's transaction, and the driver's parameter marker."""
    connection = session.connection()
    return connection.connection.cursor(), parameter_mark(connection.dialect)
