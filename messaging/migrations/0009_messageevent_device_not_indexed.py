# The timeline's own index on the phone goes (docs/benchmarks.md, "Third pass"): three or
# four rows a message, and every query by phone reads the partial indexes
# msgevent_device_assigned and msgevent_failed. On PostgreSQL it is dropped CONCURRENTLY.

import django.db.models.deletion
from django.db import migrations, models

INDEX = "messaging_messageevent_device_id_20a02b80"


def forwards(apps, schema_editor):
    concurrently = "CONCURRENTLY " if schema_editor.connection.vendor == "postgresql" else ""
    schema_editor.execute(f"DROP INDEX {concurrently}IF EXISTS {INDEX}")


def backwards(apps, schema_editor):
    concurrently = "CONCURRENTLY " if schema_editor.connection.vendor == "postgresql" else ""
    schema_editor.execute(f"CREATE INDEX {concurrently}IF NOT EXISTS {INDEX} ON messaging_messageevent (device_id)")


class Migration(migrations.Migration):
    atomic = False  # DROP INDEX CONCURRENTLY cannot run in a transaction

    dependencies = [
        ('devices', '0004_device_pause'),
        ('messaging', '0008_messageevent_failed_index'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[migrations.RunPython(forwards, backwards)],
            state_operations=[
                migrations.AlterField(
                    model_name='messageevent',
                    name='device',
                    field=models.ForeignKey(blank=True, db_index=False, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to='devices.device'),
                ),
            ],
        ),
    ]
