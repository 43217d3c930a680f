"""Several reads made as one statement on SQLite.

A thread that calls into SQLite lets go of the GIL and must take it back once SQLite
answers: beside a thread busy in Python (the dashboard's engine, in its process), each
such return waits up to the switch interval, 5 ms. The dashboard's refresh made ten
statements and waited ten times: beside a thread busy in pure Python it took 57 ms
(p95 83 ms) instead of 8. As one statement, whose parts come back as one JSON value,
it waits once: 18 ms. PostgreSQL's driver gets each statement as it is.

Each part is a ``Reading``: its statement, selecting columns, and what its rows become.
On SQLite the values come back as stored and the columns' own types convert them, as
SQLAlchemy would have.
"""

import functools
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Generic, TypeVar

import sqlalchemy as sa
from sqlmodel import Session, SQLModel

T = TypeVar("T")
U = TypeVar("U")
Row = tuple[Any, ...]


Statement = sa.Select[*tuple[Any, ...]]


@dataclass(frozen=True)
class Reading(Generic[T]):
    """A read: ``statement`` selects columns, with ``parameters`` for its bindparams;
    ``result`` makes its answer of the rows. Build each statement once (building one costs
    more than reading it): what varies between reads goes in ``parameters``, whose names
    differ from every other reading's."""

    statement: Statement
    result: Callable[[list[Row]], T]
    parameters: dict[str, Any] = field(default_factory=dict)
    # a row as SQLite stores it (in JSON) to the row ``result`` takes, where the columns'
    # types would convert it too slowly (a thousand pane rows at every refresh)
    from_stored: Callable[[Row], Any] | None = None

    def then(self, answer: Callable[[T], U]) -> "Reading[U]":
        """The same read, its answer made into ``answer``'s."""
        result = self.result
        return replace(self, result=lambda rows: answer(result(rows)))  # type: ignore[arg-type,return-value]


def read_one(session: Session, reading: Reading[T]) -> T:
    rows = session.execute(reading.statement, reading.parameters)
    return reading.result([tuple(row) for row in rows])


def read_together(session: Session, readings: Sequence[Reading[Any]]) -> list[Any]:
    """The answer of each reading, in their order, read by one statement on SQLite."""
    dialect = session.get_bind().dialect
    if dialect.name != "sqlite":
        return [read_one(session, reading) for reading in readings]
    statement, converters = _together(tuple(reading.statement for reading in readings), dialect)
    parameters = {name: value for r in readings for name, value in r.parameters.items()}
    (text,) = session.execute(statement, parameters).one()
    return [
        reading.result([(reading.from_stored or convert)(tuple(row)) for row in stored])
        for reading, convert, stored in zip(readings, converters, json.loads(text), strict=True)
    ]


@functools.lru_cache(maxsize=64)
def _together(
    statements: tuple[Statement, ...], dialect: sa.Dialect
) -> tuple[Statement, list[Callable[[Row], Row]]]:
    """One statement giving the rows of each of ``statements`` as a JSON array, and how to
    convert a row of each as its columns' types would."""
    parts = [statement.subquery() for statement in statements]
    arrays = [
        sa.func.json(
            sa.select(sa.func.json_group_array(sa.func.json_array(*part.c))).scalar_subquery()
        )
        for part in parts
    ]
    return sa.select(sa.func.json_array(*arrays)), [_converter(part, dialect) for part in parts]


def _converter(part: sa.Subquery, dialect: sa.Dialect) -> Callable[[Row], Row]:
    processors = [column.type._cached_result_processor(dialect, None) for column in part.c]  # noqa: SLF001  as SQLAlchemy converts what it reads

    def convert(row: Row) -> Row:
        return tuple(
            value if process is None else process(value)
            for process, value in zip(processors, row, strict=True)
        )

    return convert


M = TypeVar("M", bound=SQLModel)


def columns_of(model: type[M]) -> list[sa.Column[Any]]:
    """Every column of ``model``'s table, to select them as a Reading does."""
    return list(model.__table__.columns)  # type: ignore[attr-defined]


def rows_as(model: type[M]) -> Callable[[list[Row]], list[M]]:
    """The rows of ``columns_of(model)`` as (detached) model objects."""
    names = [column.key for column in columns_of(model)]
    return lambda rows: [model(**dict(zip(names, row, strict=True))) for row in rows]
