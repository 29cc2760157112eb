"""Facebook Page target: Graph API link posts (and photo posts) over httpx.

The Page access token travels as the form field ``access_token`` in POST bodies and as an
``Authorization: Bearer`` header on GETs, never in a URL: URLs end up in logs. Errors are
classified by Graph's ``error.code``/``error_subcode``, not by the HTTP status (TARGETS.md §2),
with the one table below.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import httpx
from django.conf import settings

from syndicator.errors import (
    DeliveryError,
    OutcomeUnknown,
    PermanentError,
    RateLimited,
    TargetBroken,
    TransientError,
)
from syndicator.redact import redact
from syndicator.targets import http
from syndicator.targets.base import Adapter, Capabilities, SendResult, register
from syndicator.targets.config import URL, Duration, Setting
from syndicator.targets.facebook.text import RULES as TEXT_RULES

if TYPE_CHECKING:
    from syndicator.formatting import Message
    from syndicator.models import Delivery

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://graph.facebook.com"
# Throttled, and no header says for how long: wait this many seconds.
DEFAULT_RATE_LIMIT_WAIT = 300.0
# X-App-Usage (Platform limits) counts over a rolling hour and carries no time to wait; at 100 %
# we wait a quarter of that window rather than hammer it every few minutes.
APP_USAGE_WAIT = 900.0
# After an ambiguous attempt, a 506 duplicate is looked up among the Page's newest posts.
DUPLICATE_LOOKUP_LIMIT = 25
_VERSION = re.compile(r"v\d+\.\d+")
_PAGE_ID = re.compile(r"[\w.-]+")  # also keeps "/" and "?" out of the URL path

# TARGETS.md §2 "Errors: retry vs give up": Graph error code → (action, what it means).
# Codes 200-299 (permission missing) are a range: see _rule().
RULES: dict[int, tuple[str, str]] = {
    1: ("retry", "unknown API error (temporary)"),
    2: ("retry", "API service error (temporary)"),
    4: ("wait", "app request limit reached"),
    17: ("wait", "user request limit reached"),
    32: ("wait", "Page request limit reached"),
    613: ("wait", "custom rate limit reached"),
    80001: ("wait", "Pages (Business Use Case) rate limit reached"),
    341: ("wait", "application limit reached"),
    190: ("token", "token expired/revoked"),
    10: ("permission", "permission missing"),
    100: ("content", "invalid parameter"),
    368: ("blocked", "the Page is temporarily blocked for a policy violation"),
    506: ("duplicate", "duplicate post"),
    1609005: ("retry", "link scrape failed: Facebook could not fetch the link"),
}
# Why a token died (code 190's error_subcode; Meta's "Handling Errors" table).
TOKEN_SUBCODES = {
    458: "the app was removed from the account",
    459: "the user is checkpointed and must log in at facebook.com",
    460: "the password was changed",
    463: "the token expired",
    464: "the user is not confirmed",
    467: "the token is invalid",
}


class DuplicatePost(PermanentError):
    """Graph code 506: the Page already has a post with exactly this text."""


def _rule(code: int | None) -> tuple[str, str]:
    """The action and meaning for a Graph error code; ("unknown", …) when the table has none."""
    if code is not None and 200 <= code <= 299:
        return ("permission", "permission missing")
    return RULES.get(code or 0, ("unknown", "unexpected Graph error"))


@register
class FacebookAdapter(Adapter):
    """Publishes to a Facebook Page: a link post on /feed, or a photo post on /photos."""

    kind = "facebook"
    label = "Facebook Page"
    documented_secrets = ("FACEBOOK_PAGE_TOKEN",)  # README: connecting the networks
    text = TEXT_RULES
    # Graph API: POST /{post-id} with a new message edits a Page post; DELETE /{post-id} removes it.
    capabilities = Capabilities(edit=True, delete=True, note="edits and deletes its Page posts")
    settings_spec = (
        Setting("page_id", "Numeric id of the Facebook Page", required=True),
        Setting("base_url", "Graph API base URL", type=URL, default=DEFAULT_BASE_URL),
        Setting("graph_version", "Graph API version, e.g. v25.0 (default: SYNDICATOR_GRAPH_API_VERSION)"),
        Setting(
            "photo",
            "Post the image as a photo (text as its caption) when the post has one",
            type=bool,
            default=False,
        ),
        Setting(
            "timeout",
            "Seconds to wait for the API (default: SYNDICATOR_TARGET_TIMEOUT)",
            type=Duration,
            minimum=0.001,
        ),
    )

    # --- the contract -------------------------------------------------------------------------

    def send(self, message: Message, delivery: Delivery) -> SendResult:
        """Publish a link post (or a photo post); the permalink lookup never fails the delivery."""
        token, page_id, version = self.secret(), self._page_id(), self._version()
        with self._client() as api:
            if self._as_photo(message):
                form = {"url": message.image_url, "caption": _caption(message)}
                body = self._publish(api, token, f"/{version}/{page_id}/photos", form)
                # Graph answers {"id": photo-id, "post_id": page-post-id} (TARGETS.md §2).
                post_id = str(body.get("post_id") or body["id"])
                details = {"page_id": page_id, "photo_id": str(body["id"]), "post_id": post_id}
            else:
                form = {"message": message.text, "link": message.link}
                path = f"/{version}/{page_id}/feed"
                try:
                    body = self._publish(api, token, path, form)
                except PermanentError as exc:
                    # TARGETS.md §2, row 506: after an ambiguous earlier attempt, look the post up.
                    if isinstance(exc, DuplicatePost) and getattr(delivery, "attempts", 0) > 1:
                        return self._find_duplicate(api, token, path, message.text, exc)
                    raise
                post_id = str(body["id"])
                details = {"page_id": page_id, "post_id": post_id}
            url = self._permalink(api, token, version, post_id)
        return SendResult(external_id=post_id, external_url=url, details=details)

    def verify(self, delivery: Delivery) -> SendResult | None:
        """Look an uncertain delivery's post up among the Page's newest posts, by its exact text.

        A photo post is listed there too, with its caption as the message.
        """
        message = self.render(delivery)
        text = _caption(message) if self._as_photo(message) else message.text
        token, page_id, version = self.secret(), self._page_id(), self._version()
        with self._client() as api:
            found = self._lookup(api, token, f"/{version}/{page_id}/feed", text)
        if found is None:
            raise OutcomeUnknown(
                f"Facebook: not among the Page's {DUPLICATE_LOOKUP_LIMIT} newest posts, so probably not "
                "published: retry it to send it (Graph refuses an exact duplicate, and the adapter then "
                "finds the earlier post)"
            )
        return found

    def check(self) -> str:
        """Ask Graph whose token this is (GET /me): it must be the Page named by page_id."""
        token, page_id, version = self.secret(), self._page_id(), self._version()
        with self._client() as api:
            me = self._call(api, token, "GET", f"/{version}/me", params={"fields": "id,name"})
        found_id, name = str(me.get("id", "")), str(me.get("name", ""))
        if found_id != page_id:
            raise TargetBroken(
                f"Facebook: the token belongs to page {name!r} ({found_id}), not page_id {page_id!r}: "
                "put that Page's access token (not a user token) in "
                f"{self.target.secret_env}, or fix page_id"
            )
        return f"ok: Page token for {name} ({found_id})"

    # --- configuration ------------------------------------------------------------------------

    def _page_id(self) -> str:
        page_id = str(self.setting("page_id") or "").strip()
        if not _PAGE_ID.fullmatch(page_id):
            raise TargetBroken(f"Facebook: bad page_id {page_id!r}: set it to the Page's numeric id")
        return page_id

    def _version(self) -> str:
        version = str(self.setting("graph_version") or settings.SYNDICATOR_GRAPH_API_VERSION).strip()
        version = version if version.startswith("v") else f"v{version}"
        if not _VERSION.fullmatch(version):
            raise TargetBroken(f"Facebook: bad graph_version {version!r}: use the form v25.0")
        return version

    def _as_photo(self, message: Message) -> bool:
        return _flag(self.setting("photo")) and bool(message.image_url)

    def _client(self) -> httpx.Client:
        raw = self.setting("timeout")
        try:
            timeout = float(raw) if raw not in (None, "") else None
        except (TypeError, ValueError):
            timeout = -1.0
        if timeout is not None and timeout <= 0:
            raise TargetBroken(f"Facebook: bad timeout {raw!r}: a number of seconds above 0")
        return http.client(str(self.setting("base_url") or DEFAULT_BASE_URL), timeout=timeout)

    # --- requests -----------------------------------------------------------------------------

    def _publish(self, api: httpx.Client, token: str, path: str, form: dict[str, str]) -> dict[str, Any]:
        """POST a publishing call; a 2xx without an id means the post may exist (OutcomeUnknown)."""
        data = {key: value for key, value in form.items() if value}
        body = self._call(api, token, "POST", path, data={**data, "access_token": token})
        if not body.get("id"):
            raise OutcomeUnknown("Facebook answered without a post id: the post may have been published")
        return body

    def _call(self, api: httpx.Client, token: str, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        """One Graph request: the JSON object it answered, or the DeliveryError its error means."""
        if method == "GET":  # a GET has no body: the token goes in a header, never in the URL
            kwargs["headers"] = {"Authorization": f"Bearer {token}"}
        response = http.request(api, method, path, **kwargs)
        try:
            body = response.json()
        except ValueError:
            body = None
        error = body.get("error") if isinstance(body, dict) else None
        if isinstance(error, dict):
            raise self._error(error, response.status_code, response.headers, token)
        status = response.status_code
        if status >= 500:  # TARGETS.md §2: HTTP 5xx without a Graph error → retry with backoff
            raise TransientError(
                f"Facebook: HTTP {status} without a Graph error: will retry", http_status=status
            )
        if status == 429:
            raise RateLimited(
                "Facebook: HTTP 429 without a Graph error",
                retry_after=DEFAULT_RATE_LIMIT_WAIT,
                http_status=429,
            )
        if status >= 400:  # Graph always explains a 4xx: this is not Graph talking
            raise TargetBroken(
                f"Facebook: HTTP {status} without a Graph error body: check base_url and graph_version",
                http_status=status,
            )
        if not isinstance(body, dict):
            if method == "POST":
                raise OutcomeUnknown(
                    f"Facebook: HTTP {status} with a body that is not JSON: the post may have been published",
                    http_status=status,
                )
            raise TransientError(f"Facebook: HTTP {status} with a body that is not JSON", http_status=status)
        return body

    def _error(
        self, error: Mapping[str, Any], status: int, headers: Mapping[str, str], token: str
    ) -> DeliveryError:
        """The DeliveryError for a Graph error body, by TARGETS.md's table (see RULES)."""
        code, subcode = _int(error.get("code")), _int(error.get("error_subcode"))
        action, meaning = _rule(code)
        said = _scrub(str(error.get("message") or ""), token)[:300]
        ref = f"code {code}" + (f", subcode {subcode}" if subcode else "")
        trace = f" [fbtrace_id {error['fbtrace_id']}]" if error.get("fbtrace_id") else ""
        env = self.target.secret_env or "the secret's environment variable"
        exc: DeliveryError
        if action == "retry":
            exc = TransientError(
                f"Facebook: {meaning} ({ref}): {said}; will retry{trace}", http_status=status
            )
        elif action == "wait":
            wait = retry_after_from(headers)
            exc = RateLimited(
                f"Facebook: {meaning} ({ref}): {said}; waiting {wait:.0f} s{trace}",
                retry_after=wait,
                http_status=status,
            )
        elif action == "token":
            why = TOKEN_SUBCODES.get(subcode or 0, said or "the token was rejected")
            exc = TargetBroken(
                f"Facebook: token expired/revoked ({ref}: {why}): re-issue the Page token and put it in "
                f"{env}{trace}",
                http_status=status,
            )
        elif action == "permission":
            exc = TargetBroken(
                f"Facebook: {meaning} ({ref}: {said}): configuration; the Page token needs "
                f"pages_manage_posts and the CREATE_CONTENT task on the Page{trace}",
                http_status=status,
            )
        elif action == "content":
            hint = " (check page_id)" if subcode == 33 else ""  # 33: object does not exist
            exc = PermanentError(
                f"Facebook: {meaning} ({ref}: {said}): this content was rejected{hint}{trace}",
                http_status=status,
            )
        elif action == "blocked":
            exc = TargetBroken(
                f"Facebook: {meaning} ({ref}: {said}): the target is paused; resume it in a few hours, "
                f"after checking the Page's notifications, and do not hammer it{trace}",
                http_status=status,
            )
        elif action == "duplicate":
            exc = DuplicatePost(
                f"Facebook: {meaning} ({ref}): the Page already has a post with this exact text; if an "
                f"earlier attempt's outcome was uncertain, it was probably posted then{trace}",
                http_status=status,
            )
        elif error.get("is_transient") or status >= 500:  # unknown code: is_transient is a hint
            exc = TransientError(
                f"Facebook: {meaning} ({ref}: {said}): will retry{trace}", http_status=status
            )
        else:
            exc = PermanentError(f"Facebook: {meaning} ({ref}: {said}){trace}", http_status=status)
        return exc

    def _permalink(self, api: httpx.Client, token: str, version: str, post_id: str) -> str:
        """The post's permalink_url; on any failure the plain URL (the post exists already)."""
        fallback = f"https://www.facebook.com/{post_id}"
        try:
            body = self._call(api, token, "GET", f"/{version}/{post_id}", params={"fields": "permalink_url"})
        except DeliveryError as exc:
            log.warning(
                "facebook target %s: permalink lookup for %s failed, using %s: %s",
                self.target.name,
                post_id,
                fallback,
                _scrub(str(exc), token),
            )
            return fallback
        url = body.get("permalink_url")
        return url if isinstance(url, str) and url.startswith(("https://", "http://")) else fallback

    def _find_duplicate(
        self, api: httpx.Client, token: str, feed_path: str, text: str, duplicate: DuplicatePost
    ) -> SendResult:
        """Our own earlier post, found among the Page's newest by its exact text; else the 506.

        An earlier attempt of this delivery may have published it without us hearing the answer
        (5xx, timeout), so a 506 now most likely means that post exists.
        """
        try:
            found = self._lookup(api, token, feed_path, text)
        except DeliveryError as exc:
            raise DuplicatePost(
                f"{duplicate} (looking it up failed: {_scrub(str(exc), token)})",
                http_status=duplicate.http_status,
            ) from None
        if found is None:
            raise DuplicatePost(
                f"{duplicate} (not among the Page's {DUPLICATE_LOOKUP_LIMIT} newest posts)",
                http_status=duplicate.http_status,
            )
        found.details["found_after_duplicate"] = True
        return found

    def _lookup(self, api: httpx.Client, token: str, feed_path: str, text: str) -> SendResult | None:
        """The Page's newest post with exactly this text, or None; a failed listing raises."""
        if not text.strip():
            raise OutcomeUnknown("Facebook: a post without text cannot be recognised among the Page's posts")
        params = {"fields": "id,message,permalink_url", "limit": DUPLICATE_LOOKUP_LIMIT}
        feed = self._call(api, token, "GET", feed_path, params=params)
        for item in feed.get("data") or []:
            if (
                isinstance(item, dict)
                and str(item.get("message", "")).strip() == text.strip()
                and item.get("id")
            ):
                post_id = str(item["id"])
                url = item.get("permalink_url") or f"https://www.facebook.com/{post_id}"
                return SendResult(external_id=post_id, external_url=str(url), details={"post_id": post_id})
        return None


