"""The Pinterest target: an image Pin per post, ``POST /v5/pins`` with an OAuth bearer token.

A Pin is the article's image with a title, a description, alt text and the article's link; the
text rules (limits, template) are in ``text.py``, the API facts and their sources in
docs/pinterest-api.md. Pinterest needs an image: a post without one is not sent — ``Skipped``
is raised while rendering, so no request leaves, the preview says so and the delivery ends
``skipped`` with the reason (not ``failed``: nothing is wrong with the target) — unless the
target names a ``fallback_image`` (the site's logo, say).

A 5xx or a lost answer on creating a Pin is uncertain (Pinterest does not say whether it made the
Pin first); ``verify`` looks the Pin up on the board by its link and title, and makes it only if
it is not there. Errors: ERRORS below, by HTTP status (Pinterest documents no error codes).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import httpx

from syndicator.errors import (
    DeliveryError,
    EditRefused,
    OutcomeUnknown,
    PermanentError,
    RateLimited,
    Skipped,
    TargetBroken,
)
from syndicator.redact import redact
from syndicator.targets import http
from syndicator.targets.base import Capabilities, HttpAdapter, SendResult, register
from syndicator.targets.config import URL, Setting
from syndicator.targets.faults import ErrorTable, Rule, json_object, retry_after
from syndicator.targets.pinterest.text import ALT_TEXT_MAX, RULES
from syndicator.textrules import truncate

if TYPE_CHECKING:
    from syndicator.formatting import Message
    from syndicator.models import Delivery

API = "https://api.pinterest.com"
# A 429's wait: Retry-After first; v5's own rate-limit headers are not documented (docs), so
# X-RateLimit-Reset is read too, as seconds or a reset time.
RETRY_HEADERS = ("retry-after", "x-ratelimit-reset")
CLOCK_SKEW = 300  # seconds the look-up reaches back before the first attempt (clocks differ)
LOOKUP_PAGE = 100  # Pins of the board ``verify`` reads (the newest; paging is not followed)
NO_IMAGE = "the post has no image, and a Pin is an image (set fallback_image to pin one anyway)"

_MAYBE_MADE = "the Pin may or may not be made"
# HTTP status → what it means (PinsApi: 400 bad data, 401 authentication, 403 refused, 404 not
# found, 429 rate limited). A 5xx on creating a Pin is uncertain (the table's unlisted_5xx).
ERRORS = ErrorTable(
    by_status={
        400: Rule(PermanentError, "Pin refused", "Pinterest does not accept this content; not retrying it"),
        401: Rule(TargetBroken, "token rejected", "put a new access token in {env} (pins:read, pins:write)"),
        403: Rule(TargetBroken, "not allowed", "the token's account may not pin to board {board}"),
        404: Rule(TargetBroken, "board not found", "check board_id {board} (and base_url)"),
        429: Rule(RateLimited, "rate limited", "waiting as Pinterest asks"),
    },
    unlisted_5xx=Rule(OutcomeUnknown, "server error", _MAYBE_MADE),
)


@register
class PinterestAdapter(HttpAdapter):
    """Pin the post's image, with its title, description and link, to one board."""

    kind = "pinterest"
    label = "Pinterest"
    text = RULES
    errors = ERRORS
    default_base_url = API
    # PATCH /v5/pins/{id} changes title, description, link, alt text and board (not the image);
    # DELETE /v5/pins/{id} removes a Pin (PinsApi, PinUpdate).
    capabilities = Capabilities(
        edit=True,
        delete=True,
        note="edits a Pin's title, description, link and alt text at any time (not its image); deletes Pins",
    )
    documented_secrets = ("PINTEREST_ACCESS_TOKEN",)  # README: connecting the networks
    verify_plan = "it will be looked up on the board shortly, and pinned only if it is not there"
    settings_spec = (
        Setting("board_id", "The board to pin to (its numeric id)", required=True),
        Setting(
            "fallback_image",
            "Image to pin when a post has none (e.g. the site's logo); unset: such posts are skipped",
            type=URL,
        ),
    )

    # --- the contract ---------------------------------------------------------------------------

    def render(self, delivery: Delivery) -> Message:
        """The Pin as text.py writes it, with its image; PermanentError when there is none."""
        message = super().render(delivery)
        message.image_url = message.image_url or str(self.setting("fallback_image") or "")
        if not message.image_url:
            raise Skipped(f"{self.label}: {NO_IMAGE}")
        return message

    def send(self, message: Message, delivery: Delivery) -> SendResult:
        """Create the Pin; return its id and URL."""
        if not message.image_url:
            raise Skipped(f"{self.label}: {NO_IMAGE}")
        token, board = self.secret(), self._board_id()
        body: dict[str, Any] = {
            "board_id": board,
            "title": message.subject,
            "description": message.text,
            "alt_text": self._alt(delivery, message),
            "media_source": {"source_type": "image_url", "url": message.image_url},
        }
        if message.link:
            body["link"] = message.link
        with self._client(token) as api:
            pin = self._call(api, token, "POST", "/v5/pins", "creating the Pin", json=body)
        pin_id = str(pin.get("id") or "")
        if not pin_id:
            raise self.no_id("creating the Pin")
        return SendResult(pin_id, pin_url(pin_id), {"board_id": board, "pin_id": pin_id})

    def edit(self, message: Message, delivery: Delivery) -> SendResult:
        """PATCH /v5/pins/{pin_id} with the new title, description, link and alt text (the image of a
        Pin cannot change: PinUpdate has no media_source). The same PATCH twice leaves the same Pin.
        A Pin that is gone (404) cannot be edited: EditRefused."""
        pin_id = self._pin_id(delivery)
        token = self.secret()
        body: dict[str, Any] = {
            "title": message.subject,
            "description": message.text,
            "alt_text": self._alt(delivery, message),
        }
        if message.link:
            body["link"] = message.link
        with self._client(token) as api:
            response = http.request(api, "PATCH", f"/v5/pins/{pin_id}", publishing=False, json=body)
        if response.status_code == 404:
            raise EditRefused(f"{self.label} editing the Pin: Pin {pin_id} no longer exists (404)")
        if response.status_code >= 300:
            raise self._refusal(response, token, "editing the Pin", publishing=False)
        return SendResult(pin_id, pin_url(pin_id), {**delivery.sent_details, "pin_id": pin_id})

    def delete(self, delivery: Delivery) -> None:
        """DELETE /v5/pins/{pin_id} (204); a Pin that is already gone (404) counts as deleted."""
        pin_id = self._pin_id(delivery)
        token = self.secret()
        with self._client(token) as api:
            response = http.request(api, "DELETE", f"/v5/pins/{pin_id}", publishing=False)
        if response.status_code == 404 or response.status_code < 300:
            return
        raise self._refusal(response, token, "deleting the Pin", publishing=False)

    def verify(self, delivery: Delivery) -> SendResult | None:
        """Settle an uncertain Pin: find it on the board by link and title (made since the delivery's
        first attempt), else make it now."""
        message = self.render(delivery)
        token = self.secret()
        with self._client(token) as api:
            page = self._call(
                api,
                token,
                "GET",
                f"/v5/boards/{self._board_id()}/pins",
                "looking the Pin up on the board",
                params={"page_size": LOOKUP_PAGE},
            )
        first = delivery.attempt_log.order_by("number").first()
        since = first.started_at - timedelta(seconds=CLOCK_SKEW) if first else None
        for pin in page.get("items") or []:
            if isinstance(pin, dict) and _same_pin(pin, message) and _made_since(pin, since):
                pin_id = str(pin.get("id") or "")
                return SendResult(pin_id, pin_url(pin_id), {"found_on_board": True})
        result = self.send(message, delivery)  # not on the board: the lost attempt made none
        result.details["pinned_after_lookup"] = True
        return result

    def check(self) -> str:
        """Verify the token (GET /v5/user_account) and that the board exists (GET /v5/boards/{id})."""
        token, board_id = self.secret(), self._board_id()
        with self._client(token) as api:
            account = self._call(api, token, "GET", "/v5/user_account", "checking the token")
            board = self._call(api, token, "GET", f"/v5/boards/{board_id}", "reading the board")
        name = str(account.get("username") or "")
        if not name:
            raise TargetBroken(f"{self.label}: GET /v5/user_account answered without a username")
        fallback = self.setting("fallback_image")
        skip = f"posts without an image get {fallback}" if fallback else "posts without an image are skipped"
        return f"ok: pinning as {name} to board {board.get('name')!r} ({board_id}); {skip}"

    # --- helpers --------------------------------------------------------------------------------

    def _board_id(self) -> str:
        board = str(self.setting("board_id") or "").strip()
        if not board.isdigit():
            raise TargetBroken(
                f"{self.label}: target {self.target.name!r}: board_id must be the board's numeric id"
            )
        return board

    def _client(self, token: str) -> httpx.Client:
        return http.client(
            self.base_url(), timeout=self.timeout(), headers={"Authorization": f"Bearer {token}"}
        )

    def _call(
        self, api: httpx.Client, token: str, method: str, path: str, action: str, **kwargs: Any
    ) -> dict:
        """One API call: its JSON object, or the DeliveryError its answer means."""
        creating = method == "POST"  # only creating a Pin makes anything public
        response = http.request(api, method, path, publishing=creating, **kwargs)
        if response.status_code >= 300:
            raise self._refusal(response, token, action, publishing=creating)
        answer = json_object(response.content)
        if not answer:
            raise self.no_id(action, response.status_code, publishing=creating)
        return answer

    def _refusal(
        self, response: httpx.Response, token: str, action: str, *, publishing: bool
    ) -> DeliveryError:
        """The DeliveryError of an error answer, by ERRORS, with Pinterest's words redacted."""
        body = json_object(response.content)
        said = f"{body.get('message')} (code {body.get('code')})" if body.get("message") else response.text
        said = redact(" ".join(said.split()).replace(token, "<redacted>"))[:300]
        return self.network_error(
            self.errors.rule(response.status_code),
            action,
            publishing=publishing,
            http_status=response.status_code,
            said=said,
            retry_after=retry_after(response.headers, RETRY_HEADERS),
            board=self.target.settings.get("board_id"),
        )

    def _pin_id(self, delivery: Delivery) -> str:
        pin_id = str(delivery.sent_details.get("pin_id") or delivery.external_id or "").strip()
        if not pin_id.isdigit():
            raise PermanentError(f"{self.label}: the delivery names no Pin id ({pin_id!r})")
        return pin_id

    @staticmethod
    def _alt(delivery: Delivery, message: Message) -> str:
        alt = truncate(" ".join(str(delivery.post.title or "").split()), ALT_TEXT_MAX)
        return alt or message.subject


def pin_url(pin_id: str) -> str:
    """A Pin's public page (docs/pinterest-api.md: built from the id)."""
    return f"https://www.pinterest.com/pin/{pin_id}/"


def _same_pin(pin: dict[str, Any], message: Message) -> bool:
    return str(pin.get("link") or "") == message.link and str(pin.get("title") or "") == message.subject


def _made_since(pin: dict[str, Any], since: datetime | None) -> bool:
    """Whether the Pin was made after ``since`` (an earlier one with the same link and title is
    another delivery's, an editor's repost); a Pin without a readable time counts as made since."""
    try:
        made = datetime.fromisoformat(str(pin.get("created_at") or ""))
    except ValueError:
        return True
    return since is None or (made if made.tzinfo else made.replace(tzinfo=UTC)) >= since
