"""Redaction of secrets in text that is logged or stored (URLs carry Telegram bot tokens)."""

from __future__ import annotations

import logging
import re

# /bot<id>:<secret>/ in Telegram Bot API URLs; access_token= and similar query parameters;
# user:password@ in URLs; Authorization headers echoed in errors.
_PATTERNS = [
    (re.compile(r"/bot\d+:[A-Za-z0-9_-]+"), "/bot<redacted>"),
    (
        re.compile(r"(?i)\b(access_token|token|api_key|apikey|password|secret|key)=([^&\s\"']+)"),
        r"\1=<redacted>",
    ),
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)([^/\s:@]+):([^/\s@]+)@"), r"\1\2:<redacted>@"),
    (re.compile(r"(?i)\b(authorization:\s*)(bearer|basic)\s+[^\s,]+"), r"\1\2 <redacted>"),
    # OAuth 1.0a header parameters: every one of oauth_token, oauth_consumer_key, oauth_signature...
    (re.compile(r"(?i)\b(oauth_[a-z_]+)=\"[^\"]*\""), r'\1="<redacted>"'),
]


def redact(text: str) -> str:
    """Return text with tokens, passwords and credentials in URLs replaced by <redacted>."""
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class RedactSecretsFilter(logging.Filter):
    """Logging filter that redacts every record's formatted message before it is written."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True