def retry_after_from(headers: Mapping[str, str]) -> float:
    """Seconds to wait from Graph's usage headers (TARGETS.md §2, "Rate-limit headers")."""
    # X-Business-Use-Case-Usage: {"<id>": [{"type": "pages", ..., "estimated_time_to_regain_access": M}]}
    # where M is in minutes; Page and System User tokens get these Business Use Case limits.
    minutes = [
        _number(entry.get("estimated_time_to_regain_access"))
        for entries in _json_header(headers, "x-business-use-case-usage").values()
        if isinstance(entries, list)
        for entry in entries
        if isinstance(entry, dict)
    ]
    if max(minutes, default=0) > 0:
        return max(minutes) * 60.0
    # X-App-Usage: {"call_count": %, "total_cputime": %, "total_time": %} (Platform limits).
    app = _json_header(headers, "x-app-usage")
    if _number(app.get("estimated_time_to_regain_access")) > 0:
        return _number(app["estimated_time_to_regain_access"]) * 60.0
    usage = max(_number(app.get(key)) for key in ("call_count", "total_cputime", "total_time"))
    if usage >= 100:
        return APP_USAGE_WAIT
    return DEFAULT_RATE_LIMIT_WAIT


def _caption(message: Message) -> str:
    """A photo post's caption: the text, and the link after it (/photos has no `link` field)."""
    if message.link and message.link not in message.text:
        return f"{message.text}\n\n{message.link}".strip()
    return message.text


def _flag(value: object) -> bool:
    """A boolean setting, also when it was stored as text ("true", "0")."""
    return value is True or str(value).strip().lower() in {"1", "true", "yes", "on"}


def _json_header(headers: Mapping[str, str], name: str) -> dict[str, Any]:
    try:
        value = json.loads(headers.get(name) or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _number(value: object) -> float:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return 0.0


def _int(value: object) -> int | None:
    try:
        return int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return None


def _scrub(text: str, token: str) -> str:
    """Text without the token (even a bare one Graph might echo) and other credentials."""
    if token:
        text = text.replace(token, "<redacted>")
    return redact(text)
