"""A used test database on PostgreSQL, emptied back to what a copy of the template holds.

Copying the template and dropping the copy cost the server about 85 ms of processor time
back to back, and up to twice that between tests, for each of some 340 PostgreSQL tests of
the fast set, which keeps both cores busy. Emptying a database the test left alone otherwise
costs about 30 ms, its new signing key included: the tables it wrote to truncated (new,
empty files: no dead rows, no pages for the planner to count), the rows the migrations
wrote put back, the planner's statistics of the tables removed.

A database is emptied only when nothing but its rows changed: no connection left on it (an
engine a failed test left running, a prepared transaction), the same tables, columns,
constraints, functions and triggers as the template (a test that adds a trigger), the same
settings. Otherwise it is dropped, as before."""

import io
from dataclasses import dataclass

import psycopg

# what a database is made of besides its rows: a test that changes any of it leaves a
# database that is dropped, not emptied
_SHAPE = """
SELECT md5(string_agg(item, E'\\n' ORDER BY item)) FROM (
    SELECT 'relation ' || c.oid::regclass::text || ' ' || c.relkind::text || c.relpersistence::text
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')
    UNION ALL SELECT 'column ' || a.attrelid::regclass::text || '.' || a.attname || ' '
            || format_type(a.atttypid, a.atttypmod) || ' ' || a.attnotnull
        FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
        WHERE c.relnamespace = 'public'::regnamespace AND a.attnum > 0 AND NOT a.attisdropped
    UNION ALL SELECT 'default ' || adrelid::regclass::text || '.' || adnum || ' '
            || pg_get_expr(adbin, adrelid)
        FROM pg_attrdef
    UNION ALL SELECT 'constraint ' || conrelid::regclass::text || ' ' || conname || ' '
            || pg_get_constraintdef(oid)
        FROM pg_constraint WHERE connamespace = 'public'::regnamespace
    UNION ALL SELECT 'trigger ' || tgrelid::regclass::text || ' ' || tgname || ' '
            || tgenabled::text
        FROM pg_trigger WHERE NOT tgisinternal
    UNION ALL SELECT 'function ' || oid::regprocedure::text FROM pg_proc
        WHERE pronamespace NOT IN ('pg_catalog'::regnamespace, 'information_schema'::regnamespace)
    UNION ALL SELECT 'rule ' || ev_class::regclass::text || ' ' || rulename FROM pg_rewrite
        WHERE ev_class IN (SELECT oid FROM pg_class WHERE relnamespace = 'public'::regnamespace)
    UNION ALL SELECT 'policy ' || polname FROM pg_policy
    UNION ALL SELECT 'schema ' || nspname FROM pg_namespace
    UNION ALL SELECT 'extension ' || extname FROM pg_extension
    UNION ALL SELECT 'type ' || typname FROM pg_type WHERE typnamespace = 'public'::regnamespace
    UNION ALL SELECT 'database ' || datallowconn || ' ' || datconnlimit
        FROM pg_database WHERE datname = current_database()
    UNION ALL SELECT 'setting ' || array_to_string(setconfig, ',') FROM pg_db_role_setting
        WHERE setdatabase = (SELECT oid FROM pg_database WHERE datname = current_database())
) AS shape(item)
"""

# what else holds on to the database: its connections but this one, prepared transactions
_HELD = """
SELECT (SELECT count(*) FROM pg_stat_activity
        WHERE datname = current_database() AND pid <> pg_backend_pid())
     + (SELECT count(*) FROM pg_prepared_xacts WHERE database = current_database())
"""

_TABLES = "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename"
_SEQUENCES = "SELECT sequencename, last_value FROM pg_sequences WHERE schemaname = 'public'"


@dataclass(frozen=True)
class Template:
    """What a fresh copy of the template holds besides the system's own catalogs."""

    shape: str
    tables: tuple[str, ...]
    rows: dict[str, bytes]  # the rows of the tables that have any, as COPY text
    sequences: dict[str, int | None]  # the last value of each (None: never used)

    @classmethod
    def read(cls, dsn: str) -> "Template":
        with psycopg.connect(dsn, autocommit=True) as connection:
            shape = _one(connection, _SHAPE)
            tables = tuple(row[0] for row in connection.execute(_TABLES))
            rows = {}
            for table in tables:
                data = io.BytesIO()
                with connection.cursor().copy(f'COPY "{table}" TO STDOUT') as copy:
                    for chunk in copy:
                        data.write(chunk)
                if data.getvalue():
                    rows[table] = data.getvalue()
            sequences = dict(connection.execute(_SEQUENCES).fetchall())
        return cls(shape, tables, rows, sequences)


def empty(dsn: str, template: Template) -> bool:
    """Empties the database at ``dsn`` back to the template's rows; False, leaving it as it
    is, when something besides its rows changed (the caller drops it then)."""
    with psycopg.connect(dsn, autocommit=True) as connection:
        if _one(connection, _HELD) or _one(connection, _SHAPE) != template.shape:
            return False
        written = [
            table
            for table in template.tables
            if table in template.rows or _one(connection, f'SELECT EXISTS (SELECT FROM "{table}")')
        ]
        with connection.transaction():
            if written:
                names = ", ".join(f'"{table}"' for table in written)
                connection.execute(f"TRUNCATE {names} CASCADE")
            # every sequence, as a rolled-back insert moves one on and leaves its table empty
            for sequence, last in template.sequences.items():
                if last is None:
                    connection.execute(f'ALTER SEQUENCE "{sequence}" RESTART')
                else:
                    connection.execute("SELECT setval(%s, %s)", (f'"{sequence}"', last))
            for table, rows in template.rows.items():
                with connection.cursor().copy(f'COPY "{table}" FROM STDIN') as copy:
                    copy.write(rows)
            # the statistics a test's ANALYZE (or autovacuum's) left: a fresh copy has none
            connection.execute(
                "DELETE FROM pg_statistic WHERE starelid IN"
                " (SELECT oid FROM pg_class WHERE relnamespace = 'public'::regnamespace)"
            )
    return True


def _one(connection: psycopg.Connection, query: str) -> object:
    row = connection.execute(query).fetchone()
    assert row is not None
    return row[0]
