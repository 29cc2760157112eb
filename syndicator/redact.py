"""Redaction of secrets in text that is logged or stored (some APIs carry the token in the URL)."""

from __future__ import annotations

import logging
import re
import traceback

# A bot token in a URL path (/bot<id>:<secret>/); access_token= and similar query parameters;
# user:password@ in URLs; Authorization headers echoed in errors.
_PATTERNS = [
    (re.compile(r"/bot\d+:[A-Za-z0-9_-]+"), "/bot<redacted>"),
    (
        re.compile(r"(?i)\b(access_token|token|api_key|apikey|password|secret|key)=([^&\s\"']+)"),
        r"\1=<redacted>",
    ),
    # oauthlib's Client repr, which requests_oauthlib logs at DEBUG: an OAuth consumer key and token.
    (re.compile(r"(?i)\b(client_key|resource_owner_key)=([^,\s>]+)"), r"\1=<redacted>"),
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)([^/\s:@]+):([^/\s@]+)@"), r"\1\2:<redacted>@"),
    (re.compile(r"(?i)\b(authorization:\s*)(bearer|basic)\s+[^\s,]+"), r"\1\2 <redacted>"),
    # OAuth 1.0a parameters (oauth_token, oauth_consumer_key, oauth_signature...), in the header
    # (key="value"), and as oauthlib logs them at DEBUG: ('key', 'value'), key=value, key%3Dvalue.
    (re.compile(r"(?i)\b(oauth_[a-z_]+)=\"[^\"]*\""), r'\1="<redacted>"'),
    (re.compile(r"(?i)\('(oauth_[a-z_]+)',\s*'[^']*'\)"), r"('\1', '<redacted>')"),
    (re.compile(r"(?i)\b(oauth_[a-z_]+)=([^&\s\"',)]+)"), r"\1=<redacted>"),
    (re.compile(r"(?i)(oauth_[a-z_]+)%3D([^%&\s]+)"), r"\1%3D<redacted>"),  # after "%26": no \b
    # AT Protocol sessions: tokens and the app password as JSON fields (a body echoed in an error),
    # and any JWT (header.payload.signature, base64url), as a Bearer header would carry it.
    (
        re.compile(r"(?i)([\"']?(?:accessJwt|refreshJwt|password)[\"']?\s*:\s*)[\"'][^\"']*[\"']"),
        r"\1'<redacted>'",
    ),
    (re.compile(r"\beyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"), "<redacted-jwt>"),
]


def redact(text: str) -> str:
    """Return text with tokens, passwords and credentials in URLs replaced by <redacted>."""
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def redact_record(record: logging.LogRecord) -> logging.LogRecord:
    """record with its message, and its traceback if it has one, redacted (in place)."""
    try:
        message = record.getMessage()
    except Exception:  # arguments that do not fit the format: logging reports that itself
        return record
    cleaned = redact(message)
    if cleaned != message:
        record.msg, record.args = cleaned, None
    if record.exc_info and not record.exc_text:
        # Formatters use exc_text when it is set, so the traceback is written redacted too.
        record.exc_text = redact("".join(traceback.format_exception(*record.exc_info)).rstrip("\n"))
    return record


def install_log_redaction() -> None:
    """Redact every log record as it is made, whatever logger makes it and whichever handler gets
    it (httpx logs each request URL, and a token may be part of it). Idempotent."""
    make = logging.getLogRecordFactory()
    if getattr(make, "redacting", False):
        return

    def make_redacted(*args: object, **kwargs: object) -> logging.LogRecord:
        return redact_record(make(*args, **kwargs))

    make_redacted.redacting = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(make_redacted)


class RedactSecretsFilter(logging.Filter):
    """Logging filter that redacts every record's formatted message before it is written."""

    def filter(self, record: logging.LogRecord) -> bool:
        redact_record(record)
        return True
