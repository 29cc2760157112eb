"""The data model: feeds and the posts read from them, targets, and the delivery log."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from syndicator.targets.registry import OUTBOX, kind_choices


class Feed(models.Model):
    """An RSS/Atom feed that is polled for new posts."""

    class Status(models.TextChoices):
        NEW = "new", "not polled yet"
        OK = "ok", "ok"
        NOT_MODIFIED = "not_modified", "not modified"
        ERROR = "error", "error"

    url = models.URLField(max_length=2000, unique=True)
    name = models.CharField(max_length=200, blank=True)
    language = models.CharField(max_length=16, blank=True, help_text="Edition language, e.g. en, ar, fa.")
    enabled = models.BooleanField(default=True)
    poll_interval = models.PositiveIntegerField(
        default=300, help_text="Seconds between polls; with a longest interval, the shortest one."
    )
    # Adaptive polling (syndicator/rhythm.py): the feed is polled by its publishing rhythm between
    # poll_interval and this; empty: every poll_interval.
    poll_interval_max = models.PositiveIntegerField(
        null=True, blank=True, help_text="Longest seconds between polls (adaptive polling); empty: fixed."
    )
    # Newest items the first poll delivers; the rest of a new feed's backlog is only recorded.
    backfill = models.PositiveIntegerField(default=0)

    etag = models.CharField(max_length=500, blank=True)
    last_modified = models.CharField(max_length=100, blank=True)
    body_hash = models.CharField(max_length=64, blank=True)
    hub_url = models.URLField(max_length=2000, blank=True, help_text="WebSub hub the feed names.")
    # The feed's own URL as it names it (rel="self"): the WebSub topic.
    self_url = models.URLField(max_length=2000, blank=True, help_text="The feed's self URL (WebSub topic).")
    last_push_at = models.DateTimeField(null=True, blank=True)
    # Random, not a secret by itself: the webhook secret is derived from it and SECRET_KEY
    # (syndicator/webhook.py); empty means no webhook; a new one rotates the secret.
    webhook_key = models.CharField(max_length=64, blank=True, editable=False)
    # webhook-id → unix time, for the last few minutes: a replayed call is refused.
    webhook_seen = models.JSONField(default=dict, blank=True, editable=False)

    next_poll_at = models.DateTimeField(default=timezone.now, db_index=True)
    # Lease held by the poll in progress: a feed is never polled twice at once.
    polling_until = models.DateTimeField(null=True, blank=True)
    last_polled_at = models.DateTimeField(null=True, blank=True)
    last_success_at = models.DateTimeField(null=True, blank=True)
    first_polled_at = models.DateTimeField(null=True, blank=True)
    last_status = models.CharField(max_length=20, choices=Status.choices, default=Status.NEW)
    last_http_status = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    consecutive_failures = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return self.name or self.url


class PushSubscription(models.Model):
    """A WebSub subscription of a feed at its hub (syndicator/websub.py).

    The row outlives its feed (feed set to NULL) until the hub has confirmed the unsubscription.
    Its hub.secret is derived from callback_key and SECRET_KEY, never stored.
    """

    class State(models.TextChoices):
        PENDING = "pending"
        SUBSCRIBED = "subscribed"
        FAILED = "failed"
        UNSUBSCRIBING = "unsubscribing"

    feed = models.ForeignKey(
        Feed, null=True, blank=True, on_delete=models.SET_NULL, related_name="push_subscriptions"
    )
    hub_url = models.URLField(max_length=2000)
    topic_url = models.URLField(max_length=2000)
    # The last segment of the callback URL: random, so no one can guess another's callback.
    callback_key = models.CharField(max_length=64, unique=True)
    state = models.CharField(max_length=20, choices=State.choices, default=State.PENDING)
    # The request the hub has yet to verify ("subscribe", "unsubscribe"), and when it was made.
    pending_mode = models.CharField(max_length=20, blank=True)
    requested_at = models.DateTimeField(null=True, blank=True)
    lease_seconds = models.PositiveIntegerField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True, help_text="The hub's reason, redacted.")
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            # A poll and the beat's round deciding to subscribe at the same moment make one.
            models.UniqueConstraint(
                fields=["feed"],
                condition=Q(state__in=["pending", "subscribed", "failed"]),
                name="push_one_live_subscription_per_feed",
            )
        ]

    def __str__(self) -> str:
        return f"push subscription {self.pk} of feed {self.feed_id}: {self.state}"


class Target(models.Model):
    """A place posts are delivered to: a channel, a page, an account, a mailing list."""

    name = models.CharField(max_length=100, unique=True)
    # The networks in syndicator/targets/, read from the registry: a new one needs no migration.
    kind = models.CharField(max_length=20, choices=kind_choices)
    enabled = models.BooleanField(default=True)
    paused_at = models.DateTimeField(null=True, blank=True)
    paused_reason = models.TextField(blank=True)
    # When an admin last resumed the paused target: its failing streak counts attempts since.
    resumed_at = models.DateTimeField(null=True, blank=True)
    # Per-kind settings (chat id, page id, the format an outbox imitates, ...); never a secret.
    settings = models.JSONField(default=dict, blank=True)
    # Name of the environment variable holding the secret; the secret never enters the database.
    secret_env = models.CharField(max_length=100, blank=True)
    template_overrides = models.JSONField(default=dict, blank=True)
    # Filters: empty means "all".
    feeds = models.ManyToManyField(Feed, blank=True, related_name="targets")
    languages = models.JSONField(default=list, blank=True)
    categories = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return self.name

    @property
    def is_active(self) -> bool:
        return self.enabled and self.paused_at is None

    @property
    def message_format(self) -> str:
        """The network whose format this target's messages take (an outbox imitates one)."""
        if self.kind == OUTBOX:
            from syndicator.targets.registry import formats

            return self.settings.get("format") or formats()[0]
        return self.kind


