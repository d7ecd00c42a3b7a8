# Fewer indexes on the outbox (docs/benchmarks.md, "Third pass"): each event row is
# inserted and then updated two or three times, each time in every index. Gone: the
# account's own index (the (account, -created_at) one leads with it), created_at's (every
# read by time is one account's), the webhook id's pattern-matching copy (no LIKE query),
# and the SMSGate webhook's entries of events that have none.
#
# On PostgreSQL the indexes are built and dropped CONCURRENTLY (no lock on the table
# while they are), and the webhook id's unique constraint is renamed, not rebuilt.

import django.db.models.deletion
import django.utils.timezone
from django.db import migrations, models

OLD_INDEXES = {
    "ipn_ipnevent_account_id_3993ba8c": "(account_id)",
    "ipn_ipnevent_created_at_4a08d472": "(created_at)",
    "ipn_ipnevent_smsgate_webhook_id_403581d8": "(smsgate_webhook_id)",
}
PATTERN_INDEX = "ipn_ipnevent_webhook_id_74b7f94d_like"
NEW_INDEX = "ipn_event_smsgate_webhook"
NEW_INDEX_SQL = "(smsgate_webhook_id) WHERE smsgate_webhook_id IS NOT NULL"
UNIQUE = "ipn_event_webhook_id_unique"


def _webhook_id_unique(schema_editor):
    """The name of the unique constraint on webhook_id alone (made by `unique=True`)."""
    with schema_editor.connection.cursor() as cursor:
        found = schema_editor.connection.introspection.get_constraints(cursor, "ipn_ipnevent")
    return next(name for name, c in found.items() if c["unique"] and not c["primary_key"] and c["columns"] == ["webhook_id"])


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        for name in OLD_INDEXES:
            schema_editor.execute(f"DROP INDEX IF EXISTS {name}")
        schema_editor.execute(f"CREATE INDEX {NEW_INDEX} ON ipn_ipnevent {NEW_INDEX_SQL}")
        return  # SQLite keeps webhook_id's inline UNIQUE (the same rule; the state names it)
    schema_editor.execute(f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {NEW_INDEX} ON ipn_ipnevent {NEW_INDEX_SQL}")
    for name in [*OLD_INDEXES, PATTERN_INDEX]:
        schema_editor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")
    schema_editor.execute(f"ALTER TABLE ipn_ipnevent RENAME CONSTRAINT {_webhook_id_unique(schema_editor)} TO {UNIQUE}")


def backwards(apps, schema_editor):
    concurrently = "CONCURRENTLY " if schema_editor.connection.vendor == "postgresql" else ""
    for name, columns in OLD_INDEXES.items():
        schema_editor.execute(f"CREATE INDEX {concurrently}IF NOT EXISTS {name} ON ipn_ipnevent {columns}")
    schema_editor.execute(f"DROP INDEX {concurrently}IF EXISTS {NEW_INDEX}")
    if concurrently:
        schema_editor.execute(
            f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {PATTERN_INDEX} ON ipn_ipnevent (webhook_id varchar_pattern_ops)"
        )
        schema_editor.execute(f"ALTER TABLE ipn_ipnevent RENAME CONSTRAINT {UNIQUE} TO ipn_ipnevent_webhook_id_key")


class Migration(migrations.Migration):
    atomic = False  # CREATE/DROP INDEX CONCURRENTLY cannot run in a transaction

    dependencies = [
        ('accounts', '0007_throttle_pending'),
        ('ipn', '0003_smsgate_webhooks'),
        ('messaging', '0008_messageevent_failed_index'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[migrations.RunPython(forwards, backwards)],
            state_operations=[
                migrations.AlterField(
                    model_name='ipnevent',
                    name='account',
                    field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='ipn_events', to='accounts.account'),
                ),
                migrations.AlterField(
                    model_name='ipnevent',
                    name='created_at',
                    field=models.DateTimeField(default=django.utils.timezone.now),
                ),
                migrations.AlterField(
                    model_name='ipnevent',
                    name='smsgate_webhook',
                    field=models.ForeignKey(blank=True, db_index=False, null=True, on_delete=django.db.models.deletion.CASCADE, related_name='events', to='ipn.smsgatewebhook'),
                ),
                migrations.AlterField(
                    model_name='ipnevent',
                    name='webhook_id',
                    field=models.CharField(max_length=40),
                ),
                migrations.AddIndex(
                    model_name='ipnevent',
                    index=models.Index(condition=models.Q(('smsgate_webhook__isnull', False)), fields=['smsgate_webhook'], name='ipn_event_smsgate_webhook'),
                ),
                migrations.AddConstraint(
                    model_name='ipnevent',
                    constraint=models.UniqueConstraint(fields=('webhook_id',), name='ipn_event_webhook_id_unique'),
                ),
            ],
        ),
    ]
