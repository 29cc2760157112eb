"""The mailing-list side of email: addresses, signed unsubscribe links, each subscriber's message.

Shared by the email adapter (syndicator/targets/email.py), the unsubscribe view and the
``subscribers`` command. Every subscriber gets a personal copy: their own List-Unsubscribe URL
(RFC 2369, with RFC 8058 one-click) and a Message-ID derived from the post and the address, so a
re-send carries the same id.
"""

from __future__ import annotations

import email.policy
import hashlib
import html
import re
from dataclasses import dataclass
from email.headerregistry import Address, HeaderRegistry, UnstructuredHeader
from email.message import EmailMessage
from email.policy import Policy
from email.utils import formatdate
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core import signing
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.urls import reverse
from django.utils import timezone
from django.utils.crypto import constant_time_compare

if TYPE_CHECKING:
    from email.headerregistry import BaseHeader as _Header

    from syndicator.formatting import Message
    from syndicator.models import Subscriber
else:
    # HeaderRegistry makes the real class from this one and BaseHeader (its fold, its name), which
    # typeshed's UnstructuredHeader does not say; a base for the type checker only.
    _Header = object


class UriListHeader(UnstructuredHeader, _Header):
    """List-Unsubscribe: <URI>s (RFC 2369), folded only between them and never encoded.

    The default policy would turn a URI longer than a line into RFC 2047 encoded-words, which
    mail providers do not decode there, so one-click unsubscribe would silently stop working.
    """

    def fold(self, *, policy: Policy) -> str:
        uris = re.findall(r"<[^<>]*>", str(self))
        if not uris or not str(self).isascii():  # not URIs as we write them: fold the usual way
            return super().fold(policy=policy)
        return f"{self.name}: " + f",{policy.linesep} ".join(uris) + policy.linesep


_HEADERS = HeaderRegistry()
_HEADERS.map_to_type("list-unsubscribe", UriListHeader)
# The default policy with 7-bit transfer encodings: for non-ASCII text it would pick 8bit, which a
# server that does not announce 8BITMIME may refuse (RFC 6152); base64/quoted-printable go anywhere.
POLICY = email.policy.default.clone(cte_type="7bit", header_factory=_HEADERS)
# The same, with the CRLF line ends SMTP's DATA needs.
WIRE = POLICY.clone(linesep="\r\n")

UNSUBSCRIBE_SALT = "syndicator.unsubscribe"
ONE_CLICK = "List-Unsubscribe=One-Click"  # RFC 8058 §3.1: the header value and the POST body
# The footer link's text in the post's language; English otherwise.
UNSUBSCRIBE_LABELS = {"ar": "إلغاء الاشتراك", "fa": "لغو اشتراک"}


@dataclass(frozen=True)
class Sender:
    """Who a list's mail comes from, and how the list names itself."""

    address: str
    name: str = ""
    reply_to: str = ""
    list_id: str = ""
    unsubscribe_mailto: str = ""


# --- addresses ----------------------------------------------------------------------------------


def ascii_address(address: str) -> str | None:
    """The address with its domain in IDNA (ASCII) form; None if the local part is not ASCII
    (that needs SMTPUTF8, which we do not use)."""
    local, _, domain = address.strip().rpartition("@")
    if not local or not local.isascii():
        return None
    try:
        return f"{local}@{domain.encode('idna').decode('ascii').lower()}"
    except UnicodeError:
        return None


def normalize_email(address: str) -> str:
    """A valid address with its domain lower-cased and in ASCII; ValidationError otherwise."""
    normalized = ascii_address(address.strip())
    if normalized is None:
        raise ValidationError("not an address we can send to")
    validate_email(normalized)
    return normalized


# --- unsubscribe links --------------------------------------------------------------------------


def _signer() -> signing.TimestampSigner:
    return signing.TimestampSigner(salt=UNSUBSCRIBE_SALT)


def _email_digest(address: str) -> str:
    return hashlib.sha256(address.strip().lower().encode()).hexdigest()[:16]