class Post(models.Model):
    """One item of a feed, normalized and sanitized, stored once per (feed, guid)."""

    feed = models.ForeignKey(Feed, on_delete=models.CASCADE, related_name="posts")
    guid = models.CharField(max_length=2000)
    url = models.URLField(max_length=2000, blank=True)
    title = models.TextField(blank=True)
    summary = models.TextField(blank=True)
    content = models.TextField(blank=True, help_text="Sanitized HTML.")
    author = models.CharField(max_length=300, blank=True)
    categories = models.JSONField(default=list, blank=True)
    image_url = models.URLField(max_length=2000, blank=True)
    enclosures = models.JSONField(default=list, blank=True)
    language = models.CharField(max_length=16, blank=True)
    published_at = models.DateTimeField(null=True, blank=True)
    first_seen_at = models.DateTimeField(default=timezone.now, db_index=True)
    # Identity across the feeds of one site (syndicator/canonical.py, docs/article-life.md): the
    # canonical link, and the guid's key (a WordPress ?p=ID guid next to the permalink link).
    canonical_url = models.CharField(max_length=2000, blank=True, db_index=True)
    guid_key = models.CharField(max_length=2000, blank=True, db_index=True)
    # Set on a sighting of an article already stored from another feed of the site: the post that
    # is delivered. A sighting has no deliveries; its feed counts for the targets' feed filters.
    same_as = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.CASCADE, related_name="sightings"
    )
    # Edits at the source: 1 when first stored, +1 per change seen (watch._store_body).
    version = models.PositiveIntegerField(default=1)
    # The item's Atom <updated> as last stored: an older or equal one is not an edit.
    source_updated_at = models.DateTimeField(null=True, blank=True)
    # sha256 of the item as parsed (before sanitizing): an unchanged item costs no sanitizing.
    source_hash = models.CharField(max_length=64, blank=True)
    # Whether the item was in its feed's last parsed body: leaving it is what "vanished" means.
    in_feed = models.BooleanField(default=True)
    unpublished_at = models.DateTimeField(null=True, blank=True)
    unpublished_reason = models.TextField(blank=True)

    class Meta:
        ordering = ["-first_seen_at", "-id"]
        constraints = [models.UniqueConstraint(fields=["feed", "guid"], name="post_unique_guid_per_feed")]

    def __str__(self) -> str:
        return self.title or self.url or self.guid


