"""Typed target settings: each network declares its ``Setting``s once, and one parser reads them.

The CLI's ``--set KEY=VALUE``, the admin's settings form, ``targets check`` and the adapters at
send time all go through ``Setting.parse``, so a bad value is the same clear error everywhere: a
``SettingError`` naming the setting and what it takes. Values are stored typed in
``Target.settings`` (JSON); a value stored as text by an older version is parsed the same way.
"""

from __future__ import annotations

import re
import zoneinfo
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from syndicator.errors import UserError

TRUE_WORDS = frozenset({"true", "yes", "on", "1"})
FALSE_WORDS = frozenset({"false", "no", "off", "0"})
ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_DURATION = re.compile(r"(?P<number>\d+(?:\.\d+)?)\s*(?P<unit>ms|s|m|h|d)?", re.IGNORECASE)
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


class SettingError(UserError):
    """A setting's value is not of the kind the setting takes."""


class Duration(float):
    """Seconds, written as ``90``, ``90s``, ``15m``, ``2h`` or ``1d``: the type of a ``Setting``."""


class URL(str):
    """An http(s) address: the type of a ``Setting`` such as ``base_url``."""


class Host(str):
    """A server's host name or address (an SMTP server): checked like a base URL's host."""


class EnvName(str):
    """The name of an environment variable holding a secret (the secret itself is never stored)."""


class SwitchOrText(str):
    """true/false, or a text that configures what "true" does (``utm=utm_source=x``)."""


class TimeZone(str):
    """An IANA time zone name (``Europe/Berlin``), read with zoneinfo: daylight saving included."""


class TimeOfDay(str):
    """A wall-clock time of day, ``07:00`` (24-hour ``HH:MM``): when an email digest goes out."""


class Span(str):
    """A daily span of wall-clock time, ``23:00-06:30``; one whose end is before its start crosses
    midnight."""


SETTING_TYPES = (
    bool,
    int,
    float,
    str,
    list,
    Duration,
    URL,
    Host,
    EnvName,
    SwitchOrText,
    TimeZone,
    TimeOfDay,
    Span,
)


