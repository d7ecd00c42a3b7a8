# Presence writes become HOT updates (docs/benchmarks.md, "10,000 phones on one Daphne",
# the night session): the two indexes that hold `last_seen_at` go, and on PostgreSQL the
# phones' table keeps a fifth of each page free for the new version of a row (new pages
# only; old ones as rows move).
# Every 37.5 s each connected phone's row is rewritten: at 10,000 phones each UPDATE of 500
# rows wrote nine index entries a row. On PostgreSQL the indexes are dropped CONCURRENTLY.

from django.db import migrations, models

INDEXES = {
    "devices_device_last_seen_at_5aa148ad": "(last_seen_at)",
    "devices_dev_phone_l_fc009d_idx": "(phone_list_id, is_enabled, last_seen_at)",
}


def forwards(apps, schema_editor):
    postgresql = schema_editor.connection.vendor == "postgresql"
    concurrently = "CONCURRENTLY " if postgresql else ""
    for name in INDEXES:
        schema_editor.execute(f"DROP INDEX {concurrently}IF EXISTS {name}")
    if postgresql:
        schema_editor.execute("ALTER TABLE devices_device SET (fillfactor = 80)")


def backwards(apps, schema_editor):
    postgresql = schema_editor.connection.vendor == "postgresql"
    concurrently = "CONCURRENTLY " if postgresql else ""
    for name, columns in INDEXES.items():
        schema_editor.execute(f"CREATE INDEX {concurrently}IF NOT EXISTS {name} ON devices_device {columns}")
    if postgresql:
        schema_editor.execute("ALTER TABLE devices_device RESET (fillfactor)")


class Migration(migrations.Migration):
    atomic = False  # DROP INDEX CONCURRENTLY cannot run in a transaction

    dependencies = [
        ("devices", "0004_device_pause"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[migrations.RunPython(forwards, backwards)],
            state_operations=[
                migrations.RemoveIndex(model_name="device", name="devices_dev_phone_l_fc009d_idx"),
                migrations.AlterField(
                    model_name="device",
                    name="last_seen_at",
                    field=models.DateTimeField(blank=True, null=True),
                ),
            ],
        ),
    ]
