"""The PostgreSQL test databases that are emptied and used again (postgres_recycling.py)
hold what a fresh copy of the template holds, or are dropped."""

import os

import pytest
import sqlalchemy as sa

from sendstatus_tui.core.store.store import Store

from .conftest import POSTGRES_ENV
from .helpers import add_mailing
from .postgres_copies import _dsn, create_database, database_url, drop_database
from .postgres_recycling import Template, empty


@pytest.fixture
def template():
    """A database migrated to the newest schema, and what it holds."""
    server = os.environ.get(POSTGRES_ENV)
    if not server:
        pytest.skip(f"{POSTGRES_ENV} is not set (.ci/run sets it when a server answers)")
    name = create_database(server, prefix="sendstatus_template")
    Store(database_url(server, name)).dispose()
    copies: list[str] = []

    def copy() -> str:
        copies.append(create_database(server, template=name))
        return database_url(server, copies[-1])

    yield Template.read(_dsn(database_url(server, name))), copy
    for made in [*copies, name]:
        drop_database(server, made)


def contents(url: str) -> dict[str, list[tuple]]:
    """Every public table's rows, the sequences' states and the planner's statistics."""
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    with engine.connect() as connection:
        tables = connection.exec_driver_sql(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1"
        ).scalars()
        found = {
            table: sorted(map(tuple, connection.exec_driver_sql(f'SELECT * FROM "{table}"')))
            for table in list(tables)
        }
        found["sequences"] = sorted(
            map(
                tuple,
                connection.exec_driver_sql(
                    "SELECT sequencename, last_value FROM pg_sequences WHERE schemaname = 'public'"
                ),
            )
        )
        found["statistics"] = sorted(
            map(
                tuple,
                connection.exec_driver_sql(
                    "SELECT starelid::regclass::text, staattnum FROM pg_statistic WHERE starelid"
                    " IN (SELECT oid FROM pg_class WHERE relnamespace = 'public'::regnamespace)"
                ),
            )
        )
    engine.dispose()
    return found


def test_an_emptied_database_holds_what_a_fresh_copy_holds(template, tmp_path):
    blank, copy = template
    fresh, used = copy(), copy()
    store = Store(used)
    add_mailing(store, tmp_path, 50)
    add_mailing(store, tmp_path, 3)
    with store.write() as session:
        session.execute(sa.text("ANALYZE recipient"))
        # a rolled-back insert moves a sequence on and leaves the table empty
        session.execute(sa.text("SELECT nextval('feedback_id_seq')"))
    store.dispose()
    assert contents(used) != contents(fresh)

    assert empty(_dsn(used), blank)
    assert contents(used) == contents(fresh)


def test_a_database_whose_shape_changed_or_still_in_use_is_not_emptied(template):
    blank, copy = template
    changed, in_use = copy(), copy()
    engine = sa.create_engine(changed, poolclass=sa.pool.NullPool)
    with engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE fault (armed boolean)")
    engine.dispose()
    assert not empty(_dsn(changed), blank)

    engine = sa.create_engine(in_use)
    with engine.connect() as connection:
        connection.exec_driver_sql("SELECT 1")
        assert not empty(_dsn(in_use), blank)  # an engine a failed test left on it
    engine.dispose()
