"""Django settings for syndicator, read from the environment.

With nothing set, syndicator runs on the embedded default: SQLite (WAL) and the private
Redis server that ``syndicator run`` starts, both under ``$SYNDICATOR_DATA_DIR`` (./var).
Production sets ``DATABASE_URL`` and ``CELERY_BROKER_URL`` (or ``REDIS_URL``).
"""

from __future__ import annotations

import importlib.util
import math
import os
import secrets
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import dj_database_url

BASE_DIR = Path(__file__).resolve().parent.parent
PACKAGE_DIR = Path(__file__).resolve().parent


def _env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def _env_float_list(name: str, default: list[float]) -> list[float]:
    value = os.environ.get(name)
    if not value:
        return default
    return [float(part) for part in value.split(",") if part.strip()]


DATA_DIR = Path(os.environ.get("SYNDICATOR_DATA_DIR", "var")).resolve()


# Production mode is said, not guessed: SYNDICATOR_ENV=production (docker-compose.yml sets it).
# Then SECRET_KEY must be given, and be a real one; the embedded default generates its own.
PRODUCTION = os.environ.get("SYNDICATOR_ENV", "").strip().lower() == "production"
# Keys that were shipped as examples: with one, anyone can forge unsubscribe links and sessions.
EXAMPLE_SECRET_KEYS = frozenset({"change-me", "changeme", "secret", "django-insecure"})


def _secret_key() -> str:
    """SECRET_KEY from the environment, else (not in production) one generated once and kept in the
    data dir; in production a missing, example or short key stops the process with the reason."""
    key = os.environ.get("SECRET_KEY") or os.environ.get("DJANGO_SECRET_KEY")
    if PRODUCTION and (not key or key in EXAMPLE_SECRET_KEYS or len(key) < 50 or len(set(key)) < 5):
        from django.core.exceptions import ImproperlyConfigured

        raise ImproperlyConfigured(
            "SYNDICATOR_ENV=production needs SECRET_KEY: a random string of at least 50 characters, "
            "the same on every web and worker process (e.g. "
            'python3 -c "import secrets; print(secrets.token_urlsafe(50))"); '
            + ("none is set" if not key else "the one set is an example or too short")
        )
    if key:
        return key
    path = DATA_DIR / "secret_key"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        DATA_DIR.mkdir(parents=True, exist_ok=True)
        key = secrets.token_urlsafe(50)
        path.write_text(key)
        path.chmod(0o600)
        return key


SECRET_KEY = _secret_key()
DEBUG = _env_bool("DEBUG")
ALLOWED_HOSTS = [h.strip() for h in os.environ.get("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]").split(",")]
CSRF_TRUSTED_ORIGINS = [o for o in os.environ.get("CSRF_TRUSTED_ORIGINS", "").split(",") if o]
# Base URL of the web app as the outside world sees it (one-click unsubscribe links in email).
SYNDICATOR_PUBLIC_URL = os.environ.get("SYNDICATOR_PUBLIC_URL", "http://127.0.0.1:8000")
_public = urlsplit(SYNDICATOR_PUBLIC_URL)
if _public.hostname and _public.hostname not in ALLOWED_HOSTS:
    ALLOWED_HOSTS.append(_public.hostname)
if _public.scheme == "https" and f"https://{_public.netloc}" not in CSRF_TRUSTED_ORIGINS:
    CSRF_TRUSTED_ORIGINS.append(f"https://{_public.netloc}")

# --- behind TLS: an https public URL, or SYNDICATOR_BEHIND_TLS=1 ---------------------------------
# The reverse proxy ends TLS and must set X-Forwarded-Proto (overwriting any the client sent):
# nginx `proxy_set_header X-Forwarded-Proto $scheme;`, Caddy and Traefik do it by default.
BEHIND_TLS = _env_bool("SYNDICATOR_BEHIND_TLS", _public.scheme == "https")
if BEHIND_TLS:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_SSL_REDIRECT = _env_bool("SYNDICATOR_SSL_REDIRECT", True)
    # Probes and scrapers inside the network speak plain http to the app itself.
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^metrics$", r"^api/health$"]
    SECURE_HSTS_SECONDS = int(os.environ.get("SYNDICATOR_HSTS_SECONDS", 365 * 86400))
    SECURE_HSTS_INCLUDE_SUBDOMAINS = _env_bool("SYNDICATOR_HSTS_INCLUDE_SUBDOMAINS", True)
    SECURE_HSTS_PRELOAD = _env_bool("SYNDICATOR_HSTS_PRELOAD", True)

