"""A Telegram Bot API emulator: getMe, getChat, getChatMember, sendMessage, sendPhoto,
editMessageText, editMessageCaption, editMessageMedia and deleteMessage on 127.0.0.1.

It answers like the real server: the token in the path is checked (401 Unauthorized; 404 when
it is not even token-shaped), the chat must exist, HTML is parsed by TDLib's rules, the lengths
are counted after parsing, a group upgraded to a supergroup answers ``migrate_to_chat_id``,
and photo URLs can be made unreachable. ``telegram_parse`` (from telegram_html.py) is that HTML
parser on its own, for tests that want to know whether Telegram would accept a text.

Sent messages stay live with their versions: an edit that changes nothing answers "message is
not modified", an edit of a message that is gone "message to edit not found", a delete of one
that is gone "message to delete not found", and a delete of a message sent 48 hours ago or more
"message can't be deleted" (core.telegram.org/bots/api#deletemessage). The emulator's clock
(``now``) moves with ``advance_clock``, so a test reaches the 48 hours without waiting.

    with TelegramEmulator() as api:
        api.fail_with("Bad Request: chat not found")   # the next call gets this Bot API error
        api.rate_limit_next(retry_after=7)
        api.refuse_photo("https://example.org/big.jpg")
        api.fail_method("deleteMessage", status=502)     # only the next deleteMessage fails
        api.advance_clock(49 * 3600)                     # two days later, for the delete window
        api.messages()                                   # what was posted, in order
        api.message(chat_id, message_id)                 # one message now (None once deleted)
"""

from __future__ import annotations

import itertools
import json
import os
import re
import time
from dataclasses import dataclass, field, replace
from typing import Any

from syndicator.errors import OutcomeUnknown, PermanentError, RateLimited, TargetBroken, TransientError
from tests.emulators.base import EmulatedRequest, Emulator, HttpHarness, Reply
from tests.emulators.telegram_html import telegram_parse

__all__ = ["Harness", "TelegramEmulator", "telegram_parse"]

TOKEN = "7012345678:AAFv3-emulated_Bot-Token_0123456789abcd"  # the shape of a real token
BOT_USERNAME = "nejat_syndicator_bot"
PUBLIC_CHANNEL = "@nejat_news"
PUBLIC_CHANNEL_ID = -1001987654321
PRIVATE_CHANNEL_ID = -1001234567890
OLD_GROUP_ID = -4012345678  # a basic group, upgraded: sends to it answer migrate_to_chat_id
SUPERGROUP_ID = -1005551234567
TEXT_MAX, CAPTION_MAX = 4096, 1024  # code points after entity parsing (TDLib's utf8_length)
DELETE_WINDOW = 48 * 3600  # "sent less than 48 hours ago" (core.telegram.org/bots/api#deletemessage)
NOT_MODIFIED = (
    "Bad Request: message is not modified: specified new message content and reply markup are "
    "exactly the same as a current content and reply markup of the message"
)


@dataclass
class Chat:
    """A chat the emulated bot knows, and the bot's standing in it."""

    id: int
    title: str
    type: str = "channel"
    username: str = ""  # public chats have one
    bot_status: str = "administrator"  # creator | administrator | member | restricted | left | kicked
    can_post: bool = True  # an administrator's can_post_messages (channels) / can_send_messages (groups)
    migrated_to: int | None = None
    next_message_id: itertools.count = field(default_factory=lambda: itertools.count(1))

    def public(self) -> dict[str, Any]:
        """The Chat object the Bot API returns."""
        return {"id": self.id, "type": self.type, "title": self.title} | (
            {"username": self.username} if self.username else {}
        )


def default_chats() -> list[Chat]:
    """A public channel, a private one, and a group that became a supergroup."""
    return [
        Chat(PUBLIC_CHANNEL_ID, "Nejat News", username="nejat_news"),
        Chat(PRIVATE_CHANNEL_ID, "Nejat Editors"),
        Chat(OLD_GROUP_ID, "Nejat Volunteers", type="group", migrated_to=SUPERGROUP_ID),
        Chat(SUPERGROUP_ID, "Nejat Volunteers", type="supergroup", bot_status="member"),
    ]


