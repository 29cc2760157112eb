"""Every error syndicator raises on purpose, in one tree.

    SyndicatorError
    ├── DeliveryError              raised by target adapters; decides what the retry policy does
    │   ├── TransientError         timeout before the request left, connection refused, 5xx: retry
    │   │   └── RateLimited        429 and friends: retry, not before ``retry_after`` seconds
    │   ├── PermanentError         this content or this configuration will never work: fail now
    │   │   ├── TargetBroken       the target itself is broken (dead token, kicked bot): pause it
    │   │   └── Skipped            this post does not suit this network (a Pin needs an image)
    │   └── OutcomeUnknown         the request left and no answer came: it may have been posted
    ├── FeedError                  raised while fetching or parsing a feed; recorded on the feed
    │   ├── FeedFetchError         network error, timeout, HTTP error status, too many redirects
    │   ├── FeedTooLarge           the body passed the size cap
    │   └── FeedParseError         the body is not a feed
    └── UserError                  a mistake in a command or a form: one clear line, no traceback

Adapters map their network's codes to these classes with an explicit table, in one place each.
"""

from __future__ import annotations


class SyndicatorError(Exception):
    """Base of all syndicator errors."""


class DeliveryError(SyndicatorError):
    """A delivery attempt did not succeed; the subclass says what to do next.

    Every network error carries the HTTP status it came with (None when there was no answer) and
    the wait the network asked for, in seconds (None when it asked for none).
    """

    # Whether this class always waits before the next try (RateLimited): the retry policy's floor.
    waits: bool = False

    def __init__(
        self, message: str, *, http_status: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.http_status = http_status
        self.retry_after = retry_after


class TransientError(DeliveryError):
    """Worth retrying later: nothing was posted."""


class RateLimited(TransientError):
    """The network asks us to wait ``retry_after`` seconds before trying again."""

    waits = True


class PermanentError(DeliveryError):
    """Retrying cannot help: the content was rejected or the configuration is wrong."""


class Skipped(PermanentError):
    """This post does not suit this network (a Pin without an image): nothing is sent, and that
    is not a failure of the target; the delivery ends ``skipped`` with the reason."""


class EditRefused(PermanentError):
    """The network will not make this change to a post that is out (its edit window passed, it
    was edited as often as allowed, this kind of post cannot be edited): the post stays as it
    was, the delivery stays ``sent``, and the reason is shown. Never a failure of the delivery."""


class TargetBroken(PermanentError):
    """The target cannot deliver anything until someone fixes it (dead token, no rights)."""


class OutcomeUnknown(DeliveryError):
    """The request may have reached the network: re-sending it blindly could post twice."""


class FeedError(SyndicatorError):
    """A feed could not be fetched or read."""

    def __init__(self, message: str, *, http_status: int | None = None) -> None:
        super().__init__(message)
        self.http_status = http_status


class FeedFetchError(FeedError):
    """Network error, timeout, HTTP error status or a redirect problem; a 429 or 503 may say
    how long to wait (``retry_after`` seconds)."""

    def __init__(self, message: str, *, http_status: int | None = None, retry_after: float | None = None):
        super().__init__(message, http_status=http_status)
        self.retry_after = retry_after


class FeedTooLarge(FeedError):
    """The response body is larger than the configured cap."""


class FeedParseError(FeedError):
    """The response body is not an RSS or Atom feed."""


class UserError(SyndicatorError):
    """A user's mistake (unknown feed, bad URL): shown as one line, never as a traceback."""
