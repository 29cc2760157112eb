"""The JSON API's request and response shapes (the OpenAPI schema is generated from these)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from ninja import Field, Schema
from pydantic import AfterValidator, BaseModel, ConfigDict

from syndicator.models import Delivery, DeliveryAttempt

# The largest id SQLite and PostgreSQL's bigint hold: a bigger one would be a driver error (a 500).
MAX_ID = 2**63 - 1
PAGE_SIZE = 50
MAX_PAGE_SIZE = 200
# Deeper than any real log; bounds the OFFSET the database is asked for.
MAX_OFFSET = 10**9
# Above every network's limit (the largest is a Page post's 63,206), so the limit check names the
# network; the cap bounds the work of measuring (a weighted count costs ~6 ms per 1,000 characters).
MAX_TEXT = 100_000


def _storable(value: str) -> str:
    """Refuse text no database can store: NUL (PostgreSQL) and lone surrogates (UTF-8)."""
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode (no lone surrogates)") from None
    return value


StorableText = Annotated[str, AfterValidator(_storable)]
Id = Annotated[int, Field(ge=1, le=MAX_ID)]


class Error(Schema):
    """Every error answer: one sentence saying what is wrong."""

    detail: str


class RepostRejected(Schema):
    """A repost refused because of what was asked: the reason per target."""

    detail: str
    targets: dict[str, str]


class RepostIn(BaseModel):
    """What to repost: target names (default: every enabled target) and an optional text."""

    # A plain pydantic model, not a ninja Schema: a body of `null` or `[]` is refused instead of
    # read as "every target, default text", and a misspelt field is an error, not ignored.
    model_config = ConfigDict(extra="forbid")

    targets: list[Annotated[StorableText, Field(max_length=100)]] | None = Field(
        None, description="Target names; omit for every enabled target.", max_length=100
    )
    text: Annotated[StorableText, Field(max_length=MAX_TEXT)] = Field(
        "", description="Send this text instead of the rendered message; the post's link is added."
    )
    breaking: bool = Field(
        False, description="The breaking lane: skip quiet hours and spacing (docs/pacing.md)."
    )
    at: datetime | None = Field(
        None,
        description="Send at this time; without an offset it is read in each target's timezone setting "
        "(else the site's). It waits, queued, and can be cancelled until it leaves.",
    )


class FollowupIn(BaseModel):
    """Which targets an edit or a delete everywhere is for, and whether only to see the plan."""

    # A plain pydantic model, as RepostIn: a misspelt field is an error, not ignored.
    model_config = ConfigDict(extra="forbid")

    targets: list[Annotated[StorableText, Field(max_length=100)]] | None = Field(
        None, description="Target names the post was delivered to; omit for every one.", max_length=100
    )
    dry_run: bool = Field(False, description="Only say what each target would do; change nothing.")


class PlanOut(Schema):
    """What one target does about the edit or the delete (syndicator.followup.Plan)."""

    delivery: int = Field(description="The post's delivery to this target.")
    target: str
    action: str = Field(description="edit or delete.")
    asked: bool = Field(
        description="Asked of the target (a worker does it), or, in a dry run, would be; false: "
        "it is not, and reason says why."
    )
    reason: str = Field(description="Why not; or, asked, what else to know (e.g. not sent yet: cancelled).")


class PlansOut(Schema):
    """The plan of an edit or a delete everywhere, one entry per delivery of the post."""

    plans: list[PlanOut]


class PostDelivery(Schema):
    """One delivery of a post, as a post list shows it."""

    id: int
    target: str
    status: str
    origin: str
    created_at: datetime


class PostOut(Schema):
    """A post and where it went."""

    id: int
    feed_id: int
    feed: str
    url: str
    title: str
    language: str
    published_at: datetime | None
    first_seen_at: datetime
    deliveries: list[PostDelivery]


class PostPage(Schema):
    """One page of posts, newest first."""

    count: int
    limit: int
    offset: int
    items: list[PostOut]


class DeliveryOut(Schema):
    """A delivery, with the fields ``syndicator log --json`` prints."""

    id: int
    post_id: int
    post_url: str
    post_title: str
    feed_id: int
    target: str
    target_kind: str
    status: str
    origin: str
    requested_by: str
    attempts: int
    action: str = Field(
        description='What the latest attempt was about: "send", "edit" or "delete" ("send" before '
        "the first one; a look-up and a person's verdict count as send)."
    )
    history: str = Field(description='The delivery\'s life in a few words: "sent, edited 2 times, deleted".')
    text: str = Field(
        description="The message as the network shows it now (after its edits), or as it would be sent."
    )
    external_id: str
    external_url: str
    last_error: str
    created_at: datetime
    sent_at: datetime | None
    next_attempt_at: datetime | None
    edits: int = Field(description="Edits applied on the network.")
    followup: str = Field(description="A follow-up asked for and not done yet: edit, delete or empty.")
    followup_by: str = Field(description="Who asked for it (an editor's name); empty when syndicator did.")
    followup_note: str = Field(
        description="Why the last edit or delete did not happen, or why the post waits for an editor."
    )
    flagged_at: datetime | None = Field(
        description="The article was unpublished and the target's on_unpublish is flag: an editor decides."
    )
    deleted_at: datetime | None
    deleted_by: str = Field(
        description='Who or what decided the deletion: "editor NAME" or "syndicator: <reason>".'
    )


class AttemptOut(Schema):
    """One try at sending, editing or deleting: the delivery's timeline."""

    number: int
    action: str = Field(
        description="send, edit or delete: what the attempt was about (a look-up and a verdict "
        "count as send)."
    )
    started_at: datetime
    finished_at: datetime | None
    duration_ms: int | None
    outcome: str
    http_status: int | None
    error_class: str
    message: str
    retry_after: float | None
    kind: DeliveryAttempt.Kind = Field(
        description="send, lookup (asking the network whether an uncertain one went out), verdict "
        "(a person's decision: marked sent or not sent, retried, cancelled), edit or delete."
    )
    actor: str = Field(
        description="Who made a verdict or asked for the edit or delete (their user name); empty "
        "for the system."
    )
    text_before: str = Field(description="An edit's text as the network showed it before.")
    text_after: str = Field(description="An edit's text as the network was asked to show it.")


