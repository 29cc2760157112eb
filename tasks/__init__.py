"""Thin Celery tasks: they load ids and call into syndicator/."""