def unsubscribe_token(subscriber: Subscriber) -> str:
    """A signed, timestamped token naming one subscriber: its id and a hash of its address."""
    return _signer().sign(f"{subscriber.pk}.{_email_digest(subscriber.email)}")


def unsubscribe_url(subscriber: Subscriber) -> str:
    """The subscriber's one-click unsubscribe URL under settings.SYNDICATOR_PUBLIC_URL."""
    path = reverse("unsubscribe", args=[unsubscribe_token(subscriber)])
    return settings.SYNDICATOR_PUBLIC_URL.rstrip("/") + path


def subscriber_for_token(token: str) -> Subscriber:
    """The subscriber a token names; signing.SignatureExpired or signing.BadSignature otherwise."""
    from syndicator.models import Subscriber

    value = _signer().unsign(token, max_age=settings.SYNDICATOR_UNSUBSCRIBE_MAX_AGE)
    pk, _, digest = value.partition(".")
    subscriber = Subscriber.objects.filter(pk=int(pk)).first() if pk.isdigit() else None
    # The address must still match: a reused id or a changed address unsubscribes nobody.
    if subscriber is None or not constant_time_compare(digest, _email_digest(subscriber.email)):
        raise signing.BadSignature("the token names no current subscriber")
    return subscriber


def unsubscribe(subscriber: Subscriber) -> bool:
    """Stop mail to a subscriber; False if they had already unsubscribed."""
    from syndicator.models import Subscriber

    return bool(
        Subscriber.objects.filter(pk=subscriber.pk, unsubscribed_at__isnull=True).update(
            unsubscribed_at=timezone.now()
        )
    )


# --- the message --------------------------------------------------------------------------------


def make_message_id(post: Any, address: str, from_address: str) -> str:
    """A deterministic Message-ID per post and recipient, so a re-send is recognisable."""
    digest = hashlib.sha256(f"{post.guid}|{post.feed_id}|{address.strip().lower()}".encode()).hexdigest()
    return f"<{digest[:32]}@{from_address.rpartition('@')[2].lower()}>"


def build_message(sender: Sender, message: Message, subscriber: Subscriber, message_id: str) -> EmailMessage:
    """One subscriber's MIME message: text and HTML alternatives, list headers, an unsubscribe footer."""
    link = unsubscribe_url(subscriber)
    unsubscribe_targets = [f"<{link}>"]  # RFC 8058 wants the HTTPS one; mailto is a fallback
    if sender.unsubscribe_mailto:
        unsubscribe_targets.append(f"<mailto:{sender.unsubscribe_mailto}?subject=unsubscribe>")
    msg = EmailMessage(policy=POLICY)
    msg["From"] = Address(sender.name, addr_spec=sender.address)
    msg["To"] = Address(subscriber.name, addr_spec=ascii_address(subscriber.email) or subscriber.email)
    if sender.reply_to:
        msg["Reply-To"] = sender.reply_to
    msg["Subject"] = message.subject
    msg["Date"] = formatdate(usegmt=True)
    msg["Message-ID"] = message_id
    if sender.list_id:
        msg["List-Id"] = f"<{sender.list_id}>"
    msg["List-Unsubscribe"] = ", ".join(unsubscribe_targets)
    msg["List-Unsubscribe-Post"] = ONE_CLICK
    # A visible link too: mailbox providers ask bulk senders for one in the body, not only headers.
    label = UNSUBSCRIBE_LABELS.get((message.language or "").split("-")[0].lower(), "Unsubscribe")
    msg.set_content(f"{message.text.rstrip()}\n\n{label}: {link}\n")
    if message.html:
        footer = (
            f'<p style="color: #666; font-size: 0.85em;">'
            f'<a href="{html.escape(link)}">{html.escape(label)}</a></p>\n'
        )
        body, end_tag, rest = message.html.rpartition("</body>")
        page = f"{body}{footer}{end_tag}{rest}" if end_tag else message.html + footer
        msg.add_alternative(page, subtype="html")  # multipart/alternative: text first, then HTML
    if message.language:  # after the body: set_content() drops every Content-* header
        msg["Content-Language"] = message.language
    return msg
