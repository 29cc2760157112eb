"""``syndicator targets``: add, change, list, remove, pause and resume the places posts go to."""

from __future__ import annotations

from collections import defaultdict
from typing import Any, cast

from django.core.management.base import CommandParser
from django.db import IntegrityError, transaction
from django.db.models import Count, ProtectedError

from syndicator import decisions
from syndicator.cli_util import (
    LazyChoices,
    SyndicatorCommand,
    add_actions,
    get_feeds,
    get_target,
    iso,
    new_table,
    os_user,
    parse_ids,
    plain,
    plural,
    split_list,
    styled,
)
from syndicator.errors import UserError
from syndicator.health import target_health
from syndicator.models import Delivery, Target
from syndicator.redact import redact
from syndicator.targets import ADAPTERS, get_adapter
from syndicator.targets.base import Adapter
from syndicator.targets.config import ENV_NAME_RE, Setting, parse_pairs
from syndicator.targets.guard import check_target_settings
from syndicator.targets.registry import formats, kinds


def adapter_class(kind: str) -> type[Adapter]:
    """The registered adapter for a kind, or a UserError listing the kinds there are."""
    try:
        return ADAPTERS[kind]
    except KeyError:
        available = ", ".join(sorted(ADAPTERS))
        raise UserError(f"unknown target kind {kind!r}; available kinds: {available}") from None


def coerce_setting(spec: Setting, raw: str) -> object:
    """A --set value typed as its setting declares (the one parser: Setting.parse)."""
    return spec.parse(raw)


def parse_settings(cls: type[Adapter], pairs: list[str]) -> dict[str, object]:
    """Validate KEY=VALUE pairs against the adapter's settings_spec and type their values."""
    return {key: value for key, value in parse_pairs(cls.settings_spec, cls.kind, pairs).items()}


def filters_text(target: Target) -> str:
    """The target's filters as one short line; 'all posts' when it has none."""
    parts = []
    if feed_ids := sorted(f.pk for f in target.feeds.all()):
        parts.append("feeds " + ",".join(map(str, feed_ids)))
    if target.languages:
        parts.append("languages " + ",".join(target.languages))
    if target.categories:
        parts.append("categories " + ",".join(target.categories))
    return "; ".join(parts) or "all posts"


def target_row(target: Target, counts: dict[str, int]) -> dict[str, Any]:
    """A target as the JSON object ``targets list --json`` prints."""
    return {
        "id": target.pk,
        "name": target.name,
        "kind": target.kind,
        "format": target.message_format,
        "enabled": target.enabled,
        "paused": target.paused_at is not None,
        "paused_at": iso(target.paused_at),
        "paused_reason": target.paused_reason,
        "health": (health := target_health(target)).state,
        "health_reason": health.reason,
        "feeds": sorted(f.pk for f in target.feeds.all()),
        "languages": target.languages,
        "categories": target.categories,
        "settings": target.settings,
        "secret_env": target.secret_env,
        "deliveries": counts,
    }


def target_options(sub: CommandParser, *, changing: bool) -> None:
    """The filters, --set and --secret-env of `targets add` and `targets change` (for change,
    an option not given is left as it is: default None)."""
    unset = " ('' for all)" if changing else ""
    sub.add_argument("--feeds", default=None if changing else "", help=f"only posts of these feed ids{unset}")
    sub.add_argument(
        "--languages", default=None if changing else "", help=f"only posts in these languages{unset}"
    )
    sub.add_argument(
        "--categories", default=None if changing else "", help=f"only posts with these categories{unset}"
    )
    sub.add_argument(
        "--set",
        dest="set_values",
        action="extend",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="a setting (repeatable)" + ("; KEY= with no value goes back to its default" if changing else ""),
    )
    sub.add_argument(
        "--secret-env",
        "--token-env",
        "--password-env",
        dest="secret_env",
        default=None if changing else "",
        help="NAME of the environment variable holding the token or password (never the secret itself)",
    )


