"""What an integer column can hold, so that input is refused before the database sees it.

PostgreSQL does not always refuse a number too large for its column: a parameter sent as
int8 into an int2 or int4 column came back wrapped (an SMSGate `simNumber` of 70000 was
stored as 4464, a per-minute limit of 4294967297 as 1). Every integer a caller gives that
is stored (or looked up) is checked here against its column's type first; the ranges are
Django's own per column type, the same on every database (SQLite would store anything).
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.db import models
from django.db.backends.base.operations import BaseDatabaseOperations

from accounts import errors


def integer_range(model: type[models.Model], field_name: str) -> tuple[int, int]:
    """The smallest and largest value the model's integer column can hold."""
    field = model._meta.get_field(field_name)
    low, high = BaseDatabaseOperations.integer_field_ranges[field.get_internal_type()]
    return int(low), int(high)


def form_field(
    model: type[models.Model], field_name: str, *, min_value: int | None = None, **kwargs: Any
) -> forms.IntegerField:
    """A form's IntegerField for the column, bounded by what the column can hold (and by
    `min_value`, when it asks for more)."""
    low, high = integer_range(model, field_name)
    return forms.IntegerField(min_value=low if min_value is None else max(low, min_value), max_value=high, **kwargs)


def check_integer(value: int, model: type[models.Model], field_name: str, *, param: str) -> int:
    """The value, when its column can hold it; raises InvalidParameter (code 5) naming `param`."""
    low, high = integer_range(model, field_name)
    if not low <= value <= high:
        raise errors.InvalidParameter(f"`{param}` must be a whole number from {low} to {high}.", param=param)
    return value