@dataclass(frozen=True)
class Setting:
    """One setting a network reads from ``Target.settings``, declared as class data."""

    name: str
    help: str
    type: type = str
    required: bool = False
    default: Any = None
    # The values it takes, or a function returning them (a list read from the registry).
    choices: tuple[str, ...] | Callable[[], tuple[str, ...]] = ()
    minimum: float | None = None  # for numbers and durations
    # The value names an environment variable that holds a secret; the secret itself is never stored.
    secret: bool = False

    def __post_init__(self) -> None:
        if self.type not in SETTING_TYPES:
            raise TypeError(f"setting {self.name}: type {self.type!r} is not one of {SETTING_TYPES}")
        if self.secret and self.type is str:
            object.__setattr__(self, "type", EnvName)

    @property
    def secret_env(self) -> bool:
        """Whether the value names a secret's environment variable (the older spelling)."""
        return self.secret

    def allowed(self) -> tuple[str, ...]:
        """The values this setting takes, () for any."""
        return tuple(self.choices()) if callable(self.choices) else self.choices

    @property
    def type_name(self) -> str:
        """How the CLI and the admin form describe the type."""
        return {
            bool: "true/false",
            int: "whole number",
            float: "number",
            str: "text",
            list: "comma-separated list",
            Duration: "duration (90, 90s, 15m, 2h, 1d)",
            URL: "https:// address",
            Host: "host name",
            EnvName: "environment variable name",
            SwitchOrText: "true/false or a value",
            TimeZone: "IANA time zone (Europe/Berlin)",
            TimeOfDay: "time of day (07:00)",
            Span: "time span (23:00-06:30)",
        }[self.type]

    def parse(self, raw: object) -> Any:
        """The typed value of ``raw`` (text from the CLI or a form, or a stored JSON value).

        None and "" mean "not set": the default (None for a setting without one). Raises
        SettingError with a message that names the setting and what it takes.
        """
        if raw is None or (isinstance(raw, str) and not raw.strip()):
            if self.required and self.default is None:
                raise SettingError(f"setting {self.name} is required: {self.help}")
            return self.default
        value = self._convert(raw)
        allowed = self.allowed()
        if allowed and value not in allowed:
            raise SettingError(f"setting {self.name}={raw!r}: one of {', '.join(allowed)}")
        if self.minimum is not None and isinstance(value, int | float) and value < self.minimum:
            raise SettingError(f"setting {self.name}={raw!r}: at least {self.minimum:g}")
        return value

    def _convert(self, raw: object) -> Any:
        bad = SettingError(f"setting {self.name}={raw!r}: {self.name} is a {self.type_name}")
        if self.type is bool:
            if isinstance(raw, bool):
                return raw
            word = str(raw).strip().lower()
            if word not in TRUE_WORDS | FALSE_WORDS:
                raise bad
            return word in TRUE_WORDS
        if self.type is int:
            if isinstance(raw, bool):
                raise bad
            if isinstance(raw, int):
                return raw
            if isinstance(raw, float) and raw.is_integer():
                return int(raw)
            text = str(raw).strip()
            if not re.fullmatch(r"-?\d+", text):
                raise bad
            return int(text)
        if self.type in (float, Duration):
            return self._number(raw, bad)
        if self.type is SwitchOrText:
            if isinstance(raw, bool):
                return raw
            word = str(raw).strip().lower()
            return word in TRUE_WORDS if word in TRUE_WORDS | FALSE_WORDS else str(raw).strip()
        if self.type is list:
            items = raw if isinstance(raw, list | tuple) else str(raw).split(",")
            return [str(item).strip() for item in items if str(item).strip()]
        text = str(raw).strip()
        if self.type is URL and not re.fullmatch(r"https?://[^\s/?#]+[^\s]*", text, re.IGNORECASE):
            raise SettingError(f"setting {self.name}={raw!r}: expected an http(s):// address")
        if self.type is Host and not re.fullmatch(r"[A-Za-z0-9.:\[\]_-]+", text):
            raise SettingError(f"setting {self.name}={raw!r}: expected a host name")
        if self.type is EnvName and not ENV_NAME_RE.fullmatch(text):
            raise SettingError(f"setting {self.name}={raw!r}: the name of an environment variable")
        if self.type is TimeZone:
            try:
                zoneinfo.ZoneInfo(text)
            except (zoneinfo.ZoneInfoNotFoundError, ValueError):
                raise SettingError(
                    f"setting {self.name}={raw!r}: an IANA time zone such as Europe/Berlin"
                ) from None
        if self.type is TimeOfDay:
            try:
                parse_time_of_day(text)
            except ValueError:
                raise SettingError(
                    f"setting {self.name}={raw!r}: a time of day, HH:MM on a 24-hour clock, such as 07:00"
                ) from None
            return text
        if self.type is Span:
            try:
                parse_span(text)
            except ValueError:
                raise SettingError(
                    f"setting {self.name}={raw!r}: a span of local time such as 23:00-06:30"
                ) from None
        return text

    def _number(self, raw: object, bad: SettingError) -> float:
        if isinstance(raw, bool):
            raise bad
        if isinstance(raw, int | float):
            return float(raw)
        text = str(raw).strip()
        if self.type is Duration:
            match = _DURATION.fullmatch(text)
            if not match:
                raise bad
            return float(match["number"]) * _DURATION_UNITS[(match["unit"] or "s").lower()]
        try:
            return float(text)
        except ValueError:
            raise bad from None


# Settings every network that speaks HTTP inherits (syndicator.targets.base.HttpAdapter).
TIMEOUT = Setting(
    "timeout",
    "Seconds to wait for each API call (default SYNDICATOR_TARGET_TIMEOUT)",
    type=Duration,
    minimum=0.001,
)


def base_url_setting(default: str, help_text: str = "") -> Setting:
    """The ``base_url`` setting of a network whose API lives at ``default``."""
    return Setting(
        "base_url",
        help_text or "API server (a self-hosted server, a staging host or an emulator)",
        type=URL,
        default=default,
    )


# Settings the formatting layer reads for every network (syndicator.formatting.render_message).
def format_settings(hashtags_default: bool | None) -> tuple[Setting, ...]:
    """The formatting settings, with the network's own default for hashtags (None: the default of
    the network whose format the target renders, for a dry run)."""
    said = {True: "on", False: "off", None: "as the imitated network"}[hashtags_default]
    return (
        Setting(
            "hashtags",
            f"Hashtags from the post's categories (default {said})",
            type=bool,
            default=hashtags_default,
        ),
        Setting("hashtag_limit", "At most this many hashtags", type=int, default=3, minimum=0),
        Setting(
            "utm",
            "UTM parameters: false to add none, or a query such as utm_source=x&utm_campaign=y",
            type=SwitchOrText,
        ),
    )


def parse_pairs(specs: tuple[Setting, ...], kind: str, pairs: list[str]) -> dict[str, Any]:
    """KEY=VALUE pairs (the CLI's --set) validated against a network's settings and typed."""
    by_name = {spec.name: spec for spec in specs}
    values: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise SettingError(f"bad --set {pair!r}: use KEY=VALUE")
        if key not in by_name:
            known = ", ".join(by_name) or "none"
            raise SettingError(f"unknown setting {key!r} for {kind} targets (settings: {known})")
        values[key] = by_name[key].parse(raw) if raw.strip() else None
    return values


