"""What syndicator's management commands share: user errors, lookups, --since, JSON lines, tables."""

from __future__ import annotations

import argparse
import getpass
import io
import json
import os
import re
import shutil
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import OperationalError, ProgrammingError
from django.utils import timezone

from syndicator import followup
from syndicator.errors import UserError
from syndicator.models import Delivery, Feed, Post, Target

if TYPE_CHECKING:
    from rich.console import RenderableType
    from rich.table import Table

# Colours of statuses in tables (the admin's badges use the same families).
STATUS_STYLES = {
    "sent": "green",
    "queued": "cyan",
    "sending": "blue",
    "retrying": "yellow",
    "failed": "bold red",
    "uncertain": "magenta",
    "skipped": "dim",
    "cancelled": "dim",
    "editing": "blue",
    "deleting": "blue",
    "deleted": "dim",
    "refused": "yellow",
    "unchanged": "dim",
    "ok": "green",
    "not_modified": "green",
    "error": "bold red",
    "new": "cyan",
    "paused": "yellow",
    "disabled": "dim",
    "warning": "yellow",
    "failing": "bold red",
}

SINCE_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
SINCE_RE = re.compile(r"(\d+)\s*([smhdw])")
# Width used when stdout is not a terminal: wide enough that piped tables do not wrap URLs.
PIPE_WIDTH = 200


