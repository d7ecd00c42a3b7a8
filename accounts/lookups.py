"""`field__any=[...]`: the field equals one of the values, with the values sent as ONE
parameter on PostgreSQL (`= ANY(%s)`, an array) instead of one placeholder each.

Django's `__in` prepares and binds every value on its own: for the fleet's pass over a
thousand phones (devices/fleet.py) that was most of its statements' Python time, spent in
a thread that shares the event loop's interpreter lock while the claims wait
(docs/benchmarks.md, "10,000 phones on one Daphne", the night session). Elsewhere
(SQLite) it is an ordinary IN list. The values are used as given: integers or strings of
the field's own type.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import EmptyResultSet
from django.db.models import Field, ForeignObject, Lookup


class AnyOf(Lookup):
    lookup_name = "any"
    prepare_rhs = False

    def get_prep_lookup(self) -> list[Any]:
        return list(self.rhs)

    def as_sql(self, compiler: Any, connection: Any) -> tuple[str, tuple[Any, ...]]:
        lhs, lhs_params = self.process_lhs(compiler, connection)
        values = list(self.rhs)
        if connection.vendor == "postgresql":
            return f"{lhs} = ANY(%s)", (*lhs_params, values)
        if not values:
            raise EmptyResultSet
        return f"{lhs} IN ({', '.join(['%s'] * len(values))})", (*lhs_params, *values)


Field.register_lookup(AnyOf)
ForeignObject.register_lookup(AnyOf)  # related fields keep lookups of their own
