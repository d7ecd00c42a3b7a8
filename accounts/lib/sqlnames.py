"""Hand-written SQL with its table and column names read from the models.

`{Account}` in a template becomes the model's quoted table name and `{Account.balance}`
the quoted column of its field `balance` (as `str.format` reads attributes), so renaming
a field or a table cannot leave a statement behind. Django-free: it reads the models'
`_meta` and is given the database's quoting function.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class _Names:
    """A model as a format argument: its table, and its fields' columns as attributes."""

    def __init__(self, model: Any, quote: Callable[[str], str]) -> None:
        self._model, self._quote = model, quote

    def __str__(self) -> str:
        return self._quote(self._model._meta.db_table)

    def __getattr__(self, name: str) -> str:
        return self._quote(self._model._meta.get_field(name).column)


def sql(template: str, *, quote: Callable[[str], str], **arguments: Any) -> str:
    """`template` formatted with `arguments`: a model class stands for its names (above),
    anything else for its text. `%(name)s` parameters are left for the database driver."""
    values = {key: _Names(value, quote) if hasattr(value, "_meta") else value for key, value in arguments.items()}
    return template.format(**values)
