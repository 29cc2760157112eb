"""What Graph's error answers mean: one ErrorTable, and the wait its usage headers ask for.

Graph explains an error in its body (``{"error": {"code", "error_subcode", "message",
"is_transient", "fbtrace_id"}}``) and the decision is by that code, not by the HTTP status
(TARGETS.md §2 "Errors: retry vs give up"; Meta's "Handling Errors" table). A code outside the
table is decided by Graph's own ``is_transient`` hint (``table_code``). Only an answer without a
Graph error body is decided by its HTTP status: that is a proxy or a web server, not Graph.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from syndicator.errors import PermanentError, RateLimited, TargetBroken, TransientError
from syndicator.targets.faults import ErrorTable, Rule, json_object


class DuplicatePost(PermanentError):
    """Graph code 506: the Page already has a post with exactly this text (after an uncertain
    attempt, the adapter looks that post up instead of failing)."""


class ObjectMissing(PermanentError):
    """Graph code 100 with subcode 33: "Object with ID … does not exist, cannot be loaded due to
    missing permissions, or does not support this operation". For a send it is a bad page_id (a
    plain PermanentError); a delete takes it as the post already gone, an edit as EditRefused."""


# Graph's code and subcode for an object that does not exist (Meta's "Handling Errors" table).
MISSING_OBJECT = (100, 33)


# Throttled, and no header says for how long: wait this many seconds (five minutes rather than
# the contract's one: Graph's limits count over rolling windows of an hour).
DEFAULT_RATE_LIMIT_WAIT = 300.0
# X-App-Usage (Platform limits) counts over a rolling hour and carries no time to wait; at 100 %
# we wait a quarter of that window rather than hammer it every few minutes.
APP_USAGE_WAIT = 900.0

# Why a token died (code 190's error_subcode; Meta's "Handling Errors" table).
TOKEN_SUBCODES = {
    458: "the app was removed from the account",
    459: "the user is checkpointed and must log in at facebook.com",
    460: "the password was changed",
    463: "the token expired",
    464: "the user is not confirmed",
    467: "the token is invalid",
}

# Keys of the table for a Graph error whose code it does not list (see ``table_code``).
UNLISTED, UNLISTED_TRANSIENT = "unlisted", "unlisted, is_transient"

RETRY = "will retry"
WAIT = "waiting {wait:.0f} s"
PERMISSION = Rule(
    TargetBroken,
    "permission missing",
    "configuration: the Page token needs pages_manage_posts and the CREATE_CONTENT task on the Page",
)
ERRORS = ErrorTable(
    by_code={
        1: Rule(TransientError, "unknown API error (temporary)", RETRY),
        2: Rule(TransientError, "API service error (temporary)", RETRY),
        4: Rule(RateLimited, "app request limit reached", WAIT),
        17: Rule(RateLimited, "user request limit reached", WAIT),
        32: Rule(RateLimited, "Page request limit reached", WAIT),
        613: Rule(RateLimited, "custom rate limit reached", WAIT),
        80001: Rule(RateLimited, "Pages (Business Use Case) rate limit reached", WAIT),
        341: Rule(RateLimited, "application limit reached", WAIT),
        190: Rule(
            TargetBroken, "token expired/revoked ({why})", "re-issue the Page token and put it in {env}"
        ),
        10: PERMISSION,
        **dict.fromkeys(range(200, 300), PERMISSION),  # 200-299: a permission is missing
        100: Rule(PermanentError, "invalid parameter", "this content was rejected{hint}"),
        368: Rule(
            TargetBroken,
            "the Page is temporarily blocked for a policy violation",
            "the target is paused; resume it in a few hours, after checking the Page's notifications, "
            "and do not hammer it",
        ),
        506: Rule(
            DuplicatePost,
            "duplicate post",
            "the Page already has a post with this exact text; if an earlier attempt's outcome was "
            "uncertain, it was probably posted then",
        ),
        1609005: Rule(TransientError, "link scrape failed: Facebook could not fetch the link", RETRY),
        UNLISTED: Rule(PermanentError, "unexpected Graph error"),
        UNLISTED_TRANSIENT: Rule(
            TransientError, "unexpected Graph error", "Graph calls it transient: " + RETRY
        ),
    },
    # Answers without a Graph error body.
    by_status={429: Rule(RateLimited, "throttled without a Graph error", WAIT)},
    unlisted_3xx=Rule(TargetBroken, "redirected", "Graph does not redirect: check base_url"),
    # Graph always explains a 4xx: this is not Graph talking.
    unlisted_4xx=Rule(TargetBroken, "an answer without a Graph error", "check base_url and graph_version"),
    # TARGETS.md §2: HTTP 5xx without a Graph error → retry with backoff. A post whose answer was
    # lost so is found by the next attempt's duplicate look-up (code 506), not posted twice.
    unlisted_5xx=Rule(TransientError, "an answer without a Graph error", RETRY),
)


def table_code(error: Mapping[str, Any], status: int) -> int | str:
    """The table's key for a Graph error body: its code, or for a code the table does not list,
    Graph's ``is_transient`` hint (a 5xx counts as one)."""
    code = as_int(error.get("code"))
    if code is not None and code in ERRORS.by_code:
        return code
    return UNLISTED_TRANSIENT if error.get("is_transient") or status >= 500 else UNLISTED


def retry_after_from(headers: Mapping[str, str]) -> float:
    """Seconds to wait from Graph's usage headers (TARGETS.md §2, "Rate-limit headers")."""
    # X-Business-Use-Case-Usage: {"<id>": [{"type": "pages", ..., "estimated_time_to_regain_access": M}]}
    # where M is in minutes; Page and System User tokens get these Business Use Case limits.
    minutes = [
        _number(entry.get("estimated_time_to_regain_access"))
        for entries in json_object(headers.get("x-business-use-case-usage")).values()
        if isinstance(entries, list)
        for entry in entries
        if isinstance(entry, dict)
    ]
    if max(minutes, default=0) > 0:
        return max(minutes) * 60.0
    # X-App-Usage: {"call_count": %, "total_cputime": %, "total_time": %} (Platform limits).
    app = json_object(headers.get("x-app-usage"))
    if _number(app.get("estimated_time_to_regain_access")) > 0:
        return _number(app["estimated_time_to_regain_access"]) * 60.0
    usage = max(_number(app.get(key)) for key in ("call_count", "total_cputime", "total_time"))
    if usage >= 100:
        return APP_USAGE_WAIT
    return DEFAULT_RATE_LIMIT_WAIT


def _number(value: object) -> float:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return 0.0


def as_int(value: object) -> int | None:
    """A Graph code or subcode as an int, or None."""
    try:
        return int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return None
