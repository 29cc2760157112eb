"""The Pinterest target: an image Pin per post, ``POST /v5/pins`` with an OAuth bearer token.

A Pin is the article's image with a title (≤ 100 characters), a description (≤ 500, from
``templates/messages/pinterest.txt.j2``), alt text (≤ 500) and the article's link; the sources of
these limits are in docs/networks-pinterest-threads.md. Pinterest needs an image: a post without
one is not sent (a PermanentError saying it was skipped, raised while rendering, so no request
leaves and the preview says so) unless the target names a ``fallback_image`` (the site's logo).

A 5xx or a lost answer on creating a Pin is uncertain (Pinterest does not say whether it made the
Pin first); ``verify`` looks the Pin up on the board by its link and title, and makes it only if
it is not there. Errors are mapped by STATUS_TABLE below, in one place (``_error``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
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
from syndicator.formatting import Message
from syndicator.redact import redact
from syndicator.targets import http
from syndicator.targets.base import Adapter, SendResult, Setting, register
from syndicator.textrules import CONTROL_CHARS, mark_rtl_lines, truncate

if TYPE_CHECKING:
    from syndicator.models import Delivery

API = "https://api.pinterest.com"
TEMPLATE = "pinterest.txt.j2"
# Pin field limits (docs/networks-pinterest-threads.md: ayrshare, blotato), in characters.
TITLE_MAX, DESCRIPTION_MAX, ALT_TEXT_MAX, LINK_MAX = 100, 500, 500, 2048
RATE_LIMIT_FALLBACK = 60.0  # a 429 without a usable Retry-After: wait a minute rather than hammer it
LOOKUP_PAGE = 100  # Pins of the board read by ``verify`` (the newest; paging is not followed)
NO_IMAGE = "skipped: the post has no image, and a Pin is an image (set fallback_image to pin one anyway)"

# HTTP status → (error class, what it means, what to do). Pinterest v5's documented answers.
STATUS_TABLE: dict[int, tuple[type[DeliveryError], str, str]] = {
    400: (PermanentError, "Pin refused", "Pinterest does not accept this content; not retrying it"),
    401: (
        TargetBroken,
        "token rejected",
        "issue a new access token (scopes boards:read, pins:read, pins:write)",
    ),
    403: (TargetBroken, "not allowed", "the token's account may not pin to this board (or lacks pins:write)"),
    404: (TargetBroken, "board not found", "check board_id (and base_url)"),
    500: (OutcomeUnknown, "server error", "the Pin may or may not be made"),
    502: (OutcomeUnknown, "bad gateway", "the Pin may or may not be made"),
    503: (OutcomeUnknown, "unavailable", "the Pin may or may not be made"),
    504: (OutcomeUnknown, "gateway timeout", "the Pin may or may not be made"),
}


@dataclass
class PinMessage(Message):
    """A Pin: ``subject`` is its title, ``text`` its description; the log shows both."""

    alt_text: str = ""

    def as_log_text(self) -> str:
        return f"{self.subject}\n\n{self.text}\n\n{self.link}".strip()


@register
class PinterestAdapter(Adapter):
    """Pin the post's image, with its title, description and link, to one board."""

    kind = "pinterest"
    label = "Pinterest"
    verify_plan = "it will be looked up on the board shortly, and pinned only if it is not there"
    settings_spec = (
        Setting("board_id", "The board to pin to (its numeric id)", required=True),
        Setting(
            "fallback_image",
            "Image URL to pin when a post has none (e.g. the site's logo); empty: such posts are skipped",
        ),
        Setting("base_url", "The API's address", default=API),
        Setting("timeout", "Seconds to wait for each API call (default SYNDICATOR_TARGET_TIMEOUT)"),
    )

    # --- the contract ---------------------------------------------------------------------------

    def render(self, delivery: Delivery) -> PinMessage:
        """Title, description, alt text, link and image of the Pin; PermanentError when there is no image."""
        from syndicator import formatting

        options = self.target.settings
        ctx = formatting._context(delivery.post, self.kind, options)
        image = ctx["image_url"] or _http_url(options.get("fallback_image"))
        if not image:
            raise PermanentError(f"Pinterest: {NO_IMAGE}")
        rtl = ctx["direction"] == "rtl"
        title = truncate(ctx["title"], TITLE_MAX)
        override = CONTROL_CHARS.sub("", (delivery.text_override or "").replace("\r\n", "\n")).strip()
        if override:  # an editor's text is the description; the link is sent beside it
            description = truncate(override, DESCRIPTION_MAX)
        else:
            overrides = self.target.template_overrides or {}
            body = formatting._template_renderer(TEMPLATE, overrides, ctx, mark_rtl=True)
            fields = {"summary": ctx["summary"], "title": ctx["title"]}
            description = formatting._fit(body, fields, ctx["hashtags"], len, DESCRIPTION_MAX, TEMPLATE)
        return PinMessage(
            self.kind,
            description,
            ctx["link"] if len(ctx["link"]) <= LINK_MAX else "",  # a longer one is refused
            subject=mark_rtl_lines(title) if rtl else title,
            image_url=image,
            language=ctx["language"],
            direction=ctx["direction"],
            alt_text=truncate(ctx["title"], ALT_TEXT_MAX),
        )

    def send(self, message: Message, delivery: Delivery) -> SendResult:
        """Create the Pin; return its id and URL."""
        if not message.image_url:
            raise PermanentError(f"Pinterest: {NO_IMAGE}")
        token = self.secret()
        body: dict[str, Any] = {
            "board_id": self._board_id(),
            "title": message.subject,
            "description": message.text,
            "alt_text": getattr(message, "alt_text", "") or message.subject,
            "media_source": {"source_type": "image_url", "url": message.image_url},
        }
        if message.link:
            body["link"] = message.link
        with self._client(token) as api:
            pin = self._call(api, token, "POST", "/v5/pins", "creating the Pin", json=body)
        pin_id = str(pin.get("id") or "")
        if not pin_id:
            # 2xx without an id: something may be public, and we cannot point at it.
            raise OutcomeUnknown("Pinterest: the answer to POST /v5/pins carried no Pin id")
        return SendResult(pin_id, pin_url(pin_id), {"board_id": body["board_id"]})

    def verify(self, delivery: Delivery) -> SendResult | None:
        """Settle an uncertain Pin: find it on the board by link and title, else make it now."""
        message = self.render(delivery)
        token = self.secret()
        with self._client(token) as api:
            try:
                page = self._call(
                    api,
                    token,
                    "GET",
                    f"/v5/boards/{self._board_id()}/pins",
                    "looking the Pin up on the board",
                    params={"page_size": LOOKUP_PAGE},
                )
            except OutcomeUnknown as exc:  # a read that timed out made nothing
                raise TransientError(str(exc), http_status=exc.http_status) from None
        for pin in page.get("items") or []:
            if isinstance(pin, dict) and _same_pin(pin, message):
                pin_id = str(pin.get("id") or "")
                return SendResult(pin_id, pin_url(pin_id), {"found_on_board": True})
        result = self.send(message, delivery)  # not on the board: the lost attempt made none
        result.details["pinned_after_lookup"] = True
        return result

    def check(self) -> str:
        """Verify the token (GET /v5/user_account) and that the board exists (GET /v5/boards/{id})."""
        token = self.secret()
        with self._client(token) as api:
            try:
                account = self._call(api, token, "GET", "/v5/user_account", "checking the token")
                board = self._call(api, token, "GET", f"/v5/boards/{self._board_id()}", "reading the board")
            except OutcomeUnknown as exc:
                raise TransientError(str(exc), http_status=exc.http_status) from None
        name = str(account.get("username") or "")
        if not name:
            raise TargetBroken("Pinterest: GET /v5/user_account answered without a username")
        fallback = _http_url(self.target.settings.get("fallback_image"))
        skip = (
            f"; posts without an image get {fallback}" if fallback else "; posts without an image are skipped"
        )
        return f"ok: pinning as {name} to board {board.get('name')!r} ({self._board_id()}){skip}"

    # --- helpers --------------------------------------------------------------------------------

    def _board_id(self) -> str:
        board = str(self.setting("board_id") or "").strip()
        if not board.isdigit():
            raise TargetBroken(
                f"Pinterest target {self.target.name!r}: board_id must be the board's numeric id"
            )
        return board

    def _client(self, token: str) -> httpx.Client:
        base = str(self.setting("base_url") or API).strip().rstrip("/")
        if not base.lower().startswith(("http://", "https://")):
            raise TargetBroken(f"Pinterest target {self.target.name!r}: base_url must be an http(s) URL")
        timeout = self.setting("timeout")
        try:
            seconds = float(timeout) if timeout not in (None, "") else settings.SYNDICATOR_TARGET_TIMEOUT
        except (TypeError, ValueError):
            raise TargetBroken(
                f"Pinterest target {self.target.name!r}: timeout {timeout!r} is not a number"
            ) from None
        return http.client(base, timeout=seconds, headers={"Authorization": f"Bearer {token}"})

    def _call(
        self, api: httpx.Client, token: str, method: str, path: str, action: str, **kwargs: Any
    ) -> dict:
        """One API call: its JSON object, or the DeliveryError its answer means."""
        response = http.request(api, method, path, **kwargs)
        if response.status_code >= 300:
            raise _error(response, action, token, creating=method == "POST")
        try:
            answer = response.json()
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            cls = OutcomeUnknown if method == "POST" else TransientError
            raise cls(f"Pinterest: {action}: the answer ({response.status_code}) is not a JSON object")
        return answer


