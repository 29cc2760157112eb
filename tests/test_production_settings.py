"""Production settings (issue 15, item 4): the documented production environment passes Django's
deployment checks, and production mode refuses to start without a real SECRET_KEY."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(120)

# README, "Production": what a deployment behind a TLS-terminating proxy sets.
PRODUCTION = {
    "SYNDICATOR_ENV": "production",
    "SECRET_KEY": secrets.token_urlsafe(50),
    "SYNDICATOR_PUBLIC_URL": "https://syndication.example",
    "DATABASE_URL": "postgres://syndicator:syndicator@postgres.invalid:5432/syndicator",
    "CELERY_BROKER_URL": "redis://redis.invalid:6379/0",
}


def syndicator(*args: str, tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("SYNDICATOR_", "DJANGO_"))}
    clean.pop("SECRET_KEY", None)
    clean.pop("DATABASE_URL", None)
    clean |= {"SYNDICATOR_DATA_DIR": str(tmp_path), **env}
    return subprocess.run(
        [sys.executable, "-m", "syndicator.cli", *args],
        env=clean,
        capture_output=True,
        text=True,
        timeout=100,
    )


def test_the_documented_production_settings_pass_check_deploy_without_a_warning(tmp_path):
    done = syndicator("check", "--deploy", "--fail-level", "WARNING", tmp_path=tmp_path, **PRODUCTION)

    assert done.returncode == 0, done.stderr
    assert "System check identified no issues" in done.stdout, done.stdout + done.stderr


def test_behind_tls_sets_secure_cookies_hsts_the_proxy_header_and_the_trusted_origin(tmp_path):
    code = (
        "from django.conf import settings as s; print(s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, "
        "s.SECURE_HSTS_SECONDS, s.SECURE_PROXY_SSL_HEADER, s.CSRF_TRUSTED_ORIGINS, 'syndication.example' in "
        "s.ALLOWED_HOSTS)"
    )
    done = syndicator("shell", "-c", code, tmp_path=tmp_path, **PRODUCTION)

    assert done.stdout.strip().splitlines()[-1] == (
        "True True 31536000 ('HTTP_X_FORWARDED_PROTO', 'https') ['https://syndication.example'] True"
    ), done.stderr


def test_plain_http_would_fail_the_deploy_check(tmp_path):
    # The check above can fail: without TLS the same command reports the missing protections.
    done = syndicator(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        tmp_path=tmp_path,
        **{**PRODUCTION, "SYNDICATOR_PUBLIC_URL": "http://syndication.example"},
    )

    assert done.returncode != 0 and "SECURE_HSTS_SECONDS" in done.stderr + done.stdout


@pytest.mark.parametrize(
    "key", [None, "change-me", "short-but-not-an-example"], ids=["unset", "example", "short"]
)
def test_production_mode_refuses_to_start_without_a_real_secret_key(tmp_path, key):
    env = {k: v for k, v in PRODUCTION.items() if k != "SECRET_KEY"} | ({"SECRET_KEY": key} if key else {})

    done = syndicator("check", tmp_path=tmp_path, **env)

    assert done.returncode != 0
    assert "SYNDICATOR_ENV=production needs SECRET_KEY" in done.stderr
    assert not (tmp_path / "secret_key").exists()  # no key made up behind the operator's back


def test_the_embedded_default_still_makes_and_keeps_its_own_key(tmp_path):
    first = syndicator("check", tmp_path=tmp_path)
    key = (tmp_path / "secret_key").read_text()
    second = syndicator("check", tmp_path=tmp_path)

    assert first.returncode == second.returncode == 0, first.stderr
    assert len(key) >= 50 and (tmp_path / "secret_key").read_text() == key