class SyndicatorCommand(BaseCommand):
    """Base of syndicator's commands: a user's mistake is one line on stderr and a non-zero exit.

    Django prints a ``CommandError`` as ``CommandError: <message>`` and exits 1 without a
    traceback (unless ``--traceback``); every ``UserError`` raised below becomes one here.
    """

    # No system checks before an everyday command: they import the URL conf (the API, the admin)
    # and read every model's choices (every adapter), ~0.5 s for nothing the command uses (issue
    # #16). `syndicator check`, `migrate` and `run` still run them all.
    requires_system_checks: list[str] | tuple[str, ...] | Literal["__all__"] = []

    def execute(self, *args: Any, **options: Any) -> str | None:
        """Run the command, turning user errors and an unusable database into a CommandError."""
        self._color_option = (
            "force" if options.get("force_color") else "off" if options.get("no_color") else ""
        )
        try:
            return super().execute(*args, **options)
        except UserError as exc:
            raise CommandError(str(exc)) from exc
        except (OperationalError, ProgrammingError) as exc:
            raise CommandError(database_problem(exc)) from exc

    def write_table(self, renderable: RenderableType) -> None:
        """Print a rich table: coloured and terminal-wide on a terminal, plain and wide in a pipe."""
        from rich.console import Console  # imported by the commands that print a table (~15 ms)

        tty = self.stdout.isatty()
        option = getattr(self, "_color_option", "")
        color = option == "force" or (tty and option != "off")
        width = shutil.get_terminal_size((PIPE_WIDTH, 24)).columns if tty else PIPE_WIDTH
        buffer = io.StringIO()
        console = Console(file=buffer, force_terminal=color, no_color=not color, width=width, highlight=False)
        console.print(renderable)
        self.stdout.write(buffer.getvalue(), ending="")

    def write_json_lines(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Print one JSON object per line (readable with jq, grep, or json.loads per line)."""
        for row in rows:
            self.stdout.write(json.dumps(row, ensure_ascii=False, default=str))


class LazyChoices(Sequence[str]):
    """An argparse ``choices`` read when an argument is checked or --help printed, not when the
    parser is built: e.g. the formats, which import every network (issue #16: CLI start-up)."""

    def __init__(self, values: Callable[[], Iterable[str]]) -> None:
        self._values = values

    def _all(self) -> tuple[str, ...]:
        return tuple(self._values())

    def __getitem__(self, index: Any) -> Any:
        return self._all()[index]

    def __len__(self) -> int:
        return len(self._all())

    def __contains__(self, value: object) -> bool:
        return value in self._all()


def add_actions(parser: CommandParser) -> Callable[..., CommandParser]:
    """Give a command subcommands; returns ``add(name, help)`` creating one subcommand's parser."""
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

    def add(name: str, help: str) -> CommandParser:
        sub = actions.add_parser(name, help=help, description=help)
        # Django's own flags work after the action too (`feeds list --no-color`); SUPPRESS keeps
        # the values parsed before the action when they are not repeated after it.
        for flag in ("--traceback", "--no-color", "--force-color"):
            sub.add_argument(flag, action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        sub.add_argument(
            "-v", "--verbosity", type=int, choices=range(4), default=argparse.SUPPRESS, help=argparse.SUPPRESS
        )
        return sub

    return add


def database_problem(exc: Exception) -> str:
    """One line saying what is wrong with the database, with the likely fix."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if "no such table" in text or "does not exist" in text:
        return f"the database is not set up ({text}); run `syndicator migrate` first"
    return f"database error: {text}"


def new_table(*columns: str, title: str | None = None) -> Table:
    """A compact table with the given column headers."""
    from rich import box
    from rich.table import Table

    table = Table(title=title, box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, title_justify="left")
    for column in columns:
        table.add_column(column, overflow="fold")
    return table


def styled(value: str, style_key: str | None = None) -> str:
    """Rich markup colouring a status word."""
    style = STATUS_STYLES.get(style_key or value)
    escaped = value.replace("[", r"\[")
    return f"[{style}]{escaped}[/]" if style else escaped


def plain(value: object) -> str:
    """A value as table text, with rich markup characters escaped."""
    return "" if value is None else str(value).replace("[", r"\[")


# --- parsing -----------------------------------------------------------------------------------


def split_list(value: str | None) -> list[str]:
    """The items of a comma-separated option, stripped, empty ones dropped."""
    return [part.strip() for part in (value or "").split(",") if part.strip()]


def parse_since(value: str) -> timedelta:
    """A --since value such as 30s, 10m, 1h, 2d or 1w as a timedelta."""
    match = SINCE_RE.fullmatch(value.strip().lower())
    if not match or int(match.group(1)) <= 0:
        raise UserError(f"bad --since {value!r}: use a positive number and a unit, e.g. 30s, 10m, 1h, 2d, 1w")
    return timedelta(seconds=int(match.group(1)) * SINCE_UNITS[match.group(2)])


def parse_ids(values: Iterable[str], what: str) -> list[int]:
    """Integer ids from command-line words (a comma list is accepted too)."""
    ids = []
    for value in values:
        for part in split_list(str(value)):
            if not part.isdigit():
                raise UserError(f"bad {what} id {part!r}: ids are whole numbers")
            ids.append(int(part))
    return ids


def os_user() -> str:
    """The name of the user running the command, for ``requested_by``."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry, as in some containers
        return os.environ.get("USER") or "cli"


# --- lookups -----------------------------------------------------------------------------------


def get_feed(feed_id: int | str) -> Feed:
    """The feed with this id, or a UserError."""
    (pk,) = parse_ids([str(feed_id)], "feed")
    feed = Feed.objects.filter(pk=pk).first()
    if feed is None:
        raise UserError(f"no feed with id {pk} (see `syndicator feeds list`)")
    return feed


def get_feeds(ids: Iterable[int]) -> list[Feed]:
    """The feeds with these ids; a UserError naming every unknown one."""
    ids = list(dict.fromkeys(ids))
    found = {f.pk: f for f in Feed.objects.filter(pk__in=ids)}
    if missing := [str(i) for i in ids if i not in found]:
        raise UserError(f"no feed with id {', '.join(missing)} (see `syndicator feeds list`)")
    return [found[i] for i in ids]


def get_target(name: str) -> Target:
    """The target with this name, or a UserError."""
    return get_targets([name])[0]


def get_targets(names: Iterable[str]) -> list[Target]:
    """The targets with these names; a UserError naming every unknown one."""
    names = list(dict.fromkeys(names))
    found = {t.name: t for t in Target.objects.filter(name__in=names)}
    if missing := [n for n in names if n not in found]:
        known = ", ".join(Target.objects.order_by("name").values_list("name", flat=True)) or "none yet"
        raise UserError(f"unknown target {', '.join(map(repr, missing))} (targets: {known})")
    return [found[n] for n in names]


def find_post(id_or_url: str) -> Post:
    """A post by id, or by exact URL (the newest when several posts share it); else a UserError."""
    value = str(id_or_url).strip()
    if value.isdigit():
        post = Post.objects.select_related("feed").filter(pk=int(value)).first()
        if post is None:
            raise UserError(f"no post with id {value}")
        return post
    post = Post.objects.select_related("feed").filter(url=value).order_by("-first_seen_at", "-id").first()
    if post is None:
        raise UserError(f"no post with URL {value!r} (give a post id or the exact URL)")
    return post


def plural(count: int, singular: str, plural_form: str | None = None) -> str:
    """'1 new post', '2 new posts'."""
    return f"{count} {singular if count == 1 else plural_form or singular + 's'}"


# --- showing times -----------------------------------------------------------------------------


def iso(moment: datetime | None) -> str | None:
    """ISO 8601 text of a datetime, or None."""
    return moment.isoformat() if moment else None


def local_time(moment: datetime | None) -> str:
    """A datetime as short local text (settings.TIME_ZONE) for tables."""
    return timezone.localtime(moment).strftime("%Y-%m-%d %H:%M:%S") if moment else ""


def relative(moment: datetime | None, now: datetime | None = None) -> str:
    """How far a datetime is from now, as '3m ago' or 'in 2h'."""
    if moment is None:
        return ""
    seconds = int(((now or timezone.now()) - moment).total_seconds())
    span = abs(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if span >= size:
            amount = f"{span // size}{unit}"
            break
    else:
        amount = f"{span}s"
    if span < 1:
        return "now"
    return f"{amount} ago" if seconds > 0 else f"in {amount}"


# --- edit and delete everywhere (#12) ------------------------------------------------------------


def cli_actor(name: str) -> AbstractBaseUser:
    """Who asks, for followup.edit_everywhere / delete_everywhere: the --user name or the OS user,
    credited "NAME (command line)" as `syndicator retry` credits its verdicts. An unsaved user: the
    command line does not log in, so the name is not linked to an account (decisions keeps the
    name of an unsaved user and links none)."""
    user_model = get_user_model()
    credit = f"{name.strip() or os_user()} (command line)"
    limit = Delivery._meta.get_field("followup_by").max_length or 150
    return user_model(**{user_model.USERNAME_FIELD: credit[:limit]})


class FollowupCommand(SyndicatorCommand):
    """``syndicator edit`` and ``syndicator delete``: an editor's edit or delete everywhere
    (syndicator.followup), printed as a plan per target: asked, or why not."""

    action: str  # Delivery.Followup.EDIT or DELETE
    # A plan line's words by (dry run, asked): "edit asked", "would not be edited", …
    words: dict[tuple[bool, bool], str]

    def add_arguments(self, parser: CommandParser) -> None:
        """The post, the targets, a dry run, who asks and the output format."""
        parser.add_argument("post", metavar="POST_ID_OR_URL", help="the post's id or its exact URL")
        parser.add_argument(
            "--to",
            action="append",
            default=[],
            metavar="TARGET",
            help="only this target (repeat it, or give names comma-separated; default: every "
            "target the post went to)",
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="print what each target would do; change nothing"
        )
        parser.add_argument("--user", default="", help="who asked, for the log (default: your user name)")
        parser.add_argument("--json", action="store_true", help="one JSON object per target's plan")

    def handle(self, *args: Any, post: str, to: list[str], json: bool, **options: Any) -> None:
        """Check the post and the targets, act (or preview), print the plan."""
        found = find_post(post)
        names = list(dict.fromkeys(name for value in to for name in split_list(value)))
        if names:
            get_targets(names)  # a name no target has is told as everywhere else; followup the rest
        plans, unchanged = self.act(found, names or None, **options)
        if json:
            self.write_json_lines(plan.as_dict() for plan in plans)
            return
        self.write_plans(found, plans, unchanged=unchanged)

    def act(
        self, post: Post, targets: list[str] | None, *, dry_run: bool, user: str, **options: Any
    ) -> tuple[list[followup.Plan], str]:
        """The plans, and, when they are a preview that changed nothing, why (for the header)."""
        if dry_run:
            return followup.preview(post, self.action, targets=targets), "dry run: nothing changed"
        actor = cli_actor(user)
        if self.action == Delivery.Followup.EDIT:
            return followup.edit_everywhere(post, actor=actor, targets=targets), ""
        return followup.delete_everywhere(post, actor=actor, targets=targets), ""

    def write_plans(
        self, post: Post, plans: list[followup.Plan], *, unchanged: str = "", to_stderr: bool = False
    ) -> None:
        """A line per target, then what it comes to. ``unchanged`` is set for a preview (its lines
        read "would be …"): why it changed nothing."""
        out = self.stderr if to_stderr else self.stdout
        preview = bool(unchanged)
        out.write(f"post {post.pk}: {post.title or post.url}" + (f" ({unchanged})" if preview else ""))
        if not plans:
            out.write(f"it was not delivered to any target: nothing to {self.action}")
            return
        for plan in plans:
            word = self.words[(preview, plan.asked)]
            if plan.reason:
                word = f"{word} ({plan.reason})" if plan.asked else f"{word}: {plan.reason}"
            out.write(f"delivery {plan.delivery_id} → {plan.target}: {word}")
        asked = sum(plan.asked for plan in plans)
        of = f"{asked} of {plural(len(plans), 'target')}"
        if not asked:
            out.write(f"{of}: nothing to {self.action}")
        elif preview:
            out.write(f"{of}: {self.words[(True, True)]}")
        else:
            out.write(f"{of}: {self.words[(False, True)]}; a worker does it (see `syndicator log`)")


def stdin_is_a_terminal() -> bool:
    """Whether a person can answer a question on standard input."""
    try:
        return sys.stdin is not None and sys.stdin.isatty()
    except (AttributeError, ValueError):  # closed, or replaced by something without isatty
        return False
