"""A year of a newsroom in PostgreSQL, written with COPY: feeds, targets, posts, deliveries, attempts,
an email list and its per-recipient results.

Used by history.py once Django is set up. Rows come from a seeded random generator, so two fills
of the same sizes are the same. Times are relative to ``now``: the last hour, day and week hold
what a live desk holds (a few deliveries in the queue, a target with failures today, uncertain
deliveries waiting for an admin), the rest of the year is settled history with an outage in it.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

YEAR = timedelta(days=365)
EDITIONS = (("en", "World"), ("en", "Politics"), ("en", "Business"), ("en", "Sport"), ("ar", "Arabic"),
            ("fa", "Persian"), ("en", "Culture"), ("en", "Science"), ("es", "Mundo"), ("fr", "Monde"),
            ("en", "Opinion"), ("en", "Local"))  # fmt: skip
_VOCABULARY = (
    "minister council election budget vote talks border court ruling strike storm flood market "
    "shares bank rates inflation league final match coach season film festival award museum study "
    "climate energy health hospital school police protest reform treaty summit ceasefire trade "
    "port river city village mayor senate parliament report inquiry crisis deal growth drought "
    "harvest rail airport bridge fire quake rescue aid refugees talks leader party coalition"
)
WORDS = tuple(_VOCABULARY.split())
BACKLOG_POSTS = 3  # the newest, with deliveries queued, being sent or retrying
# One word in about 200 titles: what an editor types in the log's search box.
RARE_WORD = "referendum"
FAILURE_ERRORS = {
    "transient": (503, "TransientError", "503 Service Unavailable: the network is busy, try later"),
    "rate_limited": (429, "RateLimited", "429 Too Many Requests: retry after 30 s"),
    "permanent": (400, "PermanentError", "400 Bad Request: the message was refused"),
    "unknown": (None, "ReadTimeout", "no answer within 30 s: the post may or may not be published"),
}


@dataclass
class Sizes:
    posts: int
    subscribers: int
    email_results: int  # email deliveries with a per-recipient row for every subscriber


@dataclass
class Made:
    """What the fill wrote, and how long each table took."""

    counts: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    target_ids: dict[str, int] = field(default_factory=dict)
    feed_ids: list[int] = field(default_factory=list)
    admin_username: str = "bench-admin"


def copy_rows(model: Any, columns: list[str], rows: Iterable[tuple]) -> int:
    """COPY rows into a model's table; every NOT NULL column must be given or have a constant
    default (a new field with a computed default fails here, so the fill is taught about it)."""
    from django.db import connection, models

    meta = model._meta
    required = {f.attname: f for f in meta.concrete_fields if not f.null and not f.primary_key}
    defaults: list[Any] = []
    for name in sorted(set(required) - set(columns)):
        field = required[name]
        if not field.has_default() or (callable(field.default) and field.default not in (dict, list)):
            raise RuntimeError(f"{meta.label}: the fill gives no value for {name!r} (no constant default)")
        value = field.get_default()
        defaults.append(json.dumps(value) if isinstance(field, models.JSONField) else value)
        columns = [*columns, name]
    if defaults:
        rows = (tuple(row) + tuple(defaults) for row in rows)
    names = ", ".join(connection.ops.quote_name(meta.get_field(c).column) for c in columns)
    n = 0
    with (
        connection.cursor() as cursor,
        cursor.cursor.copy(f"COPY {meta.db_table} ({names}) FROM STDIN") as copy,
    ):
        for row in rows:
            copy.write_row(row)
            n += 1
    return n


def reset_sequences(*models: Any) -> None:
    """After COPY with explicit ids, the next Django insert must not reuse one."""
    from django.db import connection

    with connection.cursor() as cursor:
        for model in models:
            table = model._meta.db_table
            cursor.execute(
                f"SELECT setval(pg_get_serial_sequence(%s, 'id'), "
                f"GREATEST((SELECT MAX(id) FROM {table}), 1))",
                [table],
            )


class Year:
    """The generator: one instance fills one database."""

    def __init__(self, sizes: Sizes, now: datetime, seed: int = 2026) -> None:
        self.sizes, self.now, self.rng = sizes, now, random.Random(seed)
        self.made = Made()
        self.attempt_id = 0
        # A week-long outage of one target three months ago: most of its sends then failed.
        self.outage = (now - timedelta(days=95), now - timedelta(days=88))

    def timed(self, name: str, step: Callable[[], int]) -> None:
        start = time.perf_counter()
        self.made.counts[name] = step()
        self.made.seconds[name] = time.perf_counter() - start
        print(f"  {name}: {self.made.counts[name]:,} rows in {self.made.seconds[name]:.1f} s", flush=True)

    def fill(self) -> Made:
        from syndicator.models import Delivery, DeliveryAttempt, EmailRecipientResult, Post, Subscriber

        self.small_tables()
        self.timed("subscribers", self.subscribers)
        self.timed("posts", self.posts)
        self.timed("deliveries + attempts", self.deliveries)
        self.made.counts["attempts"] = self.attempt_id
        self.made.counts["deliveries"] = self.made.counts.pop("deliveries + attempts")
        reset_sequences(Subscriber, Post, Delivery, DeliveryAttempt)
        self.timed("email results", self.email_results)
        reset_sequences(EmailRecipientResult)
        return self.made

    # --- the few rows a person makes ----------------------------------------------------------

    def small_tables(self) -> None:
        from django.contrib.auth import get_user_model

        from syndicator.models import Feed, Heartbeat, Target
        from syndicator.roles import set_role
        from syndicator.targets.registry import OUTBOX, kinds

        admin = get_user_model().objects.create_user(self.made.admin_username, password=None)
        set_role(admin, "admin")
        for i, (language, name) in enumerate(EDITIONS):
            feed = Feed.objects.create(
                url=f"https://news.example/{name.lower()}/feed/", name=name, language=language,
                last_status=Feed.Status.OK, last_polled_at=self.now, last_success_at=self.now,
                first_polled_at=self.now - YEAR, consecutive_failures=2 if i == 7 else 0,
                last_error="503 Service Unavailable" if i == 7 else "",
            )  # fmt: skip
            self.made.feed_ids.append(feed.pk)
        networks = [k for k in kinds() if k != OUTBOX][:8]
        networks += [OUTBOX] * (8 - len(networks))
        for i, kind in enumerate(networks):
            name = f"{kind} desk" if kind != OUTBOX else f"dry run {i}"
            settings = {"chat_id": "@newsroom"} if kind == "telegram" else {}
            target = Target.objects.create(
                name=name, kind=kind, settings=settings, created_at=self.now - YEAR
            )
            self.made.target_ids[kind if kind != OUTBOX else name] = target.pk
        Heartbeat.objects.create(name="worker", hostname="worker-1", beat_at=self.now - timedelta(seconds=20))

    def subscribers(self) -> int:
        from syndicator.models import Subscriber

        email_target = self.made.target_ids.get("email")
        if email_target is None:
            return 0
        joined = self.now - YEAR

        def rows() -> Iterator[tuple]:
            for i in range(1, self.sizes.subscribers + 1):
                gone = self.now - timedelta(days=self.rng.uniform(0, 300)) if i % 97 == 0 else None
                yield (i, email_target, f"reader{i}@mail.example", f"Reader {i}", joined, gone, None, "")

        columns = ["id", "target_id", "email", "name", "created_at", "unsubscribed_at", "suppressed_at",
                   "suppressed_reason"]  # fmt: skip
        return copy_rows(Subscriber, columns, rows())

    # --- posts ----------------------------------------------------------------------------------

    def words(self, n: int) -> str:
        return " ".join(self.rng.choice(WORDS) for _ in range(n))

    def post_times(self) -> list[datetime]:
        """First-seen instants over the year, oldest first, with the last hour as busy as any."""
        seconds = YEAR.total_seconds()
        return sorted(
            self.now - timedelta(seconds=self.rng.uniform(30, seconds)) for _ in range(self.sizes.posts)
        )

    def posts(self) -> int:
        from syndicator.models import Post

        self.post_rows: list[tuple[int, datetime, str, str]] = []  # id, seen, title, language

        def rows() -> Iterator[tuple]:
            for i, seen in enumerate(self.post_times(), start=1):
                feed_index = self.rng.randrange(len(EDITIONS))
                title = self.words(self.rng.randint(6, 12)).capitalize()
                if self.rng.random() < 0.005:
                    title = f"{title} {RARE_WORD}"
                url = f"https://news.example/{seen:%Y/%m/%d}/{title.lower().replace(' ', '-')[:60]}-{i}"
                summary = self.words(40)
                content = "".join(f"<p>{self.words(60)}.</p>" for _ in range(6))  # ~2.5 kB, as an article
                language = EDITIONS[feed_index][0]
                self.post_rows.append((i, seen, title, language))
                yield (
                    i, self.made.feed_ids[feed_index], url, url, title, summary, content, "Staff reporter",
                    json.dumps([self.rng.choice(WORDS)]), f"https://news.example/img/{i}.jpg", "[]",
                    language, seen - timedelta(seconds=self.rng.uniform(30, 600)), seen,
                )  # fmt: skip

        columns = ["id", "feed_id", "guid", "url", "title", "summary", "content", "author", "categories",
                   "image_url", "enclosures", "language", "published_at", "first_seen_at"]  # fmt: skip
        return copy_rows(Post, columns, rows())

    # --- deliveries and their attempts ------------------------------------------------------------

    def status_of(self, seen: datetime, kind: str, backlog: bool) -> str:
        age = self.now - seen
        r = self.rng.random()
        if backlog:
            return "queued" if r < 0.3 else "sending" if r < 0.35 else "retrying" if r < 0.45 else "sent"
        if kind == "facebook" and self.outage[0] <= seen < self.outage[1]:
            return "failed" if r < 0.6 else "sent"
        if age < timedelta(days=2):
            if kind == "telegram" and age < timedelta(days=1) and r < 0.1:
                return "failed"  # today's trouble: the start page's "warning"
            if r < 0.004:
                return "uncertain"
        return "sent" if r < 0.966 else "failed" if r < 0.978 else "skipped" if r < 0.993 else "cancelled"

    def attempts_for(
        self, delivery_id: int, status: str, created: datetime, kind: str
    ) -> tuple[list, datetime]:
        """The attempt rows of one delivery, and when its last one finished."""
        rows: list[tuple] = []
        at = created + timedelta(seconds=self.rng.uniform(0.2, 3))
        if status == "sent":
            r = self.rng.random()
            outcomes = (
                ["sent"]
                if r < 0.80
                else ["transient", "sent"]
                if r < 0.95
                else ["rate_limited"] * 2 + ["sent"]
            )
        elif status == "failed":
            outcomes = ["transient"] * 4 + [self.rng.choice(("transient", "permanent"))]
        elif status == "uncertain":
            outcomes = ["unknown"]
        elif status in ("retrying", "sending"):
            outcomes = ["transient"] if status == "retrying" else [""]
        else:
            outcomes = []
        for number, outcome in enumerate(outcomes, start=1):
            self.attempt_id += 1
            duration = self.rng.uniform(40, 60) if kind == "email" else self.rng.uniform(0.15, 1.5)
            finished = at + timedelta(seconds=duration) if outcome else None
            http, error_class, message = FAILURE_ERRORS.get(outcome, (200, "", ""))
            rows.append((
                self.attempt_id, delivery_id, number, "send", at, finished,
                int(duration * 1000) if outcome else None, outcome, http if outcome else None, error_class,
                message, 30.0 if outcome == "rate_limited" else None, "worker-1",
                f"task-{delivery_id}-{number}", None, "",
            ))  # fmt: skip
            at = (finished or at) + timedelta(seconds=30 * 2**number)
        if status == "cancelled":
            self.attempt_id += 1
            at = created + timedelta(minutes=5)
            rows.append((self.attempt_id, delivery_id, 1, "verdict", at, at, 0, "cancelled", None, "", "",
                         None, "", "", None, "editor"))  # fmt: skip
        last = rows[-1][5] if rows and rows[-1][5] else created
        return rows, last

    def deliveries(self) -> int:
        from syndicator.models import Delivery, DeliveryAttempt

        attempt_rows: list[tuple] = []
        targets = list(self.made.target_ids.items())
        kinds = [kind for kind, _ in targets]

        def rows() -> Iterator[tuple]:
            delivery_id = 0
            # The newest posts are still on their way: the desk's "waiting now, and why".
            backlog_from = len(self.post_rows) - BACKLOG_POSTS
            for index, (post_id, seen, title, _language) in enumerate(self.post_rows):
                plan = [(kind, pk, "auto") for kind, pk in targets]
                if self.rng.random() < 0.02:  # an editor reposts it somewhere by hand
                    kind = self.rng.choice(kinds)
                    plan.append((kind, self.made.target_ids[kind], "manual"))
                for kind, target_id, origin in plan:
                    delivery_id += 1
                    later = self.rng.uniform(0.5, 2) if origin == "auto" else self.rng.uniform(600, 7200)
                    created = min(seen + timedelta(seconds=later), self.now)
                    status = (
                        "sent" if origin == "manual" else self.status_of(seen, kind, index >= backlog_from)
                    )
                    attempts, last = self.attempts_for(delivery_id, status, created, kind)
                    attempt_rows.extend(attempts)
                    sent = status == "sent"
                    text = f"{title}\n\nhttps://news.example/p/{post_id} #{kind}"
                    if kind == "email":
                        text = f"<h1>{title}</h1>" + "<p>" + "lorem ipsum " * 100 + "</p>"
                    error = FAILURE_ERRORS["unknown" if status == "uncertain" else "transient"][2]
                    yield (
                        delivery_id, post_id, target_id, origin, "editor" if origin == "manual" else "", "",
                        status, len(attempts), 0,
                        created + timedelta(minutes=4) if status == "retrying" else None,
                        created if status in ("queued", "retrying", "sending") else None,
                        created + timedelta(minutes=5) if status == "sending" else None,
                        "" if status == "queued" else text,
                        f"{kind}-{delivery_id}" if sent else "",
                        f"https://{kind}.example/newsroom/{delivery_id}" if sent else "",
                        error if status in ("failed", "uncertain", "retrying") else "",
                        created, last, last if sent else None,
                    )  # fmt: skip

        columns = ["id", "post_id", "target_id", "origin", "requested_by", "text_override", "status",
                   "attempts", "budget_start", "next_attempt_at", "enqueued_at", "lease_until",
                   "rendered_text", "external_id", "external_url", "last_error", "created_at", "updated_at",
                   "sent_at"]  # fmt: skip
        n = copy_rows(Delivery, columns, rows())
        attempt_columns = ["id", "delivery_id", "number", "kind", "started_at", "finished_at", "duration_ms",
                           "outcome", "http_status", "error_class", "message", "retry_after", "worker",
                           "task_id", "actor_id", "actor_name"]  # fmt: skip
        copy_rows(DeliveryAttempt, attempt_columns, attempt_rows)
        return n

    # --- per-recipient results ------------------------------------------------------------------

    def email_results(self) -> int:
        """Every subscriber's result for N sent email deliveries spread over the year, made in SQL.

        A cross product of deliveries and subscribers: made by the server, it needs no rows sent.
        """
        from django.db import connection

        from syndicator.models import Delivery, EmailRecipientResult, Subscriber

        email_target = self.made.target_ids.get("email")
        if email_target is None or not self.sizes.email_results:
            return 0
        sent = list(
            Delivery.objects.filter(target_id=email_target, status="sent")
            .order_by("id")
            .values_list("id", flat=True)
        )
        step = max(len(sent) // self.sizes.email_results, 1)
        chosen = sent[::step][: self.sizes.email_results]
        table, subscribers = EmailRecipientResult._meta.db_table, Subscriber._meta.db_table
        deliveries = Delivery._meta.db_table
        n = 0
        batch = 50  # deliveries per statement: 500,000 rows with 10,000 subscribers
        with connection.cursor() as cursor:
            for start in range(0, len(chosen), batch):
                cursor.execute(
                    f"""
                    INSERT INTO {table} (delivery_id, subscriber_id, status, smtp_code, smtp_reply,
                                         message_id, updated_at)
                    SELECT delivery_id, subscriber_id,
                           CASE WHEN h < 2 THEN 'refused' WHEN h < 5 THEN 'deferred' ELSE 'accepted' END,
                           CASE WHEN h < 2 THEN 550 WHEN h < 5 THEN 451 ELSE 250 END,
                           '250 2.0.0 Ok: queued as ' || md5(delivery_id || '-' || subscriber_id),
                           '<' || delivery_id || '.' || subscriber_id || '@syndicator.news.example>',
                           sent_at
                    FROM (
                        SELECT d.id AS delivery_id, s.id AS subscriber_id, d.sent_at,
                               mod(d.id * 7919 + s.id * 104729, 1000) AS h
                        FROM {deliveries} d CROSS JOIN {subscribers} s
                        WHERE d.id = ANY(%s) AND s.target_id = %s AND s.unsubscribed_at IS NULL
                    ) AS pairs
                    """,
                    [chosen[start : start + batch], email_target],
                )
                n += cursor.rowcount
        self.made.counts["email deliveries with results"] = len(chosen)
        return n
