from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("syndicator", "0007_delivery_state_fields"),
    ]

    operations = [
        migrations.CreateModel(
            name="Heartbeat",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("name", models.CharField(max_length=50, unique=True)),
                ("hostname", models.CharField(blank=True, max_length=200)),
                ("beat_at", models.DateTimeField()),
            ],
        ),
    ]