class DeliveryDetail(DeliveryOut):
    """A delivery with its attempts, oldest first."""

    attempt_log: list[AttemptOut]


class DeliveryPage(Schema):
    """One page of the delivery log, newest first."""

    count: int
    limit: int
    offset: int
    items: list[DeliveryOut]


class Paging(Schema):
    """Which page: ``limit`` rows from ``offset``."""

    limit: int = Field(PAGE_SIZE, ge=1, le=MAX_PAGE_SIZE)
    offset: int = Field(0, ge=0, le=MAX_OFFSET)


class DeliveryFilters(Paging):
    """The delivery log's filters; the same as the admin's."""

    status: list[Delivery.Status] = Field(default_factory=list, description="Any of these statuses.")
    target: Annotated[StorableText, Field(max_length=100)] | None = Field(
        None, description="A target's name."
    )
    feed: Id | None = Field(None, description="A feed's id.")
    origin: Delivery.Origin | None = None
    since: datetime | None = Field(None, description="Created at or after (ISO 8601).")
    until: datetime | None = Field(None, description="Created before (ISO 8601).")
    q: Annotated[StorableText, Field(max_length=200)] | None = Field(
        None, description="Search the post title, the post URL and the last error."
    )


class PostFilters(Paging):
    """The post list's filters."""

    feed: Id | None = Field(None, description="A feed's id.")


class PushOut(Schema):
    """A feed's push: WebSub state and when a push last arrived (syndicator.websub)."""

    state: str = Field(description="none, pending, subscribed or failed.")
    detail: str = Field(description='As the feeds list shows it: "subscribed until …", "failed: <reason>".')
    hub_url: str
    expires_at: datetime | None
    last_push_at: datetime | None


class FeedOut(Schema):
    """A watched feed, its polling and its push."""

    id: int
    name: str
    url: str
    enabled: bool
    poll_interval: int = Field(description="Seconds between polls; with poll_interval_max, the shortest.")
    poll_interval_max: int | None = Field(description="Longest seconds between polls (adaptive); null: fixed")
    last_polled_at: datetime | None
    next_poll_at: datetime
    last_error: str
    push: PushOut


class HealthItem(Schema):
    """One feed's or target's verdict (syndicator.health)."""

    id: int
    name: str
    state: str
    reason: str


class HealthOut(Schema):
    """Liveness for anyone; with credentials, the health of every feed and target too."""

    status: str = Field(description="ok: the web app and its database answer.")
    feeds: list[HealthItem] | None = None
    targets: list[HealthItem] | None = None
    deliveries: dict[str, int] | None = Field(None, description="Deliveries by status.")
    oldest_queued_age_seconds: float | None = None
