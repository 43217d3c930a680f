"""Brings a database's schema to the newest migration when the program opens it, and tells
a command that must not migrate whether the schema it found is the one it needs."""

from pathlib import Path

import sqlalchemy as sa

from sendstatus_tui.core.store.locks import advisory_lock
from sendstatus_tui.errors import SendStatusError

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
# the newest revision in migrations/versions; a test checks that it is Alembic's head
HEAD_REVISION = "0023"
_MIGRATION_LOCK = 0x5E4D5742


class SchemaNotCurrent(SendStatusError):
    """The database's schema is not the one this program needs, and it may not migrate it."""

    def __init__(self, where: str, revision: str | None):
        self.revision = revision
        if revision is None:
            message = f"{where} holds no sendstatus data yet (no schema)"
        elif revision in known_revisions():
            message = (
                f"{where} has an older schema ({revision}; this version needs {HEAD_REVISION})"
            )
        else:
            message = (
                f"{where} has schema {revision}, unknown to this version of sendstatus (a newer"
                " one wrote it): upgrade sendstatus"
            )
        super().__init__(message)

    @property
    def upgradable(self) -> bool:
        return self.revision is None or self.revision in known_revisions()


def known_revisions() -> set[str]:
    """The revisions of the migrations shipped with this version (files named NNNN_*.py)."""
    return {path.name[:4] for path in (MIGRATIONS_DIR / "versions").glob("[0-9]*.py")}


def upgrade_to_head(engine: sa.Engine, where: str) -> str | None:
    """Applies pending migrations; cheap when the schema is already current. Returns the
    revision found before (None: a database without our schema, now created).

    Two processes opening a new database at once are serialised (SQLite: BEGIN IMMEDIATE,
    PostgreSQL: an advisory lock), and the second finds the schema already there.
    """
    before = current_revision(engine)
    if before == HEAD_REVISION:
        return before
    if before is not None and before not in known_revisions():
        raise SchemaNotCurrent(where, before)  # a newer version's: nothing to do here
    # alembic is imported only when there is work to do: `sendstatus ls` stays quick
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.connect() as connection:
        connection.execution_options(sqlite_begin="IMMEDIATE")
        with connection.begin():
            if connection.dialect.name == "postgresql":
                connection.execute(advisory_lock(_MIGRATION_LOCK))
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
    return before


def current_revision(engine: sa.Engine) -> str | None:
    with engine.connect() as connection:
        if not sa.inspect(connection).has_table("alembic_version"):
            return None
        return connection.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