INSTALLED_APPS = [
    # Django's admin with syndicator's start page as its index (syndicator/desk_site.py).
    "syndicator.desk_site.SyndicatorAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "syndicator",
]
# django-ninja is no installed app: Django would import it (pydantic and all, ~0.15 s) at every
# django.setup(), so in every CLI command (issue #16). Its Swagger UI files and page are found in
# its folder without importing it (STATICFILES_DIRS, TEMPLATES), so /api/docs is served from here,
# not from a CDN (syndicator.api.LocalSwagger).
NINJA_DIR = Path(importlib.util.find_spec("ninja").origin or "").parent  # type: ignore[union-attr]
STATICFILES_DIRS = [NINJA_DIR / "static"]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "syndicator.urls"
WSGI_APPLICATION = "syndicator.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        # templates/ beside the code holds the web UI overrides; templates/messages/ is Jinja2.
        "DIRS": [BASE_DIR / "templates", NINJA_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- database ----------------------------------------------------------------------------------


def dead_peer_options(options: dict, after: float) -> dict:
    """PostgreSQL connection options that end a session whose peer is gone within ``after`` seconds.

    A worker cut off from the network inside a transaction (its lease UPDATE done, its COMMIT
    never coming) otherwise keeps its row locks on the server until the operating system's TCP
    keepalive gives up, about two hours, and the sweeper's UPDATE of that row waits as long
    (tests/faults/test_network_partition.py). The server's keepalive probes an idle peer, and
    tcp_user_timeout drops one that leaves an answer unacknowledged (both settable per session:
    PostgreSQL's runtime-config-connection); the same on the client side (libpq's keepalives and
    tcp_user_timeout) lets a worker notice a server that is gone. A live but slow peer answers
    the probes and is never cut. 0 leaves the operating system's defaults. Behind a pooler that
    refuses startup options (PgBouncer), set them on the server instead.
    """
    if after <= 0:
        return options
    idle, interval, count = max(1, math.ceil(after / 2)), max(1, math.ceil(after / 6)), 3
    server = (
        f"-c tcp_keepalives_idle={idle} -c tcp_keepalives_interval={interval} "
        f"-c tcp_keepalives_count={count} -c tcp_user_timeout={int(after * 1000)}"
    )
    return {
        **options,
        "options": f"{options.get('options', '')} {server}".strip(),
        "keepalives": 1,
        "keepalives_idle": idle,
        "keepalives_interval": interval,
        "keepalives_count": count,
        "tcp_user_timeout": int(after * 1000),
    }


DATABASE_URL = os.environ.get("DATABASE_URL") or f"sqlite:///{DATA_DIR / 'syndicator.sqlite3'}"
DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=60, conn_health_checks=True)}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"]["OPTIONS"] = {
        # WAL lets the web app read while the worker writes; IMMEDIATE takes the write lock at
        # BEGIN so two writers queue on busy_timeout instead of failing on a lock upgrade.
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=30000;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
    }
    DATABASES["default"]["TEST"] = {"NAME": str(DATA_DIR / "test.sqlite3")}