class Delivery(models.Model):
    """One post to one target: the unit that is queued, sent, retried and logged."""

    class Status(models.TextChoices):
        QUEUED = "queued"
        SENDING = "sending"
        SENT = "sent"
        RETRYING = "retrying"
        FAILED = "failed"
        UNCERTAIN = "uncertain"
        SKIPPED = "skipped"
        CANCELLED = "cancelled"
        # Following the article (syndicator/followup.py): a sent post being edited or deleted on
        # its network, and one that was deleted there.
        EDITING = "editing"
        DELETING = "deleting"
        DELETED = "deleted"

    class Followup(models.TextChoices):
        """What is to be done next to a sent post (syndicator/followup.py)."""

        NONE = "", "nothing"
        EDIT = "edit"  # the article changed: re-render and edit the network's post
        DELETE = "delete"  # the article was pulled, or an editor asked: delete it

    class Origin(models.TextChoices):
        AUTO = "auto"
        MANUAL = "manual"

    class Wait(models.TextChoices):
        """Why a queued delivery waits until next_attempt_at (syndicator/pacing.py)."""

        NONE = "", "not waiting"
        PACING = "pacing"  # the target's min_interval
        DAILY_LIMIT = "daily limit"  # the target's (or its tier's) sends in 24 h
        QUIET_HOURS = "quiet hours"
        RATE_LIMIT = "rate limit"  # a network's declared hard limit, or its 429
        RETRY = "retry"
        SCHEDULED = "scheduled"  # an editor picked the time

    # The delivery log is append-only: a post, a feed or a target with deliveries cannot be
    # deleted by any path (admin, CLI, a shell), since a cascade would delete the log with it.
    post = models.ForeignKey(Post, on_delete=models.PROTECT, related_name="deliveries")
    target = models.ForeignKey(Target, on_delete=models.PROTECT, related_name="deliveries")
    origin = models.CharField(max_length=10, choices=Origin.choices, default=Origin.AUTO)
    requested_by = models.CharField(max_length=150, blank=True)
    text_override = models.TextField(blank=True)
    # The breaking lane: skips quiet hours and the target's spacing, never a network's hard limit.
    breaking = models.BooleanField(default=False)
    # An editor's "send now" from the queue: like breaking, for this one delivery.
    unpaced = models.BooleanField(default=False)
    wait_reason = models.CharField(max_length=20, choices=Wait.choices, blank=True, default="")
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.QUEUED)
    attempts = models.PositiveIntegerField(default=0)
    # Attempts made before the current retry budget began (an admin retry starts a new one).
    budget_start = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    # When a task message was last sent for it; the sweeper re-sends one that was never claimed.
    enqueued_at = models.DateTimeField(null=True, blank=True)
    # While `sending`: past this instant its worker is presumed dead and the outcome unknown.
    lease_until = models.DateTimeField(null=True, blank=True)
    rendered_text = models.TextField(blank=True, help_text="The message as sent, or as it would be sent.")
    external_id = models.CharField(max_length=200, blank=True)
    external_url = models.URLField(max_length=2000, blank=True)
    # What the network said beyond the id when the post went out (SendResult.details: Telegram's
    # message kind, Bluesky's record cid, …): what a later edit or delete needs to address it.
    sent_details = models.JSONField(default=dict, blank=True)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    # Following the article after it went out (syndicator/followup.py, docs/followups.md).
    followup = models.CharField(max_length=8, choices=Followup.choices, blank=True, default="")
    # Who asked for the follow-up: an editor's name; empty when syndicator decided it.
    followup_by = models.CharField(max_length=150, blank=True)
    # The post version the network's text was rendered from (Post.version): a newer one is an edit.
    source_version = models.PositiveIntegerField(default=0)
    edits = models.PositiveIntegerField(default=0)  # edits applied on the network
    # Why the last follow-up did not happen, or what waits for an editor (kept while `sent`).
    followup_note = models.TextField(blank=True)
    # The article was unpublished and this target's policy is `flag`: an editor decides.
    flagged_at = models.DateTimeField(null=True, blank=True)
    deleted_at = models.DateTimeField(null=True, blank=True)
    # Who or what decided the deletion: "editor NAME" or "syndicator: <the reason>".
    deleted_by = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "deliveries"
        constraints = [
            # A feed seen twice never posts twice: one automatic delivery per post and target.
            models.UniqueConstraint(
                fields=["post", "target"], condition=Q(origin="auto"), name="delivery_unique_auto"
            )
        ]
        indexes = [
            models.Index(fields=["status", "next_attempt_at"], name="delivery_status_due"),
            # health.target_health's "failed or uncertain in the last day": a range, not the history.
            models.Index(fields=["target", "status", "updated_at"], name="delivery_target_status_upd"),
            # /metrics latency: the automatic deliveries sent in the last day.
            models.Index(
                fields=["sent_at"], condition=Q(status="sent", origin="auto"), name="delivery_sent_auto"
            ),
        ]
        # The Admins role has it (every syndicator permission); Editors do not (syndicator.roles).
        permissions = [("view_metrics", "Can read /metrics")]

    def __str__(self) -> str:
        return f"#{self.pk} {self.post} → {self.target}"


