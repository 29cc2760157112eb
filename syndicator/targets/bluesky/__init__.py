"""Bluesky target: AT Protocol XRPC over httpx, logged in with a handle and an app password.

A post is one ``com.atproto.repo.createRecord`` of an ``app.bsky.feed.post``: the rendered text
(≤ 300 graphemes, syndicator.formatting), its link and hashtag facets with UTF-8 byte offsets
(richtext.py), ``langs`` from the post's language, ``createdAt``, and a link card
(``app.bsky.embed.external``) whose thumbnail is the post's image sent with ``uploadBlob``.

Sessions: ``createSession`` trades the app password for an access JWT (short-lived) and a refresh
JWT. Both live only in this process's memory, keyed by target, service, handle and a digest of the
password (a changed password logs in anew); nothing is stored or logged. When the service says
the access token expired, the session is refreshed once (``refreshSession``); if the refresh
token is dead too, a new ``createSession``; if even a brand-new session is refused as expired,
the service (or its clock) is broken for every post, not for this one: TargetBroken, so the target
pauses instead of spending createSession's own rate limit (30 per 5 minutes) on each delivery.
The request a token was refused for never ran, so repeating it cannot post twice.

Each process (Celery prefork child) logs in for itself; threads in one process share a session,
and one lock per session key makes concurrent refreshes collapse into one (a refresh JWT rotates).
The error table (``ERRORS``) and the session cache are in xrpc.py.

createRecord takes no idempotency key, so a post whose answer was lost is ``uncertain``; ``verify``
then looks for it among the account's newest posts (listRecords) by its exact text, made after
the delivery was, as other networks that can list recent posts do.
"""

from __future__ import annotations

import hashlib
import logging
import re
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import httpx
from django.conf import settings

from syndicator.errors import DeliveryError, OutcomeUnknown, PermanentError, TargetBroken, TransientError
from syndicator.redact import redact
from syndicator.targets import http
from syndicator.targets.base import Capabilities, HttpAdapter, SendResult, register
from syndicator.targets.bluesky import xrpc
from syndicator.targets.bluesky.richtext import facets
from syndicator.targets.bluesky.text import RULES as TEXT_RULES
from syndicator.targets.bluesky.xrpc import ERRORS, RATE_LIMIT_HEADERS, Session, SessionRefused
from syndicator.targets.config import URL, Setting
from syndicator.targets.faults import Rule, json_object, retry_after
from syndicator.targets.images import download_image
from syndicator.textrules import plain_text, truncate

if TYPE_CHECKING:
    from syndicator.formatting import Message
    from syndicator.models import Delivery

log = logging.getLogger(__name__)

DEFAULT_SERVICE = "https://bsky.social"
POST = "app.bsky.feed.post"
CREATE = "com.atproto.repo.createRecord"
LIST = "com.atproto.repo.listRecords"
LOGIN = "com.atproto.server.createSession"
DELETE = "com.atproto.repo.deleteRecord"
THUMB_MAX_BYTES = 1_000_000  # app.bsky.embed.external#external thumb: maxSize 1000000
LOOKUP_LIMIT = 100  # listRecords' largest page: how far back an uncertain post is looked for
CARD_DESCRIPTION_MAX = 300  # a card shows two or three lines; the lexicon sets no limit
_LANG = re.compile(r"[A-Za-z]{2,3}(?:-[A-Za-z0-9]{1,8})*")  # BCP 47, as the langs field requires


