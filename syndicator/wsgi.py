"""WSGI entry point: ``gunicorn syndicator.wsgi``."""

import os

from django.core.wsgi import get_wsgi_application
from django.urls import get_resolver

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "syndicator.settings")
application = get_wsgi_application()
# The URL conf, and with it the admin's autodiscovery (deferred since issue #16, see
# syndicator.desk_site), loaded when a web worker boots, as before, not by its first request.
get_resolver().url_patterns  # noqa: B018