class Digest(models.Model):
    """One period of an email target in digest mode (syndicator/digest.py, docs/email.md "Digest").

    The row is the period's claim: the unique (target, period) makes the database refuse a second
    digest for one period, whatever the race between sweepers. Its delivery (None for a period
    without posts, which sends nothing and says so in ``note``) is sent like every delivery.
    """

    target = models.ForeignKey(Target, on_delete=models.CASCADE, related_name="digests")
    # "2026-12-03" (daily) or "2026-W49" (weekly), in the target's time zone: the day it is sent.
    period = models.CharField(max_length=20)
    # The posts first seen in [window_start, window_end): since the last digest, up to this one.
    window_start = models.DateTimeField()
    window_end = models.DateTimeField()
    delivery = models.OneToOneField(
        Delivery, null=True, blank=True, on_delete=models.SET_NULL, related_name="digest"
    )
    # What it carries, in the order the email shows them (``position`` of DigestPost).
    posts = models.ManyToManyField(Post, through="DigestPost", related_name="digests", blank=True)
    note = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-window_end", "-id"]
        constraints = [models.UniqueConstraint(fields=["target", "period"], name="digest_unique_period")]

    def __str__(self) -> str:
        return f"digest {self.period} of {self.target_id}"


class DigestPost(models.Model):
    """A post of a digest, at its place in the email."""

    digest = models.ForeignKey(Digest, on_delete=models.CASCADE, related_name="entries")
    post = models.ForeignKey(Post, on_delete=models.PROTECT, related_name="+")  # the log, as Delivery.post
    position = models.PositiveIntegerField()

    class Meta:
        ordering = ["digest_id", "position"]
        constraints = [models.UniqueConstraint(fields=["digest", "post"], name="digest_post_once")]

    def __str__(self) -> str:
        return f"{self.digest_id}#{self.position}: {self.post_id}"