@register
class BlueskyAdapter(HttpAdapter):
    """Posts to a Bluesky account (any AT Protocol PDS) with link facets, tags and a link card."""

    kind = "bluesky"
    label = "Bluesky"
    documented_secrets = ("BLUESKY_APP_PASSWORD",)  # README: connecting the networks
    default_base_url = DEFAULT_SERVICE  # the account's PDS / entryway: inherited as base_url
    text = TEXT_RULES
    errors = ERRORS
    # com.atproto.repo.deleteRecord removes a post. putRecord could overwrite the record, but
    # Bluesky's app offers no editing of posts and shows no edits (docs/networks.md): posts are
    # declared not editable rather than changed where readers are not told.
    capabilities = Capabilities(delete=True, note="deletes its posts; Bluesky posts cannot be edited")
    settings_spec = (
        Setting("handle", "Account handle (e.g. news.example.org) or DID to log in as", required=True),
        # The name of base_url before the network contract: targets made then (and the README's
        # example) still name their PDS so; base_url wins when both are set.
        Setting("service_url", "Older name of base_url (the account's PDS / entryway)", type=URL),
        Setting(
            "card",
            "Attach a link card (app.bsky.embed.external) for the post's link",
            type=bool,
            default=True,
        ),
        Setting("thumbnail", "Upload the post's image as the link card's thumbnail", type=bool, default=True),
    )

    # --- the contract ---------------------------------------------------------------------------

    def send(self, message: Message, delivery: Delivery) -> SendResult:
        """createRecord of an app.bsky.feed.post; the record's at:// URI and its bsky.app URL."""
        password = self.secret()
        with self._client() as client:
            record: dict[str, Any] = {
                "$type": POST,
                "text": message.text,
                "createdAt": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            }
            if found := facets(message.text, message.link):
                record["facets"] = found
            if (lang := message.language.replace("_", "-").strip()) and _LANG.fullmatch(lang):
                record["langs"] = [lang]
            if message.link and self.setting("card"):
                record["embed"] = self._card(client, password, message, delivery)
            answer, session = self._authed(
                client,
                password,
                "POST",
                CREATE,
                publishing=True,
                json=lambda s: {"repo": s.did, "collection": POST, "record": record},
            )
        return self._result(answer, session, CREATE, publishing=True)

    def verify(self, delivery: Delivery) -> SendResult | None:
        """Look an uncertain delivery's post up among the account's newest posts (listRecords): the
        same text, created after the delivery was (so an earlier post of the same text is not it).

        The look-up publishes nothing: its failures (a lost answer, a 5xx) are plain retries."""
        text = delivery.rendered_text or self.render(delivery).text
        not_before = delivery.created_at - timedelta(minutes=1)  # our clock against our own createdAt
        password = self.secret()
        with self._client() as client:
            answer, session = self._authed(
                client,
                password,
                "GET",
                LIST,
                publishing=False,
                params=lambda s: {"repo": s.did, "collection": POST, "limit": LOOKUP_LIMIT},
            )
        for item in answer.get("records") or []:
            value = item.get("value") if isinstance(item, dict) else None
            if isinstance(value, dict) and value.get("text") == text and _created(value) >= not_before:
                return self._result(item, session, LIST, publishing=False)
        raise OutcomeUnknown(
            f"Bluesky: not among the account's {LOOKUP_LIMIT} newest posts, so probably not published: "
            "retry it to send it"
        )

    def _result(self, record: dict, session: Session, nsid: str, *, publishing: bool) -> SendResult:
        """The at:// URI of a record as external_id, and its bsky.app URL."""
        uri = str(record.get("uri") or "")
        if not uri.startswith("at://"):
            raise self.no_id(nsid, 200, publishing=publishing)  # _answer passed only 2xx
        rkey = uri.rsplit("/", 1)[-1]
        handle = session.handle or self._handle()
        return SendResult(
            external_id=uri,
            external_url=f"https://bsky.app/profile/{handle}/post/{rkey}",
            # What deleteRecord needs (repo, collection, rkey), and the cid a swapRecord would name.
            details={"cid": record.get("cid", ""), "did": session.did, "uri": uri, "rkey": rkey},
        )

    def delete(self, delivery: Delivery) -> None:
        """com.atproto.repo.deleteRecord of the post's record (repo, collection and rkey from its
        at:// URI). The lexicon reads "delete a repository record, or ensure it doesn't exist": a
        record already gone answers success, so a repeat is harmless."""
        uri = str(delivery.sent_details.get("uri") or delivery.external_id or "")
        parts = uri.removeprefix("at://").split("/")
        if not uri.startswith("at://") or len(parts) != 3 or parts[1] != POST or not parts[2]:
            raise PermanentError(f"Bluesky: the delivery names no post record ({uri!r})")
        repo, _, rkey = parts
        password = self.secret()
        with self._client() as client:
            self._authed(
                client,
                password,
                "POST",
                DELETE,
                publishing=False,
                allow_empty=True,
                json={"repo": repo, "collection": POST, "rkey": rkey},
            )

    def check(self) -> str:
        """Log in anew (createSession) and ask whose session it is (getSession)."""
        password = self.secret()
        with self._client() as client:
            session = self._login(client, password)  # a check proves the password works now
            with xrpc.key_lock(key := self._key(password)):
                xrpc.sessions[key] = session
            info, session = self._authed(
                client, password, "GET", "com.atproto.server.getSession", publishing=False
            )
        if info.get("active") is False:
            raise TargetBroken(
                f"Bluesky: account @{session.handle} is not active ({info.get('status', '?')})"
            )
        return f"ok: posting as @{info.get('handle') or session.handle} ({info.get('did') or session.did})"

    # --- sessions -------------------------------------------------------------------------------

    def _key(self, password: str) -> tuple:
        digest = hashlib.sha256(password.encode()).hexdigest()[:16]  # a new password, a new session
        return (self.target.pk, self.base_url(), self._handle(), digest)

    def _authed(
        self,
        client: httpx.Client,
        password: str,
        method: str,
        nsid: str,
        *,
        publishing: bool,
        allow_empty: bool = False,
        **kwargs: Any,
    ) -> tuple[dict, Session]:
        """Call an XRPC method with the session's access token; on an expired or invalid token
        refresh once, then log in anew, then give up (TargetBroken). Its JSON answer and the session.

        A keyword argument may be a function of the session (the repo is the session's DID)."""
        session = self._renew(client, password, stale=None, login=True)
        tried: list[str] = []  # how the session was renewed so far: "refresh", "login"
        while True:
            call = {name: value(session) if callable(value) else value for name, value in kwargs.items()}
            response = self._request(client, method, nsid, publishing, bearer=session.access_jwt, **call)
            if not xrpc.session_refused(response):
                return self._answer(response, nsid, publishing, allow_empty=allow_empty), session
            if "login" in tried:
                raise self._error(response, nsid, publishing)
            log.info(
                "Bluesky target %s: access token refused (%s %s); renewing the session",
                self.target.name,
                response.status_code,
                xrpc.error_name(response),
            )
            login = "refresh" in tried
            tried.append("login" if login else "refresh")
            session = self._renew(client, password, stale=session, login=login)

    def _renew(self, client: httpx.Client, password: str, *, stale: Session | None, login: bool) -> Session:
        """The cached session unless it is ``stale``; else a refreshed one (or a new login) under this
        key's lock, so threads that find the same token expired renew it once, not each."""
        key = self._key(password)
        with xrpc.key_lock(key):
            current = xrpc.sessions.get(key)
            if current is not None and current is not stale:
                return current
            session = None
            if not login and current is not None:
                session = self._refresh(client, current)
            if session is None:
                session = self._login(client, password)
            xrpc.sessions[key] = session
            return session

    def _login(self, client: httpx.Client, password: str) -> Session:
        """com.atproto.server.createSession with the handle and the app password."""
        response = self._request(
            client,
            "POST",
            LOGIN,
            False,
            json={"identifier": self._handle(), "password": password},
        )
        return self._session(self._answer(response, LOGIN, False))

    def _refresh(self, client: httpx.Client, current: Session) -> Session | None:
        """com.atproto.server.refreshSession; None when the refresh token is refused too (log in)."""
        nsid = "com.atproto.server.refreshSession"
        response = self._request(client, "POST", nsid, False, bearer=current.refresh_jwt)
        if xrpc.session_refused(response):
            log.info("Bluesky target %s: refresh token refused; logging in anew", self.target.name)
            return None
        return self._session(self._answer(response, nsid, False))

    def _session(self, answer: dict) -> Session:
        tokens = (answer.get("accessJwt"), answer.get("refreshJwt"), answer.get("did"))
        if not all(isinstance(value, str) and value for value in tokens):
            raise TargetBroken(f"Bluesky: {self.base_url()} answered a login without tokens: check base_url")
        return Session(
            did=answer["did"],
            handle=str(answer.get("handle") or self._handle()),
            access_jwt=answer["accessJwt"],
            refresh_jwt=answer["refreshJwt"],
        )

    # --- requests -------------------------------------------------------------------------------

    def _request(
        self,
        client: httpx.Client,
        method: str,
        nsid: str,
        publishing: bool,
        *,
        bearer: str = "",
        **kwargs: Any,
    ) -> httpx.Response:
        """One XRPC request; only a call that publishes (createRecord) can be left uncertain."""
        headers = {**kwargs.pop("headers", {}), **({"Authorization": f"Bearer {bearer}"} if bearer else {})}
        try:
            return http.request(
                client, method, f"/xrpc/{nsid}", publishing=publishing, headers=headers, **kwargs
            )
        except DeliveryError as exc:  # TransientError or OutcomeUnknown, already redacted
            exc.args = (f"Bluesky {nsid}: {exc}",)
            raise

    def _answer(
        self, response: httpx.Response, nsid: str, publishing: bool, *, allow_empty: bool = False
    ) -> dict:
        """The JSON object of a 2xx answer; the mapped DeliveryError otherwise. ``allow_empty``: a
        method whose output is optional (deleteRecord's ``commit``) may answer without one."""
        if not response.is_success:
            raise self._error(response, nsid, publishing)
        body = json_object(response.content)
        if not body and not allow_empty:
            if publishing:  # it said yes in a shape we cannot read: the post probably exists
                raise self.no_id(nsid, response.status_code, publishing=True)
            # Every XRPC method answers a JSON object: base_url points somewhere else.
            raise TargetBroken(f"Bluesky {nsid}: {self.base_url()} answered without JSON: check base_url")
        return body

    def _error(self, response: httpx.Response, nsid: str, publishing: bool) -> DeliveryError:
        """The DeliveryError for an XRPC error answer, by the table (xrpc.ERRORS); redacted."""
        name, words = xrpc.error_name(response), xrpc.error_message(response)
        rule = xrpc.rule_for(response)
        if issubclass(rule.error, SessionRefused):
            # Reached only once a renewal was refused too: the target is broken for every post.
            rule = Rule(TargetBroken, rule.reason, rule.advice)
        return self.network_error(
            rule,
            nsid,
            publishing=publishing,
            http_status=response.status_code,
            said=self._scrub(redact(": ".join(part for part in (name, words) if part)))[:300],
            retry_after=retry_after(response.headers, RATE_LIMIT_HEADERS),
            service=self.base_url(),
            unsure="the post may be published" if publishing else "nothing was posted",
        )

    def _scrub(self, text: str) -> str:
        """The service's words without the app password (``redact`` knows only secrets' shapes,
        and an answer may echo the password back)."""
        try:
            password = self.secret()
        except TargetBroken:
            return text
        return text.replace(password, "<redacted>") if password else text

    # --- the link card --------------------------------------------------------------------------

    def _card(self, client: httpx.Client, password: str, message: Message, delivery: Delivery) -> dict:
        """app.bsky.embed.external for the post's link: title, description, thumbnail if any."""
        post = delivery.post
        external: dict[str, Any] = {
            "uri": message.link,
            "title": " ".join(str(post.title or "").split()),
            "description": truncate(
                plain_text(str(post.summary or post.content or ""), paragraphs=False), CARD_DESCRIPTION_MAX
            ),
        }
        wants_thumb = bool(message.image_url) and self.setting("thumbnail")
        if wants_thumb and (thumb := self._thumbnail(client, password, message.image_url)):
            external["thumb"] = thumb
        return {"$type": "app.bsky.embed.external", "external": external}

    def _thumbnail(self, client: httpx.Client, password: str, image_url: str) -> dict | None:
        """The image uploaded with uploadBlob, as a blob ref; None (a card without it) on any failure."""
        try:
            content, content_type = download_image(
                image_url,
                timeout=self.timeout() or settings.SYNDICATOR_TARGET_TIMEOUT,
                max_bytes=THUMB_MAX_BYTES,
            )
            answer, _ = self._authed(
                client,
                password,
                "POST",
                "com.atproto.repo.uploadBlob",
                publishing=False,  # a blob is private until a post names it
                content=content,
                headers={"Content-Type": content_type},
            )
            blob = answer.get("blob")
            if not isinstance(blob, dict) or not (blob.get("ref") or {}).get("$link"):
                raise ValueError("uploadBlob answered without a blob ref")
        except (ValueError, TransientError, PermanentError) as exc:
            log.warning(
                "Bluesky target %s: no thumbnail (%s: %s)",
                self.target.name,
                type(exc).__name__,
                redact(str(exc))[:300],
            )
            return None
        return blob

    # --- settings -------------------------------------------------------------------------------

    def _client(self) -> httpx.Client:
        return http.client(self.base_url(), timeout=self.timeout())

    def base_url(self) -> str:
        """The account's PDS: base_url, else the older service_url, else bsky.social."""
        if not self.target.settings.get("base_url") and (older := self.setting("service_url")):
            return str(older).rstrip("/")
        return super().base_url().rstrip("/")

    def _handle(self) -> str:
        return str(self.setting("handle") or "").strip().removeprefix("@")


def _created(record: dict) -> datetime:
    """A record's createdAt; the distant past when it has none a client could read."""
    try:
        created = datetime.fromisoformat(str(record.get("createdAt")).replace("Z", "+00:00"))
    except ValueError:
        return datetime.min.replace(tzinfo=UTC)
    return created if created.tzinfo else created.replace(tzinfo=UTC)
