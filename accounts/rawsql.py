"""Hand-written statements that run on both databases: a list as ONE parameter, and rows
converted as the ORM would.

- `in_list("ids")` is `= ANY(%(ids)s)` on PostgreSQL (an array) and
  `IN (SELECT value FROM json_each(%(ids)s))` on SQLite (a JSON array); `list_value` gives
  the parameter. One statement text for any number of values (PostgreSQL can prepare it
  once, `prepare_threshold` in config/settings.py).
- `converters` and `convert_rows`: SQLite returns times as text and booleans as 0/1; the
  ORM's own converters make the values the same as a queryset's. `instances` and `instance` make
  model instances of such rows (the fields not read load on use).

The fleet's pass (devices/fleet.py) runs its statements as these: the ORM built each
statement anew every time (about 1 ms of Python each), in a thread that shares the event
loop's interpreter lock while the claims wait (docs/benchmarks.md, "10,000 phones on one
Daphne").
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from django.db import connection
from django.db.models import Model

M = TypeVar("M", bound=Model)


def in_list(param: str) -> str:
    """`column <this>`: the column equals one of the values of the named parameter, which
    `list_value` gives."""
    if connection.vendor == "postgresql":
        return f"= ANY(%({param})s)"
    return f"IN (SELECT value FROM json_each(%({param})s))"  # noqa: S608 (`param` is a name in our code)


def list_value(values: Iterable[Any]) -> Any:
    """The parameter of an `in_list`: integers or strings."""
    if connection.vendor == "postgresql":
        return list(values)
    return json.dumps(list(values))


Converters = list[tuple[Any, list[Callable[..., Any]]]]


@functools.cache
def converters(model: type[Model], names: tuple[str, ...], vendor: str) -> Converters:
    """The ORM's converters of these fields' columns on this database (looked up once)."""
    columns = [model._meta.get_field(name).get_col(model._meta.db_table) for name in names]  # type: ignore[union-attr]
    return [(col, [*connection.ops.get_db_converters(col), *col.get_db_converters(connection)]) for col in columns]


def convert_rows(model: type[Model], names: tuple[str, ...], rows: Iterable[tuple[Any, ...]]) -> list[list[Any]]:
    """Each row of the fields `names` (in that order) with the values a queryset would give."""
    converting = [
        (index, col, steps) for index, (col, steps) in enumerate(converters(model, names, connection.vendor)) if steps
    ]
    converted = []
    for row in rows:
        values = list(row)
        for index, col, steps in converting:
            for convert in steps:
                values[index] = convert(values[index], col, connection)
        converted.append(values)
    return converted


def instances(model: type[M], names: tuple[str, ...], rows: Iterable[tuple[Any, ...]]) -> list[M]:
    """A model instance of each row of the fields `names` (in the model's field order, as
    `Model.from_db` needs them), converted as the ORM would."""
    return [model.from_db(connection.alias, names, values) for values in convert_rows(model, names, rows)]


def instance(model: type[M], names: tuple[str, ...], row: tuple[Any, ...]) -> M:
    """`instances` of one row."""
    return instances(model, names, [row])[0]
