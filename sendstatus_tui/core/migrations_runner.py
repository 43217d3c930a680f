"""Brings a database's schema to the newest migration when the program opens it."""

from pathlib import Path

import sqlalchemy as sa

from .locks import advisory_lock

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
# the newest revision in migrations/versions; a test checks that it is Alembic's head
HEAD_REVISION = "0008"
_MIGRATION_LOCK = 0x5E4D5742


def upgrade_to_head(engine: sa.Engine) -> None:
    """Applies pending migrations; cheap when the schema is already current.

    Two processes opening a new database at once are serialised (SQLite: BEGIN IMMEDIATE,
    PostgreSQL: an advisory lock), and the second finds the schema already there.
    """
    if _current_revision(engine) == HEAD_REVISION:
        return
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


def _current_revision(engine: sa.Engine) -> str | None:
    with engine.connect() as connection:
        if not sa.inspect(connection).has_table("alembic_version"):
            return None
        return connection.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
