from django.apps import AppConfig


class SyndicatorConfig(AppConfig):
    name = "syndicator"
    verbose_name = "Syndicator"
    default_auto_field = "django.db.models.BigAutoField"