class DeliveryAttempt(models.Model):
    """One try at sending a delivery: the delivery log admins read."""

    class Outcome(models.TextChoices):
        SENT = "sent"
        TRANSIENT = "transient", "transient error"
        RATE_LIMITED = "rate_limited", "rate limited"
        PERMANENT = "permanent", "permanent error"
        UNKNOWN = "unknown", "outcome unknown"
        LOST = "lost", "worker lost"
        # An admin's verdict on an uncertain delivery (delivery.mark_uncertain), not a send.
        MARKED_SENT = "marked_sent", "marked as sent"
        MARKED_NOT_SENT = "marked_not_sent", "marked as not sent"
        # A person's retry or cancel (syndicator.decisions), recorded so the timeline credits them.
        RETRIED = "retried", "retried"
        CANCELLED = "cancelled", "cancelled"
        # A person's send now or new time from the queue page (syndicator.queueing).
        RESCHEDULED = "rescheduled", "rescheduled"
        # The post does not suit the network (errors.Skipped): nothing was sent, nothing failed.
        SKIPPED = "skipped", "skipped"
        # An edit or delete the network will not make (window passed, too many edits): it stays.
        REFUSED = "refused", "refused by the network"
        # An edit whose re-rendered text is what the network already shows: nothing was sent.
        UNCHANGED = "unchanged", "unchanged, not sent"

    class Kind(models.TextChoices):
        SEND = "send"
        LOOKUP = "lookup", "look-up"  # asking the network whether an uncertain delivery went out
        VERDICT = "verdict"  # a person's decision: marked sent / not sent, retried, cancelled
        EDIT = "edit"
        DELETE = "delete"

    delivery = models.ForeignKey(Delivery, on_delete=models.CASCADE, related_name="attempt_log")
    number = models.PositiveIntegerField()
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.SEND)
    started_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    outcome = models.CharField(max_length=20, choices=Outcome.choices, blank=True)
    http_status = models.PositiveSmallIntegerField(null=True, blank=True)
    error_class = models.CharField(max_length=200, blank=True)
    message = models.TextField(blank=True, help_text="Redacted.")
    retry_after = models.FloatField(null=True, blank=True)
    # The worker's host name (sends and look-ups); empty for a person's verdict.
    worker = models.CharField(max_length=200, blank=True)
    task_id = models.CharField(max_length=200, blank=True)
    # Who decided a verdict; null for the system. The name stays when the user is deleted.
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    actor_name = models.CharField(max_length=150, blank=True)
    # An edit's text as the network showed it before, and as it was asked to read after.
    text_before = models.TextField(blank=True)
    text_after = models.TextField(blank=True)

    class Meta:
        ordering = ["delivery_id", "number"]
        constraints = [models.UniqueConstraint(fields=["delivery", "number"], name="attempt_unique_number")]
        indexes = [
            # target_health reads a target's newest finished attempts, failing_streak those since
            # its last success, prune those before the retention: each walks this index from the
            # recent end (or the old end) instead of sorting every attempt of the target.
            models.Index(fields=["finished_at"], name="attempt_finished"),
        ]

    def __str__(self) -> str:
        return f"attempt {self.number} of delivery {self.delivery_id}: {self.outcome or 'in progress'}"


class AttemptTally(models.Model):
    """Finished attempts per target and outcome up to a watermark (syndicator/metrics.py).

    /metrics counts only the attempts past the watermark and folds the settled ones in, so a
    scrape costs what happened since the last one, not the whole history. Attempt rows are
    append-only once finished (retention clears a message, never an outcome), which is what makes
    a running total exact.
    """

    target = models.ForeignKey(Target, on_delete=models.CASCADE, related_name="+")
    outcome = models.CharField(max_length=20)
    n = models.PositiveBigIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["target", "outcome"], name="attempt_tally_unique")]

    def __str__(self) -> str:
        return f"{self.target_id} {self.outcome}: {self.n}"


class TallyMark(models.Model):
    """The highest attempt id folded into AttemptTally (one row per tally name)."""

    name = models.CharField(max_length=50, unique=True)
    upto_id = models.BigIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.name} up to {self.upto_id}"


class SubscriberQuerySet(models.QuerySet):
    """Subscribers with the filters the email adapter and the CLI share."""

    def active(self) -> SubscriberQuerySet:
        """Those who get mail: neither unsubscribed nor suppressed."""
        return self.filter(unsubscribed_at__isnull=True, suppressed_at__isnull=True)


