"""An emulator of the AT Protocol XRPC methods syndicator uses, and the conformance Harness for "bluesky".

    with BlueskyEmulator() as pds:
        pds.base_url                    # a target's service_url
        pds.expire_access_tokens()      # every access token issued so far is now expired
        pds.expire_refresh_tokens()     # and every refresh token
        pds.fail_method("com.atproto.repo.createRecord", status=500, json=...)  # one scripted fault
        pds.posts()                     # the posts it accepted, in order

Routes: com.atproto.server.createSession / refreshSession / getSession, com.atproto.repo.
uploadBlob / createRecord, and GET /images/{name} (images for the adapter to download). Requests
are checked as the service checks them, and stricter where the brief of issue #6 asks: text ≤ 300
graphemes and ≤ 3000 bytes; every facet's byte range inside the text and on UTF-8 character
boundaries, a link facet covering exactly its uri's text, a tag facet exactly "#tag"; langs BCP 47;
createdAt ISO 8601 with a time zone; a thumb blob ref naming a blob this session uploaded, with its
size and image type; access tokens on every call, refresh tokens only on refreshSession.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import re
import secrets
import threading
import time
from datetime import datetime
from typing import Any

import regex

from syndicator.errors import OutcomeUnknown, PermanentError, RateLimited, TargetBroken, TransientError
from tests.emulators.base import EmulatedRequest, Emulator, HttpHarness, Reply

HANDLE = "news.syndicator.test"
DID = "did:plc:syndicatortest0000000000"
APP_PASSWORD = "abcd-efgh-ijkl-mnop"  # the shape of a Bluesky app password
THUMB_MAX_BYTES = 1_000_000
# A valid 1×1 white PNG (the same as the X emulator's).
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c489"
    "0000000b49444154789c63f80f040009fb03fdfb5e6b2b0000000049454e44ae426082"
)
_LANG = re.compile(r"[A-Za-z]{2,3}(?:-[A-Za-z0-9]{1,8})*")
_TID_CHARS = "234567abcdefghijklmnopqrstuvwxyz"


def xrpc_error(name: str, message: str) -> dict[str, str]:
    """An XRPC error body."""
    return {"error": name, "message": message}


def graphemes(text: str) -> int:
    return len(regex.findall(r"\X", text))


def _jwt(scope: str, subject: str, lifetime: int) -> str:
    """A JWT-shaped token (unsigned: the emulator keeps its own table of what it issued)."""

    def part(data: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    now = int(time.time())
    claims = {"scope": scope, "sub": subject, "iat": now, "exp": now + lifetime, "jti": secrets.token_hex(8)}
    return f"{part({'typ': 'at+jwt', 'alg': 'HS256'})}.{part(claims)}.{secrets.token_urlsafe(32)}"


class BlueskyEmulator(Emulator):
    """A PDS on 127.0.0.1 with one account."""

    def __init__(self, *, handle: str = HANDLE, did: str = DID, password: str = APP_PASSWORD) -> None:
        super().__init__()
        self.handle, self.did, self.password = handle, did, password
        self.images: dict[str, tuple[bytes, str]] = {"photo.png": (PNG, "image/png")}
        self.blobs: dict[str, dict[str, Any]] = {}  # cid → {"size", "mimeType"}
        self.tokens: dict[str, dict[str, Any]] = {}  # token → {"kind": access|refresh, "expired": bool}
        self.logins = 0
        self.refreshes = 0
        self.issue_expired = False  # hand out access tokens that are already expired (a broken PDS)
        self.answer_late = 0.0  # seconds the next createRecord's answer waits after the post is made
        self._method_faults: dict[str, list[Reply]] = {}
        self.records: dict[str, dict[str, Any]] = {}  # rkey → the post record, while it exists
        self.deleted: list[str] = []  # rkeys deleted
        self._tids = itertools.count(int(time.time() * 1_000_000))
        self._tokens_lock = threading.Lock()
        x = "/xrpc/"
        self.route("POST", x + "com.atproto.server.createSession", self._create_session)
        self.route("POST", x + "com.atproto.server.refreshSession", self._refresh_session)
        self.route("GET", x + "com.atproto.server.getSession", self._get_session)
        self.route("POST", x + "com.atproto.repo.uploadBlob", self._upload_blob)
        self.route("POST", x + "com.atproto.repo.createRecord", self._create_record)
        self.route("POST", x + "com.atproto.repo.deleteRecord", self._delete_record)
        self.route("GET", x + "com.atproto.repo.listRecords", self._list_records)
        self.route("GET", r"/images/(?P<name>[^/]+)", self._image)

    # --- what tests drive and read ----------------------------------------------------------------

    def posts(self) -> list[dict[str, Any]]:
        """The posts accepted so far, in order: {"uri", "rkey", "text", "record"}."""
        return [item for item in self.accepted if item["kind"] == "post"]

    def image_url(self, name: str = "photo.png") -> str:
        return f"{self.base_url}/images/{name}"

    def expire_access_tokens(self) -> None:
        """Every access token issued so far answers ExpiredToken from now on."""
        self._expire("access")

    def expire_refresh_tokens(self) -> None:
        """Every refresh token issued so far answers ExpiredToken from now on."""
        self._expire("refresh")

    def issued_tokens(self) -> list[str]:
        """Every token handed out (for tests that search logs for secrets)."""
        with self._tokens_lock:
            return list(self.tokens)

    def fail_method(self, nsid: str, count: int = 1, **reply: Any) -> None:
        """Answer the next ``count`` calls of one XRPC method with this reply (Reply's fields)."""
        with self._lock:
            self._method_faults.setdefault(nsid, []).extend(Reply(**reply) for _ in range(count))

    def dispatch(self, request: EmulatedRequest) -> Reply:
        nsid = request.path.removeprefix("/xrpc/")
        with self._lock:
            queued = self._method_faults.get(nsid)
            if queued and not self._script:
                self.requests.append(request)
                return queued.pop(0)
        return super().dispatch(request)

    # --- sessions -------------------------------------------------------------------------------

    def _issue(self) -> dict[str, Any]:
        access, refresh = (
            _jwt("com.atproto.access", self.did, 7200),
            _jwt("com.atproto.refresh", self.did, 86400),
        )
        with self._tokens_lock:
            self.tokens[access] = {"kind": "access", "expired": self.issue_expired}
            self.tokens[refresh] = {"kind": "refresh", "expired": False}
        return {
            "accessJwt": access,
            "refreshJwt": refresh,
            "handle": self.handle,
            "did": self.did,
            "active": True,
        }

    def _expire(self, kind: str) -> None:
        with self._tokens_lock:
            for state in self.tokens.values():
                if state["kind"] == kind:
                    state["expired"] = True

    def _bearer(self, request: EmulatedRequest, kind: str) -> Reply | None:
        """None when the request carries a live token of this kind, else the service's error."""
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            return Reply(401, json=xrpc_error("AuthenticationRequired", "Authentication Required"))
        with self._tokens_lock:
            state = self.tokens.get(token)
        if state is None or state["kind"] != kind:
            return Reply(400, json=xrpc_error("InvalidToken", "Token could not be verified"))
        if state["expired"]:
            return Reply(400, json=xrpc_error("ExpiredToken", "Token has expired"))
        return None

    def _create_session(self, request: EmulatedRequest) -> Reply:
        body = request.json if isinstance(request.json, dict) else {}
        if not isinstance(body.get("identifier"), str) or not isinstance(body.get("password"), str):
            return Reply(400, json=xrpc_error("InvalidRequest", "Input must have the property identifier"))
        if body["identifier"] not in (self.handle, self.did) or body["password"] != self.password:
            return Reply(401, json=xrpc_error("AuthenticationRequired", "Invalid identifier or password"))
        self.logins += 1
        return Reply(200, json=self._issue())

    def _refresh_session(self, request: EmulatedRequest) -> Reply:
        if (denied := self._bearer(request, "refresh")) is not None:
            return denied
        token = request.headers["authorization"].partition(" ")[2]
        with self._tokens_lock:
            self.tokens[token]["expired"] = True  # a refresh token is used once (it rotates)
        self.refreshes += 1
        return Reply(200, json=self._issue())

    def _get_session(self, request: EmulatedRequest) -> Reply:
        if (denied := self._bearer(request, "access")) is not None:
            return denied
        return Reply(200, json={"handle": self.handle, "did": self.did, "active": True})

    # --- records --------------------------------------------------------------------------------

    def _upload_blob(self, request: EmulatedRequest) -> Reply:
        if (denied := self._bearer(request, "access")) is not None:
            return denied
        mime = request.headers.get("content-type", "").split(";")[0].strip()
        if not request.body:
            return Reply(400, json=xrpc_error("InvalidRequest", "Request body is empty"))
        if len(request.body) > 50_000_000:
            return Reply(413, json=xrpc_error("PayloadTooLarge", "request entity too large"))
        cid = "bafkrei" + secrets.token_hex(26)
        self.blobs[cid] = {"size": len(request.body), "mimeType": mime, "bytes": request.body}
        self.record("blob", cid=cid, size=len(request.body), mimeType=mime)
        blob = {"$type": "blob", "ref": {"$link": cid}, "mimeType": mime, "size": len(request.body)}
        return Reply(200, json={"blob": blob})

    def _create_record(self, request: EmulatedRequest) -> Reply:
        if (denied := self._bearer(request, "access")) is not None:
            return denied
        body = request.json if isinstance(request.json, dict) else {}
        if body.get("repo") not in (self.did, self.handle):
            return Reply(400, json=xrpc_error("InvalidRequest", "Invalid repo: not this session's account"))
        if body.get("collection") != "app.bsky.feed.post":
            return Reply(400, json=xrpc_error("InvalidRequest", "Invalid collection"))
        record = body.get("record")
        problem = (
            validate_post(record, self.blobs) if isinstance(record, dict) else "Record must be an object"
        )
        if problem:
            return Reply(
                400, json=xrpc_error("InvalidRequest", f"Invalid app.bsky.feed.post record: {problem}")
            )
        rkey = self._tid()
        uri = f"at://{self.did}/app.bsky.feed.post/{rkey}"
        cid = "bafyrei" + secrets.token_hex(26)
        self.record("post", uri=uri, rkey=rkey, cid=cid, text=record["text"], record=record)
        with self._lock:
            self.records[rkey] = record
        now = int(time.time())
        headers = {
            "ratelimit-limit": "5000",
            "ratelimit-remaining": "4999",
            "ratelimit-reset": str(now + 3600),
        }
        delay, self.answer_late = self.answer_late, 0.0
        return Reply(
            200, json={"uri": uri, "cid": cid, "validationStatus": "valid"}, headers=headers, delay=delay
        )

    def _delete_record(self, request: EmulatedRequest) -> Reply:
        """ "Delete a repository record, or ensure it doesn't exist" (the lexicon): a record that is
        not there answers success too, without a commit (nothing changed)."""
        if (denied := self._bearer(request, "access")) is not None:
            return denied
        body = request.json if isinstance(request.json, dict) else {}
        if body.get("repo") not in (self.did, self.handle):
            return Reply(400, json=xrpc_error("InvalidRequest", "Invalid repo: not this session's account"))
        rkey = body.get("rkey")
        if body.get("collection") != "app.bsky.feed.post" or not isinstance(rkey, str) or not rkey:
            return Reply(
                400, json=xrpc_error("InvalidRequest", "Input must have the properties collection, rkey")
            )
        with self._lock:
            if self.records.pop(rkey, None) is None:
                return Reply(200, json={})
            self.deleted.append(rkey)
        commit = {"cid": "bafyrei" + secrets.token_hex(26), "rev": self._tid()}
        return Reply(200, json={"commit": commit})

    def _list_records(self, request: EmulatedRequest) -> Reply:
        """Public, like the real one: the collection's records, newest first."""
        params = request.params()
        if (
            params.get("repo") not in (self.did, self.handle)
            or params.get("collection") != "app.bsky.feed.post"
        ):
            return Reply(400, json=xrpc_error("InvalidRequest", "Could not find repo or collection"))
        limit = int(params.get("limit", 50))
        if not 1 <= limit <= 100:
            return Reply(400, json=xrpc_error("InvalidRequest", "limit must be between 1 and 100"))
        newest = [p for p in reversed(self.posts()) if p["rkey"] in self.records][:limit]
        records = [{"uri": p["uri"], "cid": p["cid"], "value": p["record"]} for p in newest]
        return Reply(200, json={"records": records})

    def _image(self, request: EmulatedRequest) -> Reply:
        found = self.images.get(request.match["name"] if request.match else "")
        if found is None:
            return Reply(404, body=b"no such image")
        return Reply(200, body=found[0], headers={"Content-Type": found[1]})

    def _tid(self) -> str:
        """A record key in TID form: 13 base32-sortable characters of a microsecond clock."""
        value, chars = next(self._tids) << 10, []
        for _ in range(13):
            chars.append(_TID_CHARS[value & 31])
            value >>= 5
        return "".join(reversed(chars))


def validate_post(record: dict[str, Any], blobs: dict[str, dict[str, Any]]) -> str:
    """What is wrong with an app.bsky.feed.post record, or "" when it is valid."""
    text = record.get("text")
    if record.get("$type") != "app.bsky.feed.post" or not isinstance(text, str):
        return "Record/$type must be app.bsky.feed.post and Record/text a string"
    if graphemes(text) > 300:
        return f"Record/text must not be longer than 300 graphemes (it has {graphemes(text)})"
    data = text.encode("utf-8")
    if len(data) > 3000:
        return "Record/text must not be longer than 3000 characters"
    try:
        datetime.fromisoformat(
            str(record.get("createdAt")).replace("Z", "+00:00")
        ).utcoffset().total_seconds()
    except (ValueError, AttributeError):
        return "Record/createdAt must be an valid atproto datetime (both RFC-3339 and ISO-8601)"
    langs = record.get("langs", [])
    if not isinstance(langs, list) or len(langs) > 3 or not all(_LANG.fullmatch(str(lang)) for lang in langs):
        return "Record/langs must be at most 3 BCP 47 language tags"
    for n, facet in enumerate(record.get("facets", [])):
        if problem := _facet_problem(data, facet):
            return f"Record/facets/{n}: {problem}"
    embed = record.get("embed")
    if embed is not None:
        return _embed_problem(embed, blobs)
    return ""


def _facet_problem(data: bytes, facet: dict[str, Any]) -> str:
    """Byte range on character boundaries; a link covers exactly its uri, a tag exactly #tag."""
    index = facet.get("index") or {}
    start, end = index.get("byteStart"), index.get("byteEnd")
    if not (isinstance(start, int) and isinstance(end, int) and 0 <= start < end <= len(data)):
        return f"byte range {start}..{end} is outside the text's {len(data)} bytes"
    for at in (start, end):
        if at < len(data) and data[at] & 0xC0 == 0x80:  # a UTF-8 continuation byte
            return f"byte offset {at} falls inside a character"
    covered = data[start:end].decode("utf-8")
    features = facet.get("features") or []
    if len(features) != 1:
        return "one feature per facet expected"
    feature = features[0]
    kind = feature.get("$type")
    if kind == "app.bsky.richtext.facet#link":
        if covered != feature.get("uri"):
            return f"link facet covers {covered!r}, not its uri {feature.get('uri')!r}"
    elif kind == "app.bsky.richtext.facet#tag":
        tag = feature.get("tag")
        if not isinstance(tag, str) or covered not in (f"#{tag}", f"＃{tag}") or graphemes(tag) > 64:
            return f"tag facet covers {covered!r}, not #{tag}"
    else:
        return f"unknown facet feature {kind!r}"
    return ""


def _embed_problem(embed: dict[str, Any], blobs: dict[str, dict[str, Any]]) -> str:
    external = embed.get("external") if embed.get("$type") == "app.bsky.embed.external" else None
    if not isinstance(external, dict):
        return "Record/embed must be app.bsky.embed.external with an external object"
    if not all(isinstance(external.get(key), str) for key in ("uri", "title", "description")):
        return "Record/embed/external must have uri, title and description strings"
    if not external["uri"].startswith(("https://", "http://")):
        return "Record/embed/external/uri must be a uri"
    thumb = external.get("thumb")
    if thumb is None:
        return ""
    cid = (thumb.get("ref") or {}).get("$link") if isinstance(thumb, dict) else None
    blob = blobs.get(cid or "")
    if thumb.get("$type") != "blob" or blob is None:
        return "Record/embed/external/thumb should be a blob ref this account uploaded"
    if thumb.get("size") != blob["size"] or thumb.get("mimeType") != blob["mimeType"]:
        return "Record/embed/external/thumb size or mimeType does not match the uploaded blob"
    if not blob["mimeType"].startswith("image/") or blob["size"] > THUMB_MAX_BYTES:
        return "Record/embed/external/thumb must be an image of at most 1000000 bytes"
    return ""


class Harness(HttpHarness):
    """The "bluesky" side of the shared conformance test: a BlueskyEmulator and targets pointing at it."""

    not_found_note = "not among the account's"

    kind = "bluesky"
    PASSWORD_ENV = "SYNDICATOR_TEST_BLUESKY_APP_PASSWORD"
    PASSWORD = APP_PASSWORD
    expected: dict[str, type[Exception]] = {
        "server_error": OutcomeUnknown,  # 500 on createRecord: the record may have been committed
        "unavailable": TransientError,  # 503: nothing was done
        "rate_limited": RateLimited,
        "timeout": OutcomeUnknown,  # createRecord sent, no answer
        "bad_token": TargetBroken,  # createSession refuses the app password
        "rejected_content": PermanentError,  # 400 InvalidRequest on the record
        "login_unavailable": TransientError,  # 502 on createSession: logging in posts nothing
    }

    def __init__(self) -> None:
        self.emulator = BlueskyEmulator()
        self._saved_env: str | None = None

    def __enter__(self) -> Harness:
        self.emulator.start()
        self._saved_env = os.environ.get(self.PASSWORD_ENV)
        os.environ[self.PASSWORD_ENV] = self.PASSWORD
        return self

    def __exit__(self, *exc: object) -> None:
        self.emulator.stop()
        if self._saved_env is None:
            os.environ.pop(self.PASSWORD_ENV, None)
        else:
            os.environ[self.PASSWORD_ENV] = self._saved_env

    def make_target(self, name: str = "bluesky-test", **settings: Any):  # -> Target
        """A saved bluesky Target logging in to the emulator, with a 1 s timeout."""
        from syndicator.models import Target

        values = {"service_url": self.emulator.base_url, "handle": HANDLE, "timeout": 1, **settings}
        return Target.objects.create(name=name, kind="bluesky", settings=values, secret_env=self.PASSWORD_ENV)

    def transient_reply(self) -> Reply:
        """XRPC's 503 is "nothing was done": a plain retry."""
        return Reply(503, json=xrpc_error("NotEnoughResources", "Service Unavailable"))

    def external_id(self, sent: dict[str, Any]) -> str:
        return str(sent["uri"])  # the adapter's external_id is the record's at:// URI

    def script_outage(self, hang: float) -> None:
        api = self.emulator
        create, login = "com.atproto.repo.createRecord", "com.atproto.server.createSession"
        api.fail_method(login, status=502, json=xrpc_error("UpstreamFailure", "Bad Gateway"))
        api.fail_method(create, status=503, json=xrpc_error("NotEnoughResources", "Service Unavailable"))
        limited = {
            "ratelimit-limit": "5000",
            "ratelimit-remaining": "0",
            "ratelimit-reset": str(int(time.time()) + 2),
        }
        api.fail_method(
            create, status=429, json=xrpc_error("RateLimitExceeded", "Rate Limit Exceeded"), headers=limited
        )
        api.fail_method(create, status=504, delay=hang)  # createRecord hangs, no record made

    def outage_served(self) -> bool:
        return not any(self.emulator._method_faults.values())

    def check_after_outage(self, received: list[Any]) -> None:
        from syndicator.models import Delivery

        # The createRecord that hung was looked up with listRecords, not found, and waits.
        hung = Delivery.objects.get(target__kind=self.kind, status="uncertain")
        assert "not among the account's" in hung.last_error

    def secrets(self) -> list[str]:
        return [self.PASSWORD]  # its session tokens are issued at run time: issued_secrets()

    def sent(self) -> list[dict[str, Any]]:
        """The posts the emulator accepted, each with "text", "uri", "rkey" and "record"."""
        return self.emulator.posts()

    def post_text(self, external_id: str) -> str | None:
        """The text of the post record named by its at:// URI; None once deleted."""
        record = self.emulator.records.get(external_id.rsplit("/", 1)[-1])
        return None if record is None else str(record["text"])

    def edit_count(self, external_id: str) -> int:
        """0: Bluesky posts are not edited (capabilities.edit is False)."""
        return 0

    def issued_secrets(self) -> list[str]:
        """Secrets known only at run time: the session tokens the emulator handed out."""
        return self.emulator.issued_tokens()

    def inject(self, mode: str) -> None:
        """Make the next matching request fail the way ``mode`` names (see ``expected``)."""
        create = "com.atproto.repo.createRecord"
        reset = str(int(time.time()) + 3)
        limited = {"ratelimit-limit": "5000", "ratelimit-remaining": "0", "ratelimit-reset": reset}
        faults: dict[str, tuple[str, dict[str, Any]]] = {
            "server_error": (create, {"status": 500, "json": xrpc_error("InternalServerError", "Internal")}),
            "unavailable": (create, {"status": 503, "json": xrpc_error("NotEnoughResources", "Unavailable")}),
            "rate_limited": (
                create,
                {
                    "status": 429,
                    "json": xrpc_error("RateLimitExceeded", "Rate Limit Exceeded"),
                    "headers": limited,
                },
            ),
            "timeout": (create, {"status": 504, "delay": 5.0}),
            "rejected_content": (
                create,
                {"status": 400, "json": xrpc_error("InvalidRequest", "Invalid app.bsky.feed.post record")},
            ),
            "login_unavailable": (
                "com.atproto.server.createSession",
                {"status": 502, "json": xrpc_error("UpstreamFailure", "Bad Gateway")},
            ),
        }
        if mode == "bad_token":
            # The app password was revoked: the sessions die and the next login is refused.
            self.emulator.expire_access_tokens()
            self.emulator.expire_refresh_tokens()
            self.emulator.fail_method(
                "com.atproto.server.createSession",
                status=401,
                json=xrpc_error("AuthenticationRequired", "Invalid identifier or password"),
            )
        elif mode in faults:
            nsid, reply = faults[mode]
            self.emulator.fail_method(nsid, **reply)
        else:
            raise ValueError(f"unknown mode {mode!r}; modes: {', '.join(self.expected)}")