def error(code: int, description: str, **parameters: Any) -> dict[str, Any]:
    """A Bot API error body."""
    return {"ok": False, "error_code": code, "description": description} | (
        {"parameters": parameters} if parameters else {}
    )


class _Refusal(Exception):
    def __init__(self, code: int, description: str, **parameters: Any) -> None:
        super().__init__(description)
        self.reply = Reply(code, json=error(code, description, **parameters))


class TelegramEmulator(Emulator):
    """The Bot API methods a channel bot uses, with Telegram's checks and error answers."""

    def __init__(self, token: str = TOKEN, chats: list[Chat] | None = None) -> None:
        super().__init__()
        self.token = token
        self.bot_id = int(token.split(":")[0])
        self._initial_chats = chats if chats is not None else default_chats()
        self.chats: dict[int, Chat] = {}
        self.refused_photos: dict[str, str] = {}
        # (chat id, message id) → the message as it reads now, with "versions" (sent, then each edit)
        self.live: dict[tuple[int, int], dict[str, Any]] = {}
        self.deleted: list[tuple[int, int]] = []
        self.clock_offset = 0.0
        self._method_faults: dict[str, list[Reply]] = {}
        self.reset()
        self.route("POST", r"/bot(?P<token>[^/]*)/(?P<method>\w+)", self._dispatch_method)
        self.route("GET", r"/bot(?P<token>[^/]*)/(?P<method>\w+)", self._dispatch_method)

    # --- test controls ---------------------------------------------------------------------------

    def reset(self) -> None:
        """Forget what a test did: the chats as configured, no faults, no messages, no requests."""
        self.clear_faults()
        with self._lock:
            self.accepted.clear()
            self.requests.clear()
        fresh = (replace(chat, next_message_id=itertools.count(1)) for chat in self._initial_chats)
        self.chats = {chat.id: chat for chat in fresh}
        self.refused_photos.clear()
        self.live.clear()
        self.deleted.clear()
        self.clock_offset = 0.0
        self._method_faults.clear()

    def now(self) -> float:
        """The emulator's clock: real time moved by ``advance_clock``."""
        return time.time() + self.clock_offset

    def advance_clock(self, seconds: float) -> None:
        """Move the emulator's clock forward (the messages' ages grow by ``seconds``)."""
        self.clock_offset += seconds

    def fail_method(
        self,
        method: str,
        *,
        status: int = 500,
        json: Any = None,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
        count: int = 1,
    ) -> None:
        """The next ``count`` calls of this Bot API method (any case) get this reply; other methods
        are answered as usual."""
        reply = Reply(status=status, json=json, body=body, headers=dict(headers or {}))
        with self._lock:
            self._method_faults.setdefault(method.lower(), []).extend(reply for _ in range(count))

    def message(self, chat_id: int, message_id: int) -> dict[str, Any] | None:
        """A sent message as it reads now ("text": what readers see; "versions"); None once deleted."""
        return self.live.get((int(chat_id), int(message_id)))

    def fail_with(self, description: str, code: int = 400, count: int = 1, **parameters: Any) -> None:
        """The next ``count`` calls get this Bot API error."""
        self.fail_next(count, status=code, json=error(code, description, **parameters))

    def rate_limit_next(self, retry_after: int = 5) -> None:
        """The next call gets 429 with parameters.retry_after, as Telegram sends it."""
        self.fail_with(f"Too Many Requests: retry after {retry_after}", 429, retry_after=retry_after)

    def refuse_photo(
        self, url: str, description: str = "Bad Request: wrong file identifier/HTTP URL specified"
    ) -> None:
        """Make sendPhoto with this URL fail as Telegram does when it cannot fetch or use the image."""
        self.refused_photos[url] = description

    def chat(self, chat_id: int | str) -> Chat:
        """A known chat by id or @username (KeyError if unknown)."""
        found = self._find_chat(chat_id)
        if found is None:
            raise KeyError(chat_id)
        return found

    def messages(self) -> list[dict[str, Any]]:
        """The messages posted, oldest first."""
        return [item for item in self.accepted if item["kind"] == "message"]

    # --- routing ---------------------------------------------------------------------------------

    def _dispatch_method(self, request: EmulatedRequest) -> Reply:
        assert request.match is not None
        token, method = request.match["token"], request.match["method"].lower()
        if not re.fullmatch(r"\d+:[\w-]+", token):
            return Reply(404, json=error(404, "Not Found"))  # what api.telegram.org says to a non-token
        if token != self.token:
            return Reply(401, json=error(401, "Unauthorized"))
        with self._lock:
            faults = self._method_faults.get(method)
            if faults:
                return faults.pop(0)
        handler = {
            "getme": self._get_me,
            "getchat": self._get_chat,
            "getchatmember": self._get_chat_member,
            "sendmessage": self._send,
            "sendphoto": self._send,
            "editmessagetext": self._edit,
            "editmessagecaption": self._edit,
            "editmessagemedia": self._edit,
            "deletemessage": self._delete,
        }.get(method)
        if handler is None:
            return Reply(404, json=error(404, "Not Found"))
        params = request.params()
        try:
            return Reply(200, json={"ok": True, "result": handler(method, params)})
        except _Refusal as refusal:
            return refusal.reply

    def _get_me(self, method: str, params: dict) -> dict[str, Any]:
        return {"id": self.bot_id, "is_bot": True, "first_name": "Nejat Syndicator", "username": BOT_USERNAME}

    def _get_chat(self, method: str, params: dict) -> dict[str, Any]:
        chat = self._resolve(params)
        return chat.public()

    def _get_chat_member(self, method: str, params: dict) -> dict[str, Any]:
        chat = self._resolve(params)
        if str(params.get("user_id")) != str(self.bot_id):
            raise _Refusal(400, "Bad Request: user not found")
        status = chat.bot_status
        member: dict[str, Any] = {"status": status, "user": {"id": self.bot_id, "is_bot": True}}
        if status == "administrator":
            member["can_post_messages" if chat.type == "channel" else "can_send_messages"] = chat.can_post
        return member

    def _send(self, method: str, params: dict) -> dict[str, Any]:
        photo = method == "sendphoto"
        field_name = "caption" if photo else "text"
        raw, plain = self._parsed(params, field_name)
        chat = self._resolve(params)
        if chat.migrated_to:
            raise _Refusal(
                400,
                "Bad Request: group chat was upgraded to a supergroup chat",
                migrate_to_chat_id=chat.migrated_to,
            )
        self._check_rights(chat, "photos" if photo else "text messages")
        plain = plain.strip()  # TDLib trims the text before counting it
        if photo:
            self._check_photo(params.get("photo"))
            if len(plain) > CAPTION_MAX:
                raise _Refusal(400, "Bad Request: message caption is too long")
        elif not plain:
            raise _Refusal(400, "Bad Request: message text is empty")
        elif len(plain) > TEXT_MAX:
            raise _Refusal(400, "Bad Request: message is too long")
        return self._post(chat, method, params, plain, raw)

    def _edit(self, method: str, params: dict) -> dict[str, Any]:
        """editMessageText (a text message), editMessageCaption (a photo's caption), editMessageMedia
        (a new photo, with its caption); "message is not modified" when it already reads so."""
        chat = self._resolve(params)
        self._check_rights(chat, "messages")
        media: Any = params.get("media") if method == "editmessagemedia" else None
        if isinstance(media, str):  # form-encoded requests carry it as JSON text
            media = json.loads(media or "null")
        if method == "editmessagemedia":
            if not isinstance(media, dict) or media.get("type") not in ("photo", "video", "animation"):
                raise _Refusal(400, "Bad Request: can't parse InputMedia: media not found")
            fields = media
        else:
            fields = params
        found = self._live(chat, params, "edit")
        if method == "editmessagetext":
            if found["photo"]:
                raise _Refusal(400, "Bad Request: there is no text in the message to edit")
            raw, plain = self._parsed(fields, "text")
            plain = plain.strip()
            if not plain:
                raise _Refusal(400, "Bad Request: message text is empty")
            if len(plain) > TEXT_MAX:
                raise _Refusal(400, "Bad Request: message is too long")
            photo = ""
        else:
            if method == "editmessagecaption" and not found["photo"]:
                raise _Refusal(400, "Bad Request: there is no caption in the message to edit")
            raw, plain = self._parsed(fields, "caption")
            plain = plain.strip()
            if len(plain) > CAPTION_MAX:
                raise _Refusal(400, "Bad Request: message caption is too long")
            photo = found["photo"]
            if method == "editmessagemedia":
                self._check_photo(media.get("media"))
                photo = media["media"]
        if (plain, raw, photo) == (found["text"], found["html"], found["photo"]):
            raise _Refusal(400, NOT_MODIFIED)
        found.update(text=plain, html=raw, photo=photo, edit_date=int(self.now()))
        found["versions"].append({"method": method, "text": plain, "html": raw, "photo": photo})
        self.record("edit", method=method, chat_id=chat.id, message_id=found["message_id"], text=plain)
        return self._public(chat, found)

    def _delete(self, method: str, params: dict) -> bool:
        """deleteMessage: True; "message to delete not found" for one that is gone, "message can't
        be deleted" for one sent 48 hours ago or more."""
        chat = self._resolve(params)
        self._check_rights(chat, "messages")
        found = self._live(chat, params, "delete")
        if self.now() - found["date"] >= DELETE_WINDOW:
            raise _Refusal(400, "Bad Request: message can't be deleted")
        key = (chat.id, found["message_id"])
        del self.live[key]
        self.deleted.append(key)
        self.record("delete", chat_id=chat.id, message_id=found["message_id"])
        return True

    # --- helpers ---------------------------------------------------------------------------------

    def _parsed(self, params: dict, field_name: str) -> tuple[str, str]:
        """The raw text of ``field_name`` and what readers see of it, by its parse_mode."""
        raw = params.get(field_name) or ""
        if not isinstance(raw, str):
            raise _Refusal(400, f"Bad Request: {field_name} must be a string")
        mode = str(params.get("parse_mode") or "")
        if mode.lower() == "html":
            plain, problem = telegram_parse(raw)
            if problem:
                raise _Refusal(400, f"Bad Request: can't parse entities: {problem}")
        elif mode:
            raise _Refusal(400, "Bad Request: unsupported parse_mode")
        else:
            plain = raw
        return raw, plain

    def _live(self, chat: Chat, params: dict, action: str) -> dict[str, Any]:
        """The live message ``params`` name, or Telegram's "message to edit/delete not found"."""
        try:
            message_id = int(params.get("message_id"))  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise _Refusal(400, "Bad Request: message identifier is not specified") from None
        found = self.live.get((chat.id, message_id))
        if found is None:
            raise _Refusal(400, f"Bad Request: message to {action} not found")
        return found

    def _public(self, chat: Chat, found: dict[str, Any]) -> dict[str, Any]:
        """The Message object of a live message, as an edit answers it."""
        result: dict[str, Any] = {
            "message_id": found["message_id"],
            "date": found["date"],
            "chat": chat.public(),
        }
        if chat.type == "channel":
            result["sender_chat"] = chat.public()
        if "edit_date" in found:
            result["edit_date"] = found["edit_date"]
        if found["photo"]:
            result["photo"] = [
                {"file_id": f"photo-{found['message_id']}-{len(found['versions'])}", "width": 800}
            ]
            result["caption"] = found["text"]
        else:
            result["text"] = found["text"]
        return result

    def _find_chat(self, raw: Any) -> Chat | None:
        if isinstance(raw, str) and raw.startswith("@"):
            name = raw[1:].lower()
            return next((c for c in self.chats.values() if c.username and c.username.lower() == name), None)
        try:
            return self.chats.get(int(raw))
        except (TypeError, ValueError):
            return None

    def _resolve(self, params: dict) -> Chat:
        if params.get("chat_id") in (None, ""):
            raise _Refusal(400, "Bad Request: chat_id is empty")
        chat = self._find_chat(params["chat_id"])
        if chat is None or (chat.bot_status in ("left", "kicked") and not chat.username):
            raise _Refusal(400, "Bad Request: chat not found")  # a private chat the bot is not in
        return chat

    def _check_rights(self, chat: Chat, what: str) -> None:
        kind = "channel" if chat.type == "channel" else "supergroup" if chat.type == "supergroup" else "group"
        if chat.bot_status == "kicked":
            raise _Refusal(403, f"Forbidden: bot was kicked from the {kind} chat")
        if chat.bot_status == "left":
            raise _Refusal(403, f"Forbidden: bot is not a member of the {kind} chat")
        if chat.type == "channel" and (chat.bot_status == "member" or not chat.can_post):
            raise _Refusal(400, "Bad Request: need administrator rights in the channel chat")
        if chat.bot_status == "restricted" or not chat.can_post:
            raise _Refusal(400, f"Bad Request: not enough rights to send {what} to the chat")

    def _check_photo(self, photo: Any) -> None:
        if not photo:
            raise _Refusal(400, "Bad Request: there is no photo in the request")
        if photo in self.refused_photos:
            raise _Refusal(400, self.refused_photos[photo])
        if not isinstance(photo, str) or not re.match(r"https?://[^/\s]+\.[^/\s]+", photo):
            raise _Refusal(400, "Bad Request: wrong file identifier/HTTP URL specified")

    def _post(self, chat: Chat, method: str, params: dict, plain: str, raw: str) -> dict[str, Any]:
        message_id = next(chat.next_message_id)
        result: dict[str, Any] = {"message_id": message_id, "date": int(self.now()), "chat": chat.public()}
        if chat.type == "channel":
            result["sender_chat"] = chat.public()
        preview = params.get("link_preview_options")
        if isinstance(preview, str):  # form-encoded requests carry it as JSON text
            preview = json.loads(preview or "null")
        if method == "sendphoto":
            result["photo"] = [
                {"file_id": f"photo-{message_id}", "file_unique_id": f"u{message_id}", "width": 800}
            ]
            result["caption"] = plain
        else:
            result["text"] = plain
            if preview:
                result["link_preview_options"] = preview
        self.record(
            "message",
            method="sendPhoto" if method == "sendphoto" else "sendMessage",
            chat_id=chat.id,
            chat_username=chat.username,
            message_id=message_id,
            text=plain,  # what readers see: the text, or the caption of a photo
            html=raw,
            caption=plain if method == "sendphoto" else "",
            photo=params.get("photo", "") if method == "sendphoto" else "",
            parse_mode=params.get("parse_mode"),
            link_preview_options=preview,
            disable_notification=params.get("disable_notification"),
        )
        photo = str(params.get("photo", "")) if method == "sendphoto" else ""
        version = {"method": "sendPhoto" if photo else "sendMessage", "text": plain, "html": raw}
        self.live[(chat.id, message_id)] = {
            "message_id": message_id,
            "date": result["date"],
            "text": plain,
            "html": raw,
            "photo": photo,  # the photo's URL; "" for a text message
            "versions": [{**version, "photo": photo}],
        }
        return result


