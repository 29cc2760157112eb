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