else:
    DATABASES["default"]["OPTIONS"] = dead_peer_options(
        DATABASES["default"].get("OPTIONS", {}),
        float(os.environ.get("SYNDICATOR_DB_DEAD_PEER_AFTER", "60")),
    )

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = os.environ.get("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
# Only for a deployment that runs collectstatic; otherwise whitenoise serves from the apps.
STATIC_ROOT = os.environ.get("STATIC_ROOT") or None
# Serve the admin's static files straight from the installed apps: no collectstatic step.
WHITENOISE_USE_FINDERS = True
SESSION_COOKIE_AGE = int(os.environ.get("SESSION_COOKIE_AGE", 8 * 3600))

# --- Celery (celeryproject.py reads every CELERY_* name) ----------------------------------------
EMBEDDED_REDIS_SOCKET = DATA_DIR / "redis.sock"
CELERY_BROKER_URL = (
    os.environ.get("CELERY_BROKER_URL")
    or os.environ.get("REDIS_URL")
    or f"redis+socket://{EMBEDDED_REDIS_SOCKET}"
)
# The database is the record of truth: no result backend, no stored results.
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_TIME_LIMIT = int(os.environ.get("CELERY_TASK_TIME_LIMIT", 120))
CELERY_TASK_SOFT_TIME_LIMIT = CELERY_TASK_TIME_LIMIT - 10
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_TRANSPORT_OPTIONS = {
    # Above the longest task (the hard time limit), so a slow delivery is not handed out twice.
    "visibility_timeout": CELERY_TASK_TIME_LIMIT + 60,
    # kombu's defaults (10 s x 10) take ~100 s to hand a dead worker's tasks back. `syndicator run`
    # sets 30 (one worker: a dead one stops the run; idle, a scan every 2 s is most of its cost).
    "unacked_restore_interval": float(os.environ.get("SYNDICATOR_BROKER_RESTORE_INTERVAL", 2)),
    "unacked_restore_throttle": 1,
    # Keys of several installs sharing one Redis never collide.
    "global_keyprefix": os.environ.get("SYNDICATOR_BROKER_PREFIX", ""),
}
CELERY_WORKER_HIJACK_ROOT_LOGGER = False


# --- the cache: shared by every web process (failed-login and bad-token counts, syndicator.throttle)
# The Redis every mode has: the broker's, or the private one `syndicator run` starts (its socket).
def _cache_url(broker: str) -> str | None:
    if broker.startswith("redis+socket://"):
        return "unix://" + broker.removeprefix("redis+socket://")
    return broker if broker.startswith(("redis://", "rediss://")) else None


_CACHE_URL = os.environ.get("SYNDICATOR_CACHE_URL") or _cache_url(CELERY_BROKER_URL)
CACHES = {
    "default": (
        {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": _CACHE_URL,
            "KEY_PREFIX": os.environ.get("SYNDICATOR_BROKER_PREFIX", "") + "syndicator-cache",
            # A Redis that is away must not hold a login for seconds of reconnect back-off.
            "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1},
        }
        if _CACHE_URL
        else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}  # an AMQP broker: per process
    )
}
# The pacing limiter's Redis (syndicator/pacing.py): shared by every worker on every machine.
# Default: the cache's (the broker's, or the embedded one); none (an AMQP broker): sends unpaced.
SYNDICATOR_PACING_REDIS_URL = os.environ.get("SYNDICATOR_PACING_REDIS_URL") or _CACHE_URL
SYNDICATOR_PACING_PREFIX = os.environ.get("SYNDICATOR_BROKER_PREFIX", "")
# A target's max_age when it sets none (seconds; "off" or 0: no limit): an automatic delivery of
# an article published longer ago is skipped (docs/pacing.md).
_max_age = os.environ.get("SYNDICATOR_MAX_AGE", "172800").strip().lower()
SYNDICATOR_MAX_AGE: float | None = None if _max_age in ("", "0", "off", "none") else float(_max_age)
# Failed logins (per client address) and bad API tokens: past this many in the window, further
# tries are refused until the window ends; each failure is logged (syndicator.throttle).
SYNDICATOR_AUTH_FAILURES = int(os.environ.get("SYNDICATOR_AUTH_FAILURES", 10))
SYNDICATOR_AUTH_WINDOW = int(os.environ.get("SYNDICATOR_AUTH_WINDOW", 900))

