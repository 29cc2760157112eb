from django.apps import AppConfig


class SyndicatorConfig(AppConfig):
    name = "syndicator"
    verbose_name = "Syndicator"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from syndicator.redact import install_log_redaction

        install_log_redaction()  # before any worker, web or CLI code logs

        from django.contrib.auth.signals import user_login_failed

        from syndicator.throttle import count_failed_login

        user_login_failed.connect(count_failed_login, dispatch_uid="syndicator-count-failed-logins")

        from django.db.models.signals import post_save

        from syndicator.scheduling import wake_on_saved

        # A feed or target added, edited, enabled: beat's ticks look again (syndicator/scheduling.py).
        post_save.connect(wake_on_saved, sender="syndicator.Feed", dispatch_uid="syndicator-wake-feeds")
        post_save.connect(wake_on_saved, sender="syndicator.Target", dispatch_uid="syndicator-wake-targets")
