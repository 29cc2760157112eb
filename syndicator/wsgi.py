"""WSGI entry point: ``gunicorn syndicator.wsgi``."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "syndicator.settings")
application = get_wsgi_application()