# --- syndicator ---------------------------------------------------------------------------------
# One retry policy, as data: delay before attempt n+1 is backoff[n-1] (the last entry repeats),
# times a random factor in [1 - jitter, 1 + jitter], at least a rate limit's retry_after, at most
# max_delay; after max_attempts the delivery is failed.
SYNDICATOR_RETRY: dict[str, Any] = {
    "backoff": _env_float_list("SYNDICATOR_RETRY_BACKOFF", [10, 60, 300, 1800, 7200, 21600]),
    "jitter": float(os.environ.get("SYNDICATOR_RETRY_JITTER", 0.2)),
    "max_attempts": int(os.environ.get("SYNDICATOR_RETRY_MAX_ATTEMPTS", 8)),
    "max_delay": float(os.environ.get("SYNDICATOR_RETRY_MAX_DELAY", 6 * 3600)),
}
# How often beat looks for due feeds and due/stranded deliveries.
SYNDICATOR_SCHEDULE_INTERVAL = float(os.environ.get("SYNDICATOR_SCHEDULE_INTERVAL", 5))
SYNDICATOR_SWEEP_INTERVAL = float(os.environ.get("SYNDICATOR_SWEEP_INTERVAL", 5))
# With nothing due, beat sends those two ticks only when something is (syndicator/scheduling.py),
# and at least this often: what no wake covers (a lease that expires) is found at most this late.
SYNDICATOR_SCHEDULER_MAX_IDLE = float(os.environ.get("SYNDICATOR_SCHEDULER_MAX_IDLE", 60))
# How often a worker records that it runs (models.Heartbeat, shown on the start page to admins).
SYNDICATOR_HEARTBEAT_INTERVAL = float(os.environ.get("SYNDICATOR_HEARTBEAT_INTERVAL", 30))
# A delivery in `sending` for longer than this was lost with its worker: it becomes `uncertain`.
SYNDICATOR_SEND_LEASE = float(os.environ.get("SYNDICATOR_SEND_LEASE", CELERY_TASK_TIME_LIMIT + 30))
# A `queued` delivery whose message was sent this long ago and never claimed is looked for in the
# broker, and sent again only if its message is not there (syndicator/waiting.py).
SYNDICATOR_STRANDED_AFTER = float(os.environ.get("SYNDICATOR_STRANDED_AFTER", 60))
# An uncertain delivery of a target that can look its posts up (Adapter.verify) is looked up this
# many seconds after it became uncertain (a timed-out post is often still being made); a look-up
# that fails transiently is tried again by SYNDICATOR_RETRY's backoff (docs/delivery-states.md).
SYNDICATOR_VERIFY_AFTER = float(os.environ.get("SYNDICATOR_VERIFY_AFTER", 60))
# How long a worker keeps trying to write what the network answered while the database is away
# (a restart, a failover); below the task time limit, so the task ends before Celery kills it.
SYNDICATOR_RECORD_RETRY = float(os.environ.get("SYNDICATOR_RECORD_RETRY", 30))
# A target is paused automatically when its attempts have all failed (rate limits aside) at least
# `failures` times over at least `seconds`; any success resets the count. A dead token (TargetBroken)
# pauses it at once.
SYNDICATOR_TARGET_PAUSE_AFTER = {
    "failures": int(os.environ.get("SYNDICATOR_TARGET_PAUSE_FAILURES", 20)),
    "seconds": float(os.environ.get("SYNDICATOR_TARGET_PAUSE_SECONDS", 86400)),
}
# Days the delivery log keeps attempts' message text and per-recipient email results
# (syndicator/retention.py); the deliveries and the attempts' outcomes stay.
SYNDICATOR_RETENTION = int(os.environ.get("SYNDICATOR_RETENTION", 365))
# A feed poll holds its lease this long; a second poll of the same feed waits it out.
SYNDICATOR_POLL_LEASE = float(os.environ.get("SYNDICATOR_POLL_LEASE", 120))
# Fetches in flight per worker process, and per feed host (syndicator/pollpool.py, docs/design.md
# "Polling many feeds"): a poll waits on the feed's server, so many run at once; 64 keep 10,000
# feeds at 5 minutes on time up to ~2 s per fetch on average (33 polls/s x 2 s = 66 in flight)
# in the embedded worker's one process. Six per host, as browsers allow per site: one slow or
# hostile site never holds more than six, and a site is not hit by more at once.
SYNDICATOR_POLL_CONCURRENCY = int(os.environ.get("SYNDICATOR_POLL_CONCURRENCY", 64))
SYNDICATOR_POLL_PER_HOST = int(os.environ.get("SYNDICATOR_POLL_PER_HOST", 6))
# Feeds per poll_feeds task: the beat tick sends one task per second of due feeds, split at this.
SYNDICATOR_POLL_BATCH = int(os.environ.get("SYNDICATOR_POLL_BATCH", 200))

SYNDICATOR_FEED_DEFAULT_INTERVAL = int(os.environ.get("SYNDICATOR_FEED_DEFAULT_INTERVAL", 300))
SYNDICATOR_FEED_MAX_BACKOFF = int(os.environ.get("SYNDICATOR_FEED_MAX_BACKOFF", 6 * 3600))
SYNDICATOR_FEED_TIMEOUT = float(os.environ.get("SYNDICATOR_FEED_TIMEOUT", 20))
SYNDICATOR_FEED_MAX_BYTES = int(os.environ.get("SYNDICATOR_FEED_MAX_BYTES", 10 * 1024 * 1024))
SYNDICATOR_FEED_MAX_REDIRECTS = int(os.environ.get("SYNDICATOR_FEED_MAX_REDIRECTS", 5))
# Feeds are fetched from public addresses only (syndicator/netguard.py): a feed must not reach the
# machine or the network syndicator runs in. Private networks (CIDRs) and host names allowed
# besides, comma-separated, e.g. "10.1.0.0/16,intranet.example"; `syndicator run` adds its own
# address for the demo feeds it serves, and the tests allow loopback.
SYNDICATOR_FEED_ALLOW_PRIVATE = [
    entry.strip() for entry in os.environ.get("SYNDICATOR_FEED_ALLOW_PRIVATE", "").split(",") if entry.strip()
]
SYNDICATOR_USER_AGENT = os.environ.get(
    "SYNDICATOR_USER_AGENT", "syndicator/0.1 (+https://github.com/syndicator/syndicator)"
)