class Subscriber(models.Model):
    """One address on an email target's list; an unsubscribed or suppressed address gets no mail."""

    target = models.ForeignKey(
        Target, on_delete=models.CASCADE, related_name="subscribers", limit_choices_to={"kind": "email"}
    )
    email = models.EmailField()
    name = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    # Set by the one-click unsubscribe link (RFC 8058); the row stays, so an import never re-adds it.
    unsubscribed_at = models.DateTimeField(null=True, blank=True)
    # Set when the server refuses the address for good (a 5xx for the mailbox, TARGETS.md §4).
    suppressed_at = models.DateTimeField(null=True, blank=True)
    suppressed_reason = models.TextField(blank=True, help_text="The server's reply, redacted.")

    objects = SubscriberQuerySet.as_manager()

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["target", "email"], name="subscriber_unique_email_per_target")
        ]

    def __str__(self) -> str:
        return self.email

    @property
    def state(self) -> str:
        """active, unsubscribed or suppressed."""
        if self.unsubscribed_at:
            return "unsubscribed"
        return "suppressed" if self.suppressed_at else "active"


class EmailRecipientResult(models.Model):
    """What the SMTP server answered for one subscriber of one email delivery.

    An automatic retry sends only to the subscribers whose row is missing or deferred, so one bad
    address never blocks the rest and nobody gets the same post twice; an admin's retry also
    re-sends to the unknown and the refused (syndicator/targets/email.py).
    """

    class Status(models.TextChoices):
        ACCEPTED = "accepted"  # 2xx after the final "." of DATA
        DEFERRED = "deferred"  # 4xx, or the session broke before the message was sent: retry
        REFUSED = "refused"  # 5xx: never retried automatically
        # The message was sent and no reply came: it may have arrived. Written before DATA too,
        # so a worker killed mid-send leaves this, never a false "deferred".
        UNKNOWN = "unknown"

    delivery = models.ForeignKey(Delivery, on_delete=models.CASCADE, related_name="email_results")
    subscriber = models.ForeignKey(Subscriber, on_delete=models.CASCADE, related_name="results")
    status = models.CharField(max_length=10, choices=Status.choices)
    smtp_code = models.PositiveSmallIntegerField(null=True, blank=True)
    smtp_reply = models.TextField(blank=True, help_text="The server's last reply, redacted.")
    message_id = models.CharField(max_length=300, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["delivery_id", "subscriber_id"]
        constraints = [
            models.UniqueConstraint(fields=["delivery", "subscriber"], name="email_result_unique_recipient")
        ]
        # retention.prune deletes the results older than SYNDICATOR_RETENTION.
        indexes = [models.Index(fields=["updated_at"], name="email_result_updated")]

    def __str__(self) -> str:
        return f"delivery {self.delivery_id} to {self.subscriber_id}: {self.status}"


class ApiToken(models.Model):
    """A user's key to the JSON API and /metrics; only its SHA-256 is stored (see syndicator.tokens)."""

    class Scope(models.TextChoices):
        ALL = "", "the user's role"
        METRICS = "metrics", "/metrics only"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100, blank=True, help_text="What the token is for, e.g. the CMS hook.")
    # The token is shown once, at creation; a leaked database gives no usable key.
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    # Past this instant the token is refused; None: until revoked.
    expires_at = models.DateTimeField(null=True, blank=True)
    scope = models.CharField(max_length=20, choices=Scope.choices, blank=True, default=Scope.ALL)

    class Meta:
        ordering = ["id"]
        verbose_name = "API token"

    def __str__(self) -> str:
        return f"token {self.pk} of {self.user} ({self.name or 'unnamed'})"

    @property
    def active(self) -> bool:
        return self.revoked_at is None and not self.expired

    @property
    def expired(self) -> bool:
        return self.expires_at is not None and self.expires_at <= timezone.now()


class Heartbeat(models.Model):
    """The last time a worker ran the beat's heartbeat task: the start page's "is anything running?"

    One row per name; beat schedules the task and a worker runs it, so a fresh row means both live.
    """

    name = models.CharField(max_length=50, unique=True)
    hostname = models.CharField(max_length=200, blank=True)
    beat_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.name} at {self.beat_at:%Y-%m-%d %H:%M:%S} on {self.hostname or '?'}"
