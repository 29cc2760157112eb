"""Telegram channel target: the Bot API over httpx (``POST {base_url}/bot{token}/{method}``, JSON).

A post with an image and a caption that fits goes out as ``sendPhoto``; if Telegram cannot use the
photo, the same attempt falls back to ``sendMessage`` with the full text, so a broken image never
holds up the news. Everything else is ``sendMessage`` in HTML parse mode.

Identity: ``external_id`` is ``"{chat.id}:{message_id}"`` with the numeric chat id from Telegram's
answer. A message id is unique only within its chat, and the numeric id survives a username
change or a group's upgrade, so the pair is what editMessage*/deleteMessage need later.
``sent_details`` also records the message's kind ("text" or "photo") and a photo's image URL:
a text message is edited with editMessageText, a photo's caption with editMessageCaption, and
a photo whose image changed with editMessageMedia (the Bot API cannot turn one kind into the
other, so a photo stays a photo). Telegram answers 400 "message is not modified" to an edit
that changes nothing: that is success, so an edit is safe to repeat. deleteMessage works only
on messages sent less than 48 hours ago (core.telegram.org/bots/api#deletemessage); a message
already gone ("message to delete not found") counts as deleted.

The bot token is part of every request URL: no URL is ever put in an exception or a log line,
and every message built from a response is scrubbed of the token (see ``_scrub``).
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, Any

import httpx
from django.db import transaction
from django.utils import timezone

from syndicator.errors import (
    DeliveryError,
    EditRefused,
    OutcomeUnknown,
    PermanentError,
    RateLimited,
    TargetBroken,
    TransientError,
)
from syndicator.redact import redact
from syndicator.targets import http
from syndicator.targets.base import Capabilities, HttpAdapter, SendResult, register
from syndicator.targets.config import Pacing, RateLimit, Setting
from syndicator.targets.faults import ErrorTable, Rule, retry_after
from syndicator.targets.telegram.text import CAPTION_MAX, telegram_length
from syndicator.targets.telegram.text import RULES as TEXT_RULES

if TYPE_CHECKING:
    from syndicator.formatting import Message
    from syndicator.models import Delivery

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.telegram.org"


class PhotoRefused(PermanentError):
    """Telegram could not use the photo: the same attempt falls back to a text message."""


class CaptionRefused(PhotoRefused):
    """Telegram refused the caption: the text alone may still go out."""


# The error table, in one place (TARGETS.md §1, "Errors: retry vs give up"). The code decides where
# it is specific; 400 ("Bad Request") and any code Telegram may introduce later are decided by the
# description ("error_code values may change, so treat description matching as a fallback").
CONFIG = TargetBroken  # the target is misconfigured: pause it and tell someone
ERRORS = ErrorTable(
    by_code={
        401: Rule(CONFIG, "the bot token was refused", "check {env} with @BotFather"),
        404: Rule(CONFIG, "the Bot API knows no such token or method", "check {env} and base_url {base_url}"),
        403: Rule(
            CONFIG, "the bot may not post", "add the bot to {chat} as an administrator allowed to post"
        ),
        429: Rule(RateLimited, "Telegram asks us to slow down"),
        # A 5xx is an answer, not silence. The Bot API server answers sendMessage only after TDLib
        # reports the send as done or failed, so its own 500 ("Internal Server Error: …", JSON)
        # means not posted. 502 and 503 come from the front proxy when the Bot API server is down
        # or restarting (the usual outage signature): nothing was processed. 504 differs: the front
        # forwarded the request and stopped waiting, which is TARGETS.md's "if the request was
        # sent, mark it unknown".
        500: Rule(TransientError, "Telegram failed", "retrying later"),
        502: Rule(TransientError, "Telegram's front could not reach the Bot API server", "retrying later"),
        503: Rule(TransientError, "Telegram is unavailable", "retrying later"),
        504: Rule(
            OutcomeUnknown,
            "the gateway timed out after the request reached Telegram",
            "it may have been posted",
        ),
    },
    # Lower-case fragments of ``description``; the first match wins.
    by_text=(
        (
            "chat not found",
            Rule(CONFIG, "chat not found", "check chat_id {chat} (a private channel needs the bot)"),
        ),
        ("bot was kicked", Rule(CONFIG, "the bot was removed", "add it back to {chat} as an administrator")),
        (
            "bot is not a member",
            Rule(CONFIG, "the bot is not a member", "add it to {chat} as an administrator"),
        ),
        (
            "need administrator rights",
            Rule(CONFIG, "no administrator rights", "make the bot an admin of {chat}"),
        ),
        ("not enough rights", Rule(CONFIG, "not enough rights", "let the bot post messages in {chat}")),
        ("have no rights to send", Rule(CONFIG, "no right to post", "let the bot post messages in {chat}")),
        ("chat_write_forbidden", Rule(CONFIG, "no right to post", "let the bot post messages in {chat}")),
        (
            "can't parse entities",
            Rule(PermanentError, "the telegram template produced markup Telegram refuses"),
        ),
        ("message is too long", Rule(PermanentError, "the rendered text is over Telegram's 4096 limit")),
        ("caption is too long", Rule(CaptionRefused, "the caption is over Telegram's 1024 limit")),
        ("text is empty", Rule(PermanentError, "the rendered message is empty")),
        ("wrong file identifier/http url", Rule(PhotoRefused, "Telegram refused the image URL")),
        ("failed to get http url content", Rule(PhotoRefused, "Telegram could not download the image")),
        ("wrong type of the web page content", Rule(PhotoRefused, "the image URL is not an image")),
        ("photo_invalid_dimensions", Rule(PhotoRefused, "the image's size is not accepted")),
        ("image_process_failed", Rule(PhotoRefused, "Telegram could not process the image")),
        # An edit or delete Telegram will not make: the message stays as it is (EditRefused).
        # "message to edit not found" is the answer for a message deleted in the channel.
        (
            "message to edit not found",
            Rule(EditRefused, "the message no longer exists", "it was deleted in the channel"),
        ),
        ("message can't be edited", Rule(EditRefused, "Telegram will not edit this message")),
        (
            "message can't be deleted",
            Rule(
                EditRefused,
                "Telegram will not delete this message",
                "the Bot API deletes only messages sent less than 48 hours ago; an admin of {chat} "
                "can still delete it in the Telegram app",
            ),
        ),
    ),
    unlisted_3xx=Rule(CONFIG, "redirected", "the Bot API does not redirect: check base_url {base_url}"),
    unlisted_4xx=Rule(PermanentError, "Telegram refused this message"),
    # The Bot API answers only once TDLib has a verdict (see 500 above): an unlisted 5xx is a failure.
    unlisted_5xx=Rule(TransientError, "Telegram failed", "retrying later"),
)
MIGRATED = Rule(CONFIG, "the group is now supergroup {new}", "set chat_id={new}")


class ApiError(Exception):
    """A Bot API answer with ``ok: false`` (or a non-JSON error page from its front)."""

    def __init__(self, status: int, code: int, description: str, parameters: dict, retry_header: str = ""):
        super().__init__(description)
        self.status, self.code, self.description = status, code, description
        self.parameters, self.retry_header = parameters, retry_header


def classify(err: ApiError) -> Rule:
    """The rule an API error falls under."""
    if err.parameters.get("migrate_to_chat_id"):
        return MIGRATED
    if err.code == 429 or err.parameters.get("retry_after"):
        return ERRORS.by_code[429]
    return ERRORS.rule(
        max(err.status, err.code) if err.code >= 500 else err.status, err.code, err.description
    )


# The Bot API methods that publish: only their lost answers can hide a posted message.
PUBLISHING = frozenset({"sendMessage", "sendPhoto"})
# Methods whose ``result`` is True rather than a Message.
ANSWERS_TRUE = frozenset({"deleteMessage"})
# "A message can only be deleted if it was sent less than 48 hours ago"
# (core.telegram.org/bots/api#deletemessage).
DELETE_WINDOW = 48 * 3600
# The answer to an edit that changes nothing ("Bad Request: message is not modified: specified
# new message content and reply markup are exactly the same as a current content…"): success.
NOT_MODIFIED = "message is not modified"
# The answer to deleting a message that is already gone: deleted.
ALREADY_DELETED = "message to delete not found"


def message_url(chat_id: int | str, username: str, message_id: int) -> str:
    """The t.me link of a message: by username when public, /c/ (members only) when private."""
    if username:
        return f"https://t.me/{username}/{message_id}"
    digits = str(chat_id)
    if digits.startswith("-100") and digits[4:].isdigit():
        return f"https://t.me/c/{digits[4:]}/{message_id}"
    return ""  # a basic group has no message links


def _scrub(text: str, token: str) -> str:
    """Text without the token or its secret half (after the ":"), and redacted like every log line."""
    secret = token.partition(":")[2]
    for value in (token, secret if len(secret) >= 8 else ""):
        if value:
            text = text.replace(value, "<redacted>")
    return redact(text)


@register
class TelegramAdapter(HttpAdapter):
    """Posts to a Telegram channel (or group) through a bot that is an administrator there."""

    kind = "telegram"
    label = "Telegram"
    default_base_url = DEFAULT_BASE_URL
    errors = ERRORS
    documented_secrets = ("TELEGRAM_BOT_TOKEN",)  # README: connecting the networks
    text = TEXT_RULES
    # Bot API: editMessageText/editMessageCaption for the bot's own channel posts; deleteMessage
    # "only if it was sent less than 48 hours ago" (core.telegram.org/bots/api#deletemessage).
    capabilities = Capabilities(
        edit=True,
        delete=True,
        delete_window=DELETE_WINDOW,
        note="edits its own posts at any time; deletes them within 48 hours",
    )
    idempotent = False  # the Bot API has no idempotency key: a lost answer may hide a posted message
    pacing = Pacing(
        rate_limits=(
            RateLimit("chat", 20, 60, "core.telegram.org/bots/faq"),
            RateLimit("account", 30, 1, "core.telegram.org/bots/faq"),
        )
    )
    settings_spec = (
        Setting("chat_id", "Channel to post to: @channelusername, or the numeric -100… id", required=True),
        Setting("silent", "Post without a notification (disable_notification)", type=bool, default=False),
        Setting("link_preview", "Show a preview of the post's link", type=bool, default=True),
        Setting("photo", "Send the image, the text as its caption, when it fits", type=bool, default=True),
    )

    # --- the contract ---------------------------------------------------------------------------

    def send(self, message: Message, delivery: Delivery) -> SendResult:
        """Publish the message: sendPhoto with caption when possible, else (or on refusal) sendMessage."""
        token = self.secret()
        self._chat_id()  # a bad chat_id is a configuration error before anything leaves
        with self._client() as client:
            fallback = ""
            if message.image_url and message.caption and self.setting("photo"):
                try:
                    return self._result(
                        self._deliver(client, token, "sendPhoto", self._photo(message)), "", message
                    )
                except ApiError as err:
                    rule = classify(err)
                    if not issubclass(rule.error, PhotoRefused):
                        raise self._error(err, token, "sendPhoto") from None
                    # TARGETS.md says "retry later at most once, then fall back"; we fall back at
                    # once: the news matters more than its picture, and a retry delays it.
                    fallback = _scrub(f"{err.description[:200]} ({rule.reason})", token)
                    log.info(
                        "Telegram target %s: photo not used, sending text: %s", self.target.name, fallback
                    )
            try:
                answer = self._deliver(client, token, "sendMessage", self._text(message))
            except ApiError as err:
                raise self._error(err, token, "sendMessage") from None
            return self._result(answer, fallback, message)

    def edit(self, message: Message, delivery: Delivery) -> SendResult:
        """Make the sent message read as ``message``, with the parse mode and preview a send uses.

        A text message: editMessageText. A photo: editMessageCaption, or editMessageMedia when the
        post's image is not the one the send recorded (if Telegram cannot use the new image, the
        caption alone is edited and the old photo stays, as a send falls back to text). A photo
        cannot become a text message: when the new text is over a caption's 1024 characters the
        edit is refused. "message is not modified" is success (the same edit again changes
        nothing); a message that is gone is EditRefused.
        """
        token = self.secret()
        chat_id, message_id, sent = self._sent_message(delivery)
        where = {"chat_id": chat_id, "message_id": message_id}
        photo = sent.get("kind") == "photo" or (not sent.get("kind") and sent.get("photo") is True)
        image = str(sent.get("image_url") or "")
        fallback = ""
        with self._client() as client:
            if not photo:
                text = {k: v for k, v in self._text(message).items() if k != "disable_notification"}
                answer = self._edit(client, token, "editMessageText", {**where, **text})
            else:
                caption = message.caption or message.text
                if telegram_length(caption) > CAPTION_MAX:
                    raise EditRefused(
                        f"{self.label} edit: message {chat_id}:{message_id} is a photo and the new text "
                        f"is {telegram_length(caption)} characters, over a caption's {CAPTION_MAX}; the "
                        "Bot API cannot turn a photo into a text message: delete it and post again"
                    )
                fields = {"caption": caption, "parse_mode": message.parse_mode or "HTML"}
                # The same image as sent (or a send that did not record its image) keeps its photo.
                new_image = message.image_url if self.setting("photo") else ""
                answer = None
                if new_image and new_image != sent.get("image_url", new_image):
                    media = {"type": "photo", "media": new_image, **fields}
                    try:
                        answer = self._edit(client, token, "editMessageMedia", {**where, "media": media})
                        image = new_image
                    except PhotoRefused as refused:
                        fallback = str(refused)
                        log.info(
                            "Telegram target %s: new photo not used, editing the caption: %s",
                            self.target.name,
                            fallback,
                        )
                if answer is None:
                    answer = self._edit(client, token, "editMessageCaption", {**where, **fields})
        chat = found if isinstance(found := (answer or {}).get("chat"), dict) else {}
        username = str(chat.get("username") or sent.get("username") or "")
        details = {
            **sent,
            "kind": "photo" if photo else "text",
            "chat_id": chat_id,
            "message_id": message_id,
            "username": username,
            "photo": photo,
            "image_url": image,
        }
        if fallback:
            details["photo_fallback"] = fallback
        url = delivery.external_url or message_url(chat_id, username, message_id)
        return SendResult(f"{chat_id}:{message_id}", url, details)

    def delete(self, delivery: Delivery) -> None:
        """deleteMessage. Past the Bot API's 48 hours (counted from ``delivery.sent_at``) it is
        EditRefused before anything is sent; Telegram's own refusal ("message can't be deleted")
        is EditRefused too. A message already gone ("message to delete not found") is deleted."""
        chat_id, message_id, _ = self._sent_message(delivery)
        if delivery.sent_at is not None:
            age = (timezone.now() - delivery.sent_at).total_seconds()
            if age >= DELETE_WINDOW:
                raise EditRefused(
                    f"{self.label} delete: message {chat_id}:{message_id} was sent {age / 3600:.0f} hours "
                    "ago, and the Bot API deletes only messages sent less than 48 hours ago "
                    "(core.telegram.org/bots/api#deletemessage); an admin of the channel can still "
                    "delete it in the Telegram app"
                )
        token = self.secret()
        with self._client() as client:
            try:
                self._call(client, token, "deleteMessage", {"chat_id": chat_id, "message_id": message_id})
            except ApiError as err:
                if err.status == 400 and ALREADY_DELETED in err.description.lower():
                    return
                raise self._error(err, token, "deleteMessage") from None

    def check(self) -> str:
        """Verify the token (getMe), the chat (getChat) and the bot's right to post (getChatMember)."""
        token = self.secret()
        chat_id = self._chat_id()
        with self._client() as client:
            try:
                me = self._call(client, token, "getMe", {})
                chat = self._call(client, token, "getChat", {"chat_id": chat_id})
                member = self._call(
                    client, token, "getChatMember", {"chat_id": chat_id, "user_id": me.get("id")}
                )
            except ApiError as err:
                error = self._error(err, token, "check")
                # Nothing is being posted: any refusal here is about the configuration.
                if isinstance(error, PermanentError) and not isinstance(error, TargetBroken):
                    error = TargetBroken(str(error), http_status=error.http_status)
                raise error from None
        bot, kind = f"@{me.get('username', me.get('id'))}", chat.get("type", "")
        status = member.get("status", "")
        may_post = status == "creator" or (
            status == "administrator" and (kind != "channel" or member.get("can_post_messages", False))
        )
        if kind != "channel" and status == "member":
            may_post = True  # group members post unless restricted
        if not may_post:
            raise TargetBroken(
                f"Telegram: bot {bot} is '{status or 'unknown'}' in {chat_id}: make it an administrator "
                "with the right to post messages"
            )
        title = chat.get("title") or chat.get("username") or ""
        return f"ok: bot {bot} can post to {chat_id}" + (f' ({kind} "{title}")' if title else "")

    # --- requests -------------------------------------------------------------------------------

    def _deliver(self, client: httpx.Client, token: str, method: str, payload: dict) -> dict:
        """Call a send method; on migrate_to_chat_id store the new chat id and resend once."""
        try:
            return self._call(client, token, method, {"chat_id": self._chat_id(), **payload})
        except ApiError as err:
            new_id = err.parameters.get("migrate_to_chat_id")
            if not new_id:
                raise
            self._migrate(int(new_id))
        try:
            return self._call(client, token, method, {"chat_id": self._chat_id(), **payload})
        except ApiError as err:
            if err.parameters.get("migrate_to_chat_id"):
                raise TargetBroken(
                    f"Telegram: chat {self._chat_id()} migrated twice in one attempt: check chat_id",
                    http_status=err.status,
                ) from None
            raise

    def _edit(self, client: httpx.Client, token: str, method: str, payload: dict) -> dict | None:
        """One editMessage* call: the edited Message, None when it was already so ("message is not
        modified"), else the DeliveryError (PhotoRefused, for the caller, on editMessageMedia)."""
        try:
            return self._call(client, token, method, payload)
        except ApiError as err:
            if err.status == 400 and NOT_MODIFIED in err.description.lower():
                return None
            if method == "editMessageMedia" and issubclass(classify(err).error, PhotoRefused):
                reason = classify(err).reason
                raise PhotoRefused(_scrub(f"{err.description[:200]} ({reason})", token)) from None
            raise self._error(err, token, method) from None

    def _call(self, client: httpx.Client, token: str, method: str, payload: dict) -> dict:
        """One Bot API call: its ``result`` ({} for a method that answers True), or ApiError;
        transport errors as DeliveryErrors."""
        try:
            response = http.request(
                client, "POST", f"/bot{token}/{method}", publishing=method in PUBLISHING, json=payload
            )
        except DeliveryError as exc:  # TransientError or OutcomeUnknown, already redacted; scrub anyway
            exc.args = (f"Telegram {method}: {_scrub(str(exc), token)}",)
            raise
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.is_success and not isinstance(body, dict):
            # Not the Bot API at all (it always answers JSON): base_url points somewhere else.
            raise TargetBroken(
                f"Telegram {method}: {self.base_url()} answered {response.status_code} without JSON: "
                "check base_url",
                http_status=response.status_code,
            )
        body = body if isinstance(body, dict) else {}
        if response.is_success and body.get("ok") is True and isinstance(body.get("result"), dict):
            return body["result"]
        if response.is_success and body.get("ok") is True and method in ANSWERS_TRUE:
            return {}
        if response.is_success:
            # The Bot API said success in a shape we cannot read: it probably posted.
            raise self.no_id(method, response.status_code, publishing=method in PUBLISHING)
        parameters = body.get("parameters")
        code = body.get("error_code")
        raise ApiError(
            status=response.status_code,
            code=code if isinstance(code, int) else response.status_code,
            description=str(body.get("description") or f"HTTP {response.status_code}"),
            parameters=parameters if isinstance(parameters, dict) else {},
            retry_header=response.headers.get("retry-after", ""),
        )

    def _error(self, err: ApiError, token: str, method: str) -> DeliveryError:
        """The DeliveryError an API error maps to, by the table, with a clear, redacted message."""
        rule = classify(err)
        if issubclass(rule.error, PhotoRefused):  # outside sendPhoto a refused photo is content
            rule = Rule(PermanentError, rule.reason, rule.advice)
        wait = retry_after({"retry-after": err.retry_header}, body_value=err.parameters.get("retry_after"))
        error = self.network_error(
            rule,
            method,
            publishing=method in PUBLISHING,
            http_status=err.status,
            said=_scrub(err.description[:300], token),
            retry_after=wait,
            chat=repr(self.target.settings.get("chat_id")),
            base_url=self.base_url(),
            new=err.parameters.get("migrate_to_chat_id"),
        )
        error.args = (_scrub(str(error), token),)
        return error

    # --- payloads and results -------------------------------------------------------------------

    def _text(self, message: Message) -> dict[str, Any]:
        """sendMessage fields (chat_id is added per call)."""
        preview: dict[str, Any] = {"is_disabled": not self.setting("link_preview")}
        if message.link:
            preview["url"] = message.link
        return {
            "text": message.text,
            "parse_mode": message.parse_mode or "HTML",
            "link_preview_options": preview,
            "disable_notification": self.setting("silent"),
        }

    def _photo(self, message: Message) -> dict[str, Any]:
        """sendPhoto fields: the image by URL (Telegram fetches it, ≤ 5 MB) and the caption."""
        return {
            "photo": message.image_url,
            "caption": message.caption,
            "parse_mode": message.parse_mode or "HTML",
            "disable_notification": self.setting("silent"),
        }

    def _result(self, answer: dict, fallback: str, message: Message) -> SendResult:
        """The SendResult of a sent Message object, with what an edit or delete needs."""
        message_id = answer.get("message_id")
        chat = found if isinstance(found := answer.get("chat"), dict) else {}
        if not isinstance(message_id, int):
            raise self.no_id("sendMessage", 200)
        chat_id = chat.get("id", self._chat_id())
        username = str(chat.get("username") or "")
        photo = "photo" in answer
        details = {
            "kind": "photo" if photo else "text",
            "chat_id": chat_id,
            "message_id": message_id,
            "username": username,
            "photo": photo,
            # Whether an edit must replace the photo (editMessageMedia) or only its caption.
            "image_url": message.image_url if photo else "",
        }
        if fallback:
            details["photo_fallback"] = fallback
        return SendResult(
            external_id=f"{chat_id}:{message_id}",
            external_url=message_url(chat_id, username, message_id),
            details=details,
        )

    def _sent_message(self, delivery: Delivery) -> tuple[int | str, int, dict]:
        """The chat id and message id a send recorded (sent_details, else external_id
        "{chat}:{message}"), and the rest of what it recorded; PermanentError without them."""
        sent = dict(delivery.sent_details or {})
        chat_id, message_id = sent.get("chat_id"), sent.get("message_id")
        if chat_id in (None, "") or not isinstance(message_id, int):
            chat_part, _, message_part = str(delivery.external_id or "").rpartition(":")
            if not (re.fullmatch(r"-?\d+", chat_part) and message_part.isdigit()):
                raise PermanentError(
                    f"{self.label}: the delivery names no message (external_id {delivery.external_id!r})"
                )
            chat_id, message_id = int(chat_part), int(message_part)
        return chat_id, message_id, sent

    def _migrate(self, new_chat_id: int) -> None:
        """Store the supergroup's id in the target's settings (TARGETS.md: update the chat id)."""
        from syndicator.models import Target

        old = self.target.settings.get("chat_id")
        self.target.settings = {**self.target.settings, "chat_id": new_chat_id}
        if self.target.pk is not None:
            with transaction.atomic():
                row = Target.objects.select_for_update().get(pk=self.target.pk)
                row.settings = {**row.settings, "chat_id": new_chat_id}
                row.save(update_fields=["settings"])
        log.warning(
            "Telegram target %s: chat %s was upgraded to supergroup %s; chat_id updated",
            self.target.name,
            old,
            new_chat_id,
        )

    # --- settings -------------------------------------------------------------------------------

    def _client(self) -> httpx.Client:
        return http.client(self.base_url(), timeout=self.timeout())

    def _chat_id(self) -> int | str:
        """chat_id as the Bot API takes it: "@username" or an integer; TargetBroken otherwise."""
        raw = self.target.settings.get("chat_id")
        if isinstance(raw, int) and not isinstance(raw, bool):
            return raw
        value = str(raw or "").strip()
        if re.fullmatch(r"@\w{4,}", value):
            return value
        if re.fullmatch(r"-?\d+", value):
            return int(value)
        hint = f"; did you mean '@{value}'?" if re.fullmatch(r"[A-Za-z]\w{3,}", value) else ""
        raise TargetBroken(
            f"Telegram: chat_id {value!r} of target {self.target.name!r} is neither @channelusername "
            f"nor a numeric id{hint}"
        )