# --- the conformance harness ---------------------------------------------------------------------


class Harness(HttpHarness):
    """The Telegram side of tests/test_conformance.py: the emulator, a target, scripted faults.

    Besides the error modes in ``expected``, ``inject("migrated")`` makes the next send answer
    migrate_to_chat_id: the send then succeeds, to the supergroup, with the target's chat_id updated.
    """

    kind = "telegram"
    env_name = "SYNDICATOR_TEST_TELEGRAM_TOKEN"
    expected: dict[str, type[Exception]] = {
        "server_error": TransientError,  # a 502 page from the API front: nothing was processed
        "gateway_timeout": OutcomeUnknown,  # 504: the request was forwarded, then no answer
        "rate_limited": RateLimited,
        "timeout": OutcomeUnknown,
        "bad_token": TargetBroken,
        "rejected_content": PermanentError,
        "kicked": TargetBroken,
    }

    def __init__(self, hang_seconds: float = 5.0) -> None:
        self.api = self.emulator = TelegramEmulator()
        self.hang_seconds = hang_seconds
        self._old_env: str | None = None

    def __enter__(self) -> Harness:
        self.api.start()
        self._old_env = os.environ.get(self.env_name)
        os.environ[self.env_name] = self.api.token
        return self

    def __exit__(self, *exc: object) -> None:
        self.api.stop()
        if self._old_env is None:
            os.environ.pop(self.env_name, None)
        else:
            os.environ[self.env_name] = self._old_env

    def make_target(self, name: str = "telegram-test", **settings: Any):
        """A saved Telegram target posting to the emulator's public channel, with a 1 s timeout."""
        from syndicator.models import Target

        return Target.objects.create(
            kind="telegram",
            name=name,
            secret_env=self.env_name,
            settings={"chat_id": PUBLIC_CHANNEL, "base_url": self.api.base_url, "timeout": 1, **settings},
        )

    def transient_reply(self) -> Reply:
        """503 from the Bot API's front: nothing was processed."""
        return Reply(503, json=error(503, "Service Unavailable"))

    def external_id(self, sent: dict[str, Any]) -> str:
        return f"{sent['chat_id']}:{sent['message_id']}"

    def _message(self, external_id: str) -> dict[str, Any] | None:
        chat_id, _, message_id = external_id.rpartition(":")
        return self.api.message(int(chat_id), int(message_id))

    def post_text(self, external_id: str) -> str | None:
        """What readers see of the message now (a photo's caption); None once deleted."""
        found = self._message(external_id)
        return None if found is None else str(found["text"])

    def edit_count(self, external_id: str) -> int:
        """How many edits changed the message (a "not modified" answer changes nothing)."""
        found = self._message(external_id)
        return len(found["versions"]) - 1 if found else 0

    def script_outage(self, hang: float) -> None:
        self.api.fail_next(status=502, body=b"<html><title>502 Bad Gateway</title></html>")
        self.api.fail_next(status=503, json=error(503, "Service Unavailable"))
        self.api.rate_limit_next(retry_after=1)
        self.api.hang_next(seconds=hang)

    def secrets(self) -> list[str]:
        return [TOKEN, TOKEN.partition(":")[2]]  # the secret half too: the bot id before ":" is public

    def sent(self) -> list[dict[str, Any]]:
        """What the emulator posted; "text" is what readers see (tags gone, entities decoded)."""
        return self.api.messages()

    def inject(self, mode: str) -> None:
        """Make the next call fail (or, for "migrated", redirect) the way ``mode`` names."""
        api = self.api
        if mode == "server_error":
            page = b"<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>"
            api.fail_next(status=502, body=page, headers={"Content-Type": "text/html"})
        elif mode == "gateway_timeout":
            api.fail_next(status=504, body=b"<html><title>504 Gateway Time-out</title></html>")
        elif mode == "rate_limited":
            api.rate_limit_next(retry_after=3)
        elif mode == "timeout":
            api.hang_next(seconds=self.hang_seconds)
        elif mode == "bad_token":
            api.fail_with("Unauthorized", 401)
        elif mode == "rejected_content":
            api.fail_with('Bad Request: can\'t parse entities: Unsupported start tag "br" at byte offset 42')
        elif mode == "kicked":
            api.fail_with("Forbidden: bot was kicked from the channel chat", 403)
        elif mode == "migrated":
            api.fail_with(
                "Bad Request: group chat was upgraded to a supergroup chat", migrate_to_chat_id=SUPERGROUP_ID
            )
        else:
            raise ValueError(f"unknown fault mode {mode!r}")