def pin_url(pin_id: str) -> str:
    """A Pin's public page (docs/networks-pinterest-threads.md: built from the id)."""
    return f"https://www.pinterest.com/pin/{pin_id}/"


def retry_after(headers: httpx.Headers, now: float | None = None) -> float:
    """Seconds to wait: Retry-After (seconds or an HTTP date), else X-RateLimit-Reset, else a minute."""
    now = time.time() if now is None else now
    value = headers.get("retry-after", "").strip()
    if value:
        try:
            return max(float(value), 1.0)
        except ValueError:
            try:
                return max(parsedate_to_datetime(value).timestamp() - now, 1.0)
            except (TypeError, ValueError):
                pass
    reset = headers.get("x-ratelimit-reset", "").strip()
    try:
        seconds = float(reset)
    except ValueError:
        return RATE_LIMIT_FALLBACK
    # Seconds from now when small, an epoch when large (which one v5 sends is not documented).
    return max(seconds - now if seconds > 1e9 else seconds, 1.0)


def _error(response: httpx.Response, action: str, token: str, *, creating: bool) -> DeliveryError:
    """The DeliveryError an HTTP answer means (STATUS_TABLE; 429 with its wait)."""
    status, said = response.status_code, _said(response, token)
    if status == 429:
        wait = retry_after(response.headers)
        return RateLimited(
            f"Pinterest: rate limited (429) while {action}: retry in {wait:.0f} s ({said})",
            retry_after=wait,
            http_status=429,
        )
    if status < 400:  # a redirect: base_url points at the wrong place
        return TargetBroken(
            f"Pinterest: redirected ({status}) while {action}: check base_url", http_status=status
        )
    default = (OutcomeUnknown, "server error", "the Pin may or may not be made")
    if status < 500:
        default = (PermanentError, "request refused", "not retrying")
    cls, meaning, advice = STATUS_TABLE.get(status, default)
    if cls is OutcomeUnknown and not creating:
        cls, advice = TransientError, "retrying later"  # only creating a Pin makes anything public
    return cls(f"Pinterest: {meaning} ({status}) while {action}: {said}; {advice}", http_status=status)


def _said(response: httpx.Response, token: str) -> str:
    """Pinterest's own words for an error ({"code", "message"}), else the start of the body; redacted."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and body.get("message"):
        text = f"{body.get('message')} (code {body.get('code')})"
    else:
        text = " ".join(response.text.split())[:200]
    return redact(text.replace(token, "<redacted>") if token else text)[:300]


def _same_pin(pin: dict[str, Any], message: Message) -> bool:
    return str(pin.get("link") or "") == message.link and str(pin.get("title") or "") == message.subject


def _http_url(value: object) -> str:
    url = str(value or "").strip()
    return url if url.lower().startswith(("http://", "https://")) else ""