class Command(SyndicatorCommand):
    help = "Add, change, list, remove, pause, resume and check delivery targets."

    def add_arguments(self, parser: CommandParser) -> None:
        """Subcommands: add, list, remove, pause, resume."""
        action = add_actions(parser)
        add = action("add", "add a target of a registered kind (outbox: dry run)")
        add.add_argument("kind", help="adapter kind: " + ", ".join(kinds()))
        add.add_argument("--name", required=True, help="unique name, used by repost --to and log --target")
        add.add_argument(
            "--format",
            choices=LazyChoices(formats),
            metavar="FORMAT",  # argparse would list the choices now, importing every network
            help="the network an outbox imitates (a kind above, not outbox)",
        )
        target_options(add, changing=False)
        change = action("change", "change a target's settings, filters or secret variable")
        change.add_argument("target", metavar="NAME")
        target_options(change, changing=True)

        listing = action("list", "show targets, their filters and delivery counts")
        listing.add_argument("--json", action="store_true", help="one JSON object per line")

        # The positional's dest is not "name": call_command(name=...) would mistake it for --name.
        remove = action("remove", "delete a target that has no deliveries (the log is kept)")
        remove.add_argument("target", metavar="NAME")
        pause = action("pause", "hold deliveries to a target until it is resumed")
        pause.add_argument("target", metavar="NAME")
        pause.add_argument("--reason", default="", help="why (shown in targets list)")
        resume = action("resume", "resume a paused target and send what waited")
        resume.add_argument("target", metavar="NAME")
        check = action("check", "verify each target's configuration and credentials against its API")
        check.add_argument("target", metavar="NAME", nargs="?", help="only this target")

    def handle(self, *args: Any, action: str, **options: Any) -> None:
        """Dispatch to the subcommand."""
        getattr(self, f"handle_{action}")(**options)

    def handle_add(
        self,
        *,
        kind: str,
        name: str,
        format: str | None,
        feeds: str,
        languages: str,
        categories: str,
        set_values: list[str],
        secret_env: str,
        **_: Any,
    ) -> None:
        """Create a target; prints its id."""
        cls = adapter_class(kind)
        name = name.strip()
        if not name or len(name) > cast(int, Target._meta.get_field("name").max_length):
            raise UserError("bad --name: give a name of 1 to 100 characters")
        target_settings = parse_settings(cls, set_values)
        if format:
            if "format" not in {spec.name for spec in cls.settings_spec}:
                raise UserError(f"--format does not apply to {kind} targets: they use their own format")
            target_settings["format"] = format
        if missing := [s.name for s in cls.settings_spec if s.required and s.name not in target_settings]:
            raise UserError(f"{kind} targets need --set {'=… --set '.join(missing)}=…")
        if secret_env and not ENV_NAME_RE.fullmatch(secret_env):
            raise UserError(f"bad --secret-env {secret_env!r}: the name of an environment variable")
        check_target_settings(cls, target_settings, secret_env)
        feed_list = get_feeds(parse_ids(split_list(feeds), "feed"))
        if Target.objects.filter(name=name).exists():
            raise UserError(f"a target named {name!r} exists already")
        try:
            with transaction.atomic():
                target = Target.objects.create(
                    kind=kind,
                    name=name,
                    settings=target_settings,
                    secret_env=secret_env,
                    languages=split_list(languages),
                    categories=split_list(categories),
                )
                target.feeds.set(feed_list)
        except IntegrityError:  # created concurrently between the check and the insert
            raise UserError(f"a target named {name!r} exists already") from None
        self.stdout.write(str(target.pk))

    def handle_change(
        self,
        *,
        target: str,
        set_values: list[str],
        feeds: str | None,
        languages: str | None,
        categories: str | None,
        secret_env: str | None,
        **_: Any,
    ) -> None:
        """Change what was given, checked as `targets add` checks it; say what changed."""
        found = get_target(target)
        cls = adapter_class(found.kind)
        filters = {"feeds": feeds, "languages": languages, "categories": categories}
        if not set_values and secret_env is None and all(given is None for given in filters.values()):
            raise UserError(
                "nothing to change: give --set KEY=VALUE, --feeds, --languages, --categories or --secret-env"
            )
        merged = dict(found.settings)
        for key, value in parse_settings(cls, set_values).items():
            if value is None:
                merged.pop(key, None)  # KEY= : back to the network's default
            else:
                merged[key] = value
        if missing := [s.name for s in cls.settings_spec if s.required and s.name not in merged]:
            raise UserError(f"{found.kind} targets need {', '.join(missing)}: it cannot be unset")
        new_secret = found.secret_env if secret_env is None else secret_env.strip()
        if new_secret and not ENV_NAME_RE.fullmatch(new_secret):
            raise UserError(f"bad --secret-env {new_secret!r}: the name of an environment variable")
        check_target_settings(cls, merged, new_secret)
        feed_list = None if feeds is None else get_feeds(parse_ids(split_list(feeds), "feed"))
        changed = [
            key
            for key in sorted(set(merged) | set(found.settings))
            if merged.get(key) != found.settings.get(key)
        ]
        with transaction.atomic():
            found.settings, found.secret_env = merged, new_secret
            if languages is not None:
                found.languages = split_list(languages)
            if categories is not None:
                found.categories = split_list(categories)
            found.save()
            if feed_list is not None:
                found.feeds.set(feed_list)
        what = [*changed, *(name for name, given in filters.items() if given is not None)]
        if secret_env is not None:
            what.append("secret_env")
        self.stdout.write(f"changed target {target!r}: {', '.join(what) or 'nothing (the same values)'}")

    def handle_check(self, *, target: str | None, **_: Any) -> None:
        """Ask every (or the named) target's API whether its configuration works; one verdict each."""
        targets = [get_target(target)] if target else list(Target.objects.order_by("name"))
        if not targets:
            raise UserError("no targets to check")
        failed = 0
        table = new_table("name", "kind", "check", "detail")
        for found in targets:
            try:
                verdict, detail = "ok", get_adapter(found).check().removeprefix("ok: ")
            except Exception as exc:  # every failure is a verdict here, never a traceback
                failed += 1
                verdict, detail = "failed", f"{type(exc).__name__}: {redact(str(exc))}"
            table.add_row(plain(found.name), found.kind, styled(verdict), plain(detail))
        self.write_table(table)
        if failed:
            raise UserError(f"{plural(failed, 'target')} failed the check")

    def handle_list(self, *, json: bool, **_: Any) -> None:
        """Print every target with its filters and its deliveries counted by status."""
        targets = list(Target.objects.order_by("name").prefetch_related("feeds"))
        counts: dict[int, dict[str, int]] = defaultdict(dict)
        for target_id, status, n in (
            Delivery.objects.order_by().values_list("target_id", "status").annotate(n=Count("id"))
        ):
            counts[target_id][status] = n
        if json:
            self.write_json_lines(target_row(t, counts[t.pk]) for t in targets)
            return
        if not targets:
            self.stdout.write("no targets yet: add one with `syndicator targets add outbox --name NAME`")
            return
        table = new_table("name", "kind", "format", "health", "filters", "deliveries")
        for target in targets:
            health = target_health(target)
            state = styled(health.state)
            if health.reason:
                state += f" ({plain(health.reason[:120])})"
            by_status = counts[target.pk]
            deliveries = ", ".join(
                f"{styled(status)} {by_status[status]}"
                for status in Delivery.Status.values
                if status in by_status
            )
            table.add_row(
                plain(target.name),
                target.kind,
                target.message_format,
                state,
                plain(filters_text(target)),
                deliveries or "none",
            )
        self.write_table(table)

    def handle_remove(self, *, target: str, **_: Any) -> None:
        """Delete a target that never had a delivery; one with a delivery log is refused."""
        found = get_target(target)
        # The log is append-only (Delivery.target is PROTECT): say what to do instead.
        if deliveries := found.deliveries.count():
            raise UserError(
                f"target {target!r} has {plural(deliveries, 'delivery', 'deliveries')} in the delivery log, "
                f"which is kept: pause it instead (`syndicator targets pause {target}`), or disable it "
                "on its admin page"
            )
        try:
            found.delete()
        except ProtectedError:  # anything else of the log that names it
            raise UserError(
                f"target {target!r} is named in the delivery log, which is kept: pause it instead "
                f"(`syndicator targets pause {target}`)"
            ) from None
        self.stdout.write(f"removed target {target!r} (it had no deliveries)")

    def handle_pause(self, *, target: str, reason: str, **_: Any) -> None:
        """Pause a target: its deliveries wait, queued, until it is resumed."""
        found = get_target(target)
        if found.paused_at:
            self.stdout.write(f"target {target!r} was already paused: {found.paused_reason}")
            return
        decisions.pause_target(found, reason.strip() or f"paused by {os_user()} from the command line")
        self.stdout.write(f"target {target!r} paused; its deliveries wait until `targets resume {target}`")

    def handle_resume(self, *, target: str, **_: Any) -> None:
        """Resume a paused target and enqueue the deliveries that waited for it."""
        found = get_target(target)
        if not found.paused_at:
            self.stdout.write(f"target {target!r} is not paused")
            return
        sent = decisions.resume_target(found)
        waiting = plural(sent, "waiting delivery", "waiting deliveries")
        self.stdout.write(f"target {target!r} resumed; {waiting} sent to a worker")
