"""What an admin's target settings may reach: secrets from allowed variables only, public hosts only.

A target names the environment variable that holds its secret, and the server it talks to. Left
free, an Admin could name ``DATABASE_URL`` or ``SECRET_KEY`` and point ``base_url`` at a host of
theirs, and the next send would carry the host's own secret out as a bearer token. So:

- a secret comes only from a variable whose name starts with ``SYNDICATOR_SECRET_PREFIX``
  (default ``SYNDICATOR_SECRET_``), a name the network documents (its adapter's
  ``documented_secrets`` and the defaults of its secret settings), or a name listed in
  ``SYNDICATOR_SECRET_ENV_ALLOW`` (names, or prefixes ending in ``*``);
- a base URL or a mail host must resolve to public addresses only (syndicator.netguard, the
  feeds' guard), unless its host or network is listed in ``SYNDICATOR_TARGET_ALLOW_PRIVATE``
  (a self-hosted Bot API server, a staging host, the tests' emulators).

Both are checked when a target is saved (CLI, admin form) — a host name that does not resolve at
that moment is accepted and checked at send — and again before each send.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from django.conf import settings

from syndicator import netguard
from syndicator.errors import FeedError
from syndicator.targets.config import URL, EnvName, Host, SettingError

if TYPE_CHECKING:
    from syndicator.targets.base import Adapter

ALLOW_SETTING = "SYNDICATOR_TARGET_ALLOW_PRIVATE"
# A save must not hang on a slow resolver; an answer that does not come in time is checked at send.
SAVE_LOOKUP_TIMEOUT = 3.0


def allowed_secret_names(cls: type[Adapter] | None) -> tuple[str, ...]:
    """The names a network documents for its secrets."""
    if cls is None:
        return ()
    defaults = tuple(str(s.default) for s in cls.settings_spec if s.secret and s.default)
    return (*cls.documented_secrets, *defaults)


def secret_env_problem(name: str, cls: type[Adapter] | None = None) -> str:
    """Why ``name`` may not hold a target's secret, or "" when it may."""
    if not name:
        return ""
    prefix = settings.SYNDICATOR_SECRET_PREFIX
    if prefix and name.startswith(prefix):
        return ""
    if name in allowed_secret_names(cls):
        return ""
    for entry in settings.SYNDICATOR_SECRET_ENV_ALLOW:
        if name == entry or (entry.endswith("*") and name.startswith(entry[:-1])):
            return ""
    return (
        f"environment variable {name} may not hold a target's secret: name it {prefix}… "
        f"(or list it in SYNDICATOR_SECRET_ENV_ALLOW)"
    )


def check_secret_env(name: str, cls: type[Adapter] | None = None) -> None:
    """SettingError when ``name`` may not hold a target's secret."""
    if problem := secret_env_problem(name, cls):
        raise SettingError(problem)


def host_problem(address: str, *, at_save: bool) -> str:
    """Why a base URL or host may not be reached, or "" when it may.

    ``at_save``: a host that does not resolve now is accepted (it is checked again at send).
    """
    import httpx  # here: a command that lists targets needs no HTTP client (~50 ms to import)

    url = httpx.URL(address if "://" in address else f"https://{address}")
    if not url.host:
        return f"{address!r} names no host"
    allowance = netguard.Allowance.parse(settings.SYNDICATOR_TARGET_ALLOW_PRIVATE)
    try:
        netguard.check(
            url, allowance, timeout=SAVE_LOOKUP_TIMEOUT if at_save else None, allow_setting=ALLOW_SETTING
        )
    except FeedError as exc:
        text = str(exc)
        if "private address" in text:
            return text.removeprefix("refused: ")
        if at_save:
            return ""  # does not resolve now: checked again before each send
        return text
    return ""


def check_target_settings(cls: type[Adapter], values: Mapping[str, Any], secret_env: str = "") -> None:
    """SettingError for the first secret variable or host a target's settings may not use."""
    check_secret_env(secret_env, cls)
    for spec in cls.settings_spec:
        value = values.get(spec.name)
        if value in (None, ""):
            continue
        if spec.type is EnvName:
            if problem := secret_env_problem(str(value), cls):
                raise SettingError(f"setting {spec.name}: {problem}")
        elif spec.type in (URL, Host) and (problem := host_problem(str(value), at_save=True)):
            raise SettingError(f"setting {spec.name}={value}: {problem}")
