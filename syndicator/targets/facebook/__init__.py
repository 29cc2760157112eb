"""Facebook Page target: Graph API link posts (and photo posts) over httpx.

The Page access token travels as the form field ``access_token`` in POST bodies and as an
``Authorization: Bearer`` header on GETs and DELETEs, never in a URL: URLs end up in logs. Errors
are classified by Graph's ``error.code``/``error_subcode``, not by the HTTP status (TARGETS.md §2),
with the one table in errors.py (``ERRORS``).

Edits and deletes: the Page feed reference reads "/{page-post-id} endpoint allows you to update a
specific Page post" (``POST /{post-id}`` with ``message``), and Meta's Pages API "Posts" guide
covers deleting one (``DELETE /{post-id}``). Both go to the Page post's id, which every send keeps
(``post_id``; a photo post also keeps its ``photo_id``). Graph's answer for an object that is no
longer there is code 100, subcode 33: a delete counts it as done, an edit as EditRefused.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import httpx
from django.conf import settings

from syndicator.errors import DeliveryError, EditRefused, OutcomeUnknown, PermanentError, TargetBroken
from syndicator.redact import redact
from syndicator.targets import http
from syndicator.targets.base import Capabilities, HttpAdapter, SendResult, register
from syndicator.targets.config import Setting
from syndicator.targets.facebook.errors import (
    ERRORS,
    MISSING_OBJECT,
    TOKEN_SUBCODES,
    DuplicatePost,
    ObjectMissing,
    as_int,
    retry_after_from,
    table_code,
)
from syndicator.targets.facebook.text import RULES as TEXT_RULES
from syndicator.targets.faults import json_object

if TYPE_CHECKING:
    from syndicator.formatting import Message
    from syndicator.models import Delivery

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://graph.facebook.com"
# Graph API version, pinned (TARGETS.md: v25.0 is available until 2028-07); the environment
# variable (or a Django setting of the same name) moves every target at once.
GRAPH_VERSION = os.environ.get("SYNDICATOR_GRAPH_API_VERSION", "v25.0")
# After an ambiguous attempt, a 506 duplicate is looked up among the Page's newest posts.
DUPLICATE_LOOKUP_LIMIT = 25
_VERSION = re.compile(r"v\d+\.\d+")
_PAGE_ID = re.compile(r"[\w.-]+")  # also keeps "/" and "?" out of the URL path


@register
class FacebookAdapter(HttpAdapter):
    """Publishes to a Facebook Page: a link post on /feed, or a photo post on /photos."""

    kind = "facebook"
    label = "Facebook Page"
    documented_secrets = ("FACEBOOK_PAGE_TOKEN",)  # README: connecting the networks
    default_base_url = DEFAULT_BASE_URL
    text = TEXT_RULES
    errors = ERRORS
    # Graph API: POST /{post-id} with a new message edits a Page post; DELETE /{post-id} removes it
    # (module docstring). No window or count of edits is documented.
    capabilities = Capabilities(
        edit=True, delete=True, note="edits the text of its Page posts (a photo's caption) and deletes them"
    )
    settings_spec = (
        Setting("page_id", "Numeric id of the Facebook Page", required=True),
        Setting("graph_version", "Graph API version, e.g. v25.0 (default: SYNDICATOR_GRAPH_API_VERSION)"),
        Setting(
            "photo",
            "Post the image as a photo (text as its caption) when the post has one",
            type=bool,
            default=False,
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
                details = {"page_id": page_id, "photo_id": str(body["id"]), "post_id": post_id, "photo": True}
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
                details = {"page_id": page_id, "post_id": post_id, "photo": False}
            url = self._permalink(api, token, version, post_id)
        return SendResult(external_id=post_id, external_url=url, details=details)

    def edit(self, message: Message, delivery: Delivery) -> SendResult:
        """POST /{post-id} with the new ``message``: a link post's text, or a photo post's caption
        (its text and link, as sent). The link of a link post is not sent: it stays as posted.
        Setting the same message twice leaves the same post. A post that is gone (code 100,
        subcode 33) cannot be edited: EditRefused.

        Not confirmed: where a photo post's caption is edited. The Photo reference documents no
        update, while the Page post made with the photo is a Page post like any other, whose message
        is the caption (the Page's feed lists it so), and a user report (mobolic/facebook-sdk#486)
        edits the text of an image post through POST /{page-id}_{post-id} ``message``. So the edit
        goes to the post id, for photo posts too.
        """
        sent = delivery.sent_details or {}
        post_id, token, version = _post_id(delivery), self.secret(), self._version()
        text = _caption(message) if sent.get("photo") or sent.get("photo_id") else message.text
        if not text.strip():
            raise PermanentError(f"{self.label} edit: the new text is empty")
        path = f"/{version}/{post_id}"
        with self._client() as api:
            try:
                answer = self._call(
                    api, token, "POST", path, publishing=False, data={"message": text, "access_token": token}
                )
            except ObjectMissing:
                raise EditRefused(
                    f"{self.label} edit: post {post_id} no longer exists (Graph code 100, subcode 33)"
                ) from None
        if answer.get("success") is False:  # Graph answers {"success": true}
            raise self.no_id(f"POST {path}", 200, publishing=False)
        url = delivery.external_url or f"https://www.facebook.com/{post_id}"
        return SendResult(post_id, url, {**sent, "post_id": post_id})

    def delete(self, delivery: Delivery) -> None:
        """DELETE /{post-id}; a photo post's photo too (DELETE /{photo-id}), so the image does not
        stay in the Page's photos if deleting the post leaves it (not documented either way).
        Graph's "does not exist" (code 100, subcode 33) counts as deleted, so a repeat is done."""
        sent = delivery.sent_details or {}
        token, version = self.secret(), self._version()
        ids = [_post_id(delivery)]
        if photo_id := str(sent.get("photo_id") or "").strip():
            ids.append(_graph_id(photo_id, "photo id"))
        with self._client() as api:
            for object_id in ids:
                try:
                    self._call(api, token, "DELETE", f"/{version}/{object_id}", publishing=False)
                except ObjectMissing:
                    continue  # gone already: nothing of it is left to delete

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
        found.details.update(page_id=page_id, photo=self._as_photo(message))  # what an edit needs
        return found

    def check(self) -> str:
        """Ask Graph whose token this is (GET /me): it must be the Page named by page_id."""
        token, page_id, version = self.secret(), self._page_id(), self._version()
        with self._client() as api:
            me = self._call(
                api, token, "GET", f"/{version}/me", publishing=False, params={"fields": "id,name"}
            )
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
        default = getattr(settings, "SYNDICATOR_GRAPH_API_VERSION", None) or GRAPH_VERSION
        version = str(self.setting("graph_version") or default).strip()
        version = version if version.startswith("v") else f"v{version}"
        if not _VERSION.fullmatch(version):
            raise TargetBroken(f"Facebook: bad graph_version {version!r}: use the form v25.0")
        return version

    def _as_photo(self, message: Message) -> bool:
        return bool(self.setting("photo")) and bool(message.image_url)

    def _client(self) -> httpx.Client:
        return http.client(self.base_url(), timeout=self.timeout())

    # --- requests -----------------------------------------------------------------------------

    def _publish(self, api: httpx.Client, token: str, path: str, form: dict[str, str]) -> dict[str, Any]:
        """POST a publishing call; a 2xx without an id means the post may exist (OutcomeUnknown)."""
        data = {key: value for key, value in form.items() if value}
        body, status = self._answer(
            api, token, "POST", path, publishing=True, data={**data, "access_token": token}
        )
        if not body.get("id"):
            raise self.no_id(f"POST {path}", status, publishing=True)
        return body

    def _call(
        self, api: httpx.Client, token: str, method: str, path: str, *, publishing: bool, **kwargs: Any
    ) -> dict[str, Any]:
        """One Graph request: the JSON object it answered, or the DeliveryError its answer means."""
        return self._answer(api, token, method, path, publishing=publishing, **kwargs)[0]

    def _answer(
        self, api: httpx.Client, token: str, method: str, path: str, *, publishing: bool, **kwargs: Any
    ) -> tuple[dict[str, Any], int]:
        """One Graph request: the JSON object it answered and its status, or the DeliveryError its
        answer means. ``publishing``: whether it can make a post (POST /feed, /photos)."""
        if method in ("GET", "DELETE"):  # no body: the token goes in a header, never in the URL
            kwargs["headers"] = {"Authorization": f"Bearer {token}"}
        action = f"{method} {path}"
        try:
            response = http.request(api, method, path, publishing=publishing, **kwargs)
        except DeliveryError as exc:  # transport failures, already redacted; say which call
            exc.args = (f"{self.label} {action}: {_scrub(str(exc), token)}",)
            raise
        body, status = json_object(response.content), response.status_code
        error = body.get("error")
        if isinstance(error, dict) or not response.is_success:
            raise self._error(error if isinstance(error, dict) else None, response, action, token, publishing)
        if not body:
            raise self.no_id(action, status, publishing=publishing)
        return body, status

    def _error(
        self,
        error: Mapping[str, Any] | None,
        response: httpx.Response,
        action: str,
        token: str,
        publishing: bool,
    ) -> DeliveryError:
        """The DeliveryError for an error answer, by the table (errors.ERRORS): a Graph error body
        by its code, an answer without one by its HTTP status."""
        status = response.status_code
        said, code, subcode = "", None, None
        if error is not None:
            code, subcode = table_code(error, status), as_int(error.get("error_subcode"))
            ref = [f"code {error.get('code')}"] + ([f"subcode {subcode}"] if subcode else [])
            if error.get("fbtrace_id"):
                ref.append(f"fbtrace_id {error['fbtrace_id']}")
            said = f"{_scrub(str(error.get('message') or ''), token)[:300]} [{', '.join(ref)}]".strip()
        rule = ERRORS.rule(status, code)
        if (as_int(error.get("code")) if error else None, subcode) == MISSING_OBJECT:
            rule = dataclasses.replace(rule, error=ObjectMissing)  # a PermanentError still
        exc = self.network_error(
            rule,
            action,
            publishing=publishing,
            http_status=status,
            said=said,
            # Graph sends no Retry-After: its usage headers say how long (errors.retry_after_from).
            retry_after=(wait := retry_after_from(response.headers)),
            wait=wait,
            why=TOKEN_SUBCODES.get(subcode or 0, "the token was rejected"),  # its words are in said
            hint=" (check page_id)" if subcode == 33 else "",  # 33: the object does not exist
        )
        exc.args = (_scrub(str(exc), token),)
        return exc

    def _permalink(self, api: httpx.Client, token: str, version: str, post_id: str) -> str:
        """The post's permalink_url; on any failure the plain URL (the post exists already)."""
        fallback = f"https://www.facebook.com/{post_id}"
        try:
            body = self._call(
                api,
                token,
                "GET",
                f"/{version}/{post_id}",
                publishing=False,
                params={"fields": "permalink_url"},
            )
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
        # A look-up publishes nothing: its lost answer or 5xx is a plain retry, never uncertain.
        feed = self._call(api, token, "GET", feed_path, publishing=False, params=params)
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


def _graph_id(value: str, what: str) -> str:
    """A Graph object id for a URL path (digits, a Page post's "<page>_<post>"), or PermanentError."""
    if not re.fullmatch(r"\d+(_\d+)?", value):
        raise PermanentError(f"Facebook: the delivery names no {what} ({value[:80]!r})")
    return value


def _post_id(delivery: Delivery) -> str:
    """The Page post's id, from what the send recorded."""
    sent = delivery.sent_details or {}
    return _graph_id(str(sent.get("post_id") or delivery.external_id or "").strip(), "Page post id")


def _caption(message: Message) -> str:
    """A photo post's caption: the text, and the link after it (/photos has no `link` field)."""
    if message.link and message.link not in message.text:
        return f"{message.text}\n\n{message.link}".strip()
    return message.text


def _scrub(text: str, token: str) -> str:
    """Text without the token (even a bare one Graph might echo) and other credentials."""
    if token:
        text = text.replace(token, "<redacted>")
    return redact(text)