# Where a target's secret may come from and which servers it may reach (syndicator/targets/guard.py):
# variables named SYNDICATOR_SECRET_* or a network's documented names, plus these (names, or
# prefixes ending in "*"); public hosts only, plus these networks and host names.
SYNDICATOR_SECRET_PREFIX = os.environ.get("SYNDICATOR_SECRET_PREFIX", "SYNDICATOR_SECRET_")
SYNDICATOR_SECRET_ENV_ALLOW = [
    entry.strip() for entry in os.environ.get("SYNDICATOR_SECRET_ENV_ALLOW", "").split(",") if entry.strip()
]
SYNDICATOR_TARGET_ALLOW_PRIVATE = [
    entry.strip()
    for entry in os.environ.get("SYNDICATOR_TARGET_ALLOW_PRIVATE", "").split(",")
    if entry.strip()
]

# Timeout of one call to a network's API (connect is capped at 10 s).
SYNDICATOR_TARGET_TIMEOUT = float(os.environ.get("SYNDICATOR_TARGET_TIMEOUT", 15))
# Push (WebSub callbacks, the publish webhook) needs a URL the outside world reaches us at: only
# an explicitly set SYNDICATOR_PUBLIC_URL turns it on (the default above is for links in mail).
# SYNDICATOR_PUSH=0 turns it off anyway (`syndicator run` does, for the address it sets itself).
SYNDICATOR_PUSH_ENABLED = _env_bool("SYNDICATOR_PUSH", default=bool(os.environ.get("SYNDICATOR_PUBLIC_URL")))
# WebSub (syndicator/websub.py): the lease we ask for, how long a hub may take to verify, how long
# before a failed subscription is tried again, and how often a subscribed feed is still polled.
SYNDICATOR_WEBSUB_LEASE = int(os.environ.get("SYNDICATOR_WEBSUB_LEASE", 10 * 86400))
SYNDICATOR_WEBSUB_VERIFY_TIMEOUT = float(os.environ.get("SYNDICATOR_WEBSUB_VERIFY_TIMEOUT", 300))
SYNDICATOR_WEBSUB_RETRY_AFTER = float(os.environ.get("SYNDICATOR_WEBSUB_RETRY_AFTER", 3600))
SYNDICATOR_WEBSUB_SAFETY_INTERVAL = int(os.environ.get("SYNDICATOR_WEBSUB_SAFETY_INTERVAL", 3600))
SYNDICATOR_WEBSUB_TICK = float(os.environ.get("SYNDICATOR_WEBSUB_TICK", 30))
# Adaptive polling bounds for feeds added without --interval (syndicator/rhythm.py).
SYNDICATOR_FEED_MIN_INTERVAL = int(os.environ.get("SYNDICATOR_FEED_MIN_INTERVAL", 60))
SYNDICATOR_FEED_MAX_INTERVAL = int(os.environ.get("SYNDICATOR_FEED_MAX_INTERVAL", 3600))
# How long an email's unsubscribe link works, in seconds (the token is signed and timestamped).
SYNDICATOR_UNSUBSCRIBE_MAX_AGE = int(os.environ.get("SYNDICATOR_UNSUBSCRIBE_MAX_AGE", 90 * 86400))

# /metrics for anyone (e.g. a Prometheus on a private network); otherwise a staff login or a token.
SYNDICATOR_METRICS_PUBLIC = _env_bool("SYNDICATOR_METRICS_PUBLIC")

# Jinja2 message templates (templates/messages/*.j2).
SYNDICATOR_MESSAGE_TEMPLATES = BASE_DIR / "templates" / "messages"
# Seconds all the renderings of one message may take together, in a worker or the web preview
# (syndicator/sandbox.py bounds sizes and steps too); the bundled templates take milliseconds.
SYNDICATOR_TEMPLATE_TIMEOUT = float(os.environ.get("SYNDICATOR_TEMPLATE_TIMEOUT", 5))

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"redact": {"()": "syndicator.redact.RedactSecretsFilter"}},
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain", "filters": ["redact"]},
    },
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {
        # httpx logs every request URL at INFO; a network's token may be part of that URL.
        "httpx": {"level": "WARNING"},
        "httpcore": {"level": "WARNING"},
        # requests_oauthlib and oauthlib log the OAuth parameters (consumer key, access token) at
        # DEBUG; a debug log must not carry credentials.
        "oauthlib": {"level": "INFO"},
        "requests_oauthlib": {"level": "INFO"},
    },
}
