"""Hand-written SQL reads its table and column names from the models."""

from __future__ import annotations

from accounts.lib import sqlnames
from accounts.models import LedgerEntry
from messaging.models import Message


def quote(name: str) -> str:
    return f"<{name}>"


def test_a_model_stands_for_its_table_and_its_fields_for_their_columns():
    text = sqlnames.sql("UPDATE {Entry} SET {Entry.message} = %(m)s", quote=quote, Entry=LedgerEntry)
    assert text == "UPDATE <accounts_ledgerentry> SET <message_id> = %(m)s"


def test_other_arguments_are_text_and_parameters_are_left_alone():
    text = sqlnames.sql("SELECT {Message.to} {rest}", quote=quote, Message=Message, rest="%(to)s")
    assert text == "SELECT <to> %(to)s"
