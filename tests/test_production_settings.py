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


def test_postgresql_sessions_end_when_their_peer_is_gone():
    """A cut-off worker's session (and its row locks) must not outlive it by the OS's two hours."""
    from syndicator.settings import dead_peer_options

    options = dead_peer_options({"options": "-c statement_timeout=5000", "sslmode": "require"}, 60)
    server = options["options"].split()
    assert server[:2] == ["-c", "statement_timeout=5000"]  # the user's own options are kept
    assert "tcp_user_timeout=60000" in server and "tcp_keepalives_count=3" in server
    idle = int(next(o for o in server if o.startswith("tcp_keepalives_idle=")).split("=")[1])
    interval = int(next(o for o in server if o.startswith("tcp_keepalives_interval=")).split("=")[1])
    assert idle + 3 * interval <= 60  # the server gives up on a silent peer within the bound
    assert options["sslmode"] == "require" and options["keepalives"] == 1
    assert options["tcp_user_timeout"] == 60000  # and libpq on a silent server
    assert dead_peer_options({"sslmode": "require"}, 0) == {"sslmode": "require"}


@pytest.mark.django_db
def test_the_server_applies_the_dead_peer_bound_to_our_sessions():
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.fail("needs PostgreSQL (DATABASE_URL): the bound is a PostgreSQL session setting")
    with connection.cursor() as cursor:
        cursor.execute("SHOW tcp_user_timeout")
        assert cursor.fetchone()[0] not in ("0", "")