# --- pacing (syndicator/pacing.py; docs/pacing.md) -----------------------------------------------


_SPAN = re.compile(r"(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})")


def parse_span(text: str) -> tuple[tuple[int, int], tuple[int, int]]:
    """The (hour, minute) start and end of a ``Span``; ValueError when it is not one."""
    match = _SPAN.fullmatch(text.strip())
    if not match:
        raise ValueError(text)
    h1, m1, h2, m2 = (int(part) for part in match.groups())
    if h1 > 23 or h2 > 23 or m1 > 59 or m2 > 59 or (h1, m1) == (h2, m2):
        raise ValueError(text)
    return (h1, m1), (h2, m2)


_TIME_OF_DAY = re.compile(r"(\d{1,2}):(\d{2})")


def parse_time_of_day(text: str) -> tuple[int, int]:
    """The (hour, minute) of a ``TimeOfDay``; ValueError when it is not one."""
    match = _TIME_OF_DAY.fullmatch(text.strip())
    if not match or int(match[1]) > 23 or int(match[2]) > 59:
        raise ValueError(text)
    return int(match[1]), int(match[2])


@dataclass(frozen=True)
class RateLimit:
    """A network's hard limit: at most ``count`` sends in any ``seconds``, per ``per``.

    ``per`` names what the network counts by: ``"account"`` (the credential: the token's
    environment variable name, never the token), ``"chat"`` (the target's ``chat_id`` within the
    account) or ``"target"``.
    """

    per: str
    count: int
    seconds: float
    source: str = ""  # where the number comes from (docs/pacing.md)


@dataclass(frozen=True)
class Pacing:
    """What a network's package declares about sending rates: its hard limits, and the daily
    budget of each of its tiers (the first tier is the default of the ``tier`` setting)."""

    rate_limits: tuple[RateLimit, ...] = ()
    daily_limit_by_tier: dict[str, int] | None = None
    daily_limit: int | None = None  # the network's own daily cap when it has no tiers

    @property
    def declared(self) -> bool:
        return bool(self.rate_limits or self.daily_limit_by_tier or self.daily_limit)


NO_PACING = Pacing()

PACING_NAMES = ("min_interval", "daily_limit", "quiet_hours", "timezone", "breaking_categories", "max_age")


def pacing_settings(pacing: Pacing) -> tuple[Setting, ...]:
    """The pacing settings every network inherits, with a ``tier`` setting for a network whose
    package declares daily budgets per tier (X: free, basic)."""
    tiers = tuple(pacing.daily_limit_by_tier or ())
    tier = (
        (Setting("tier", "The API plan of the account (its daily budget)", choices=tiers, default=tiers[0]),)
        if tiers
        else ()
    )
    return (
        *tier,
        Setting(
            "min_interval",
            "Seconds between two sends to this target (0: no spacing)",
            type=Duration,
            minimum=0,
        ),
        Setting(
            "daily_limit",
            "Sends in any 24 hours (default: the network's budget for the tier, if it has one)",
            type=int,
            minimum=1,
        ),
        Setting("quiet_hours", "No sends in this daily span of local time, e.g. 23:00-06:30", type=Span),
        Setting("timezone", "IANA time zone of quiet_hours, e.g. Asia/Tehran (default UTC)", type=TimeZone),
        Setting(
            "breaking_categories",
            "Posts in these categories or tags skip quiet hours and spacing",
            type=list,
            default=[],
        ),
        Setting(
            "max_age",
            "An automatic delivery of an article published longer ago is skipped "
            "(default SYNDICATOR_MAX_AGE, 48h)",
            type=Duration,
            minimum=1,
        ),
    )


ON_UPDATE = ("edit", "ignore")
ON_UNPUBLISH = ("delete", "flag")


def followup_settings(can_edit: bool, can_delete: bool) -> tuple[Setting, ...]:
    """What a target does when an article it carried changes or is pulled (docs/followups.md):
    every network inherits them; a network that cannot edit (or delete) takes only the choice
    that asks nothing of it."""
    return (
        Setting(
            "on_update",
            "When the article is edited at its source: edit the post here, or ignore it",
            choices=ON_UPDATE if can_edit else ("ignore",),
            default="edit" if can_edit else "ignore",
        ),
        Setting(
            "on_unpublish",
            "When the article is unpublished: delete the post here, or flag it for an editor",
            choices=ON_UNPUBLISH if can_delete else ("flag",),
            default="flag",
        ),
    )
