"""The network contract itself: the registry, typed settings, the error-table shape, retry-after."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from django.conf import settings
from django.core.management import call_command

from syndicator.errors import OutcomeUnknown, PermanentError, RateLimited, TargetBroken, TransientError
from syndicator.models import Target
from syndicator.targets import ADAPTERS, get_adapter
from syndicator.targets.config import URL, Duration, EnvName, Setting, SettingError, SwitchOrText
from syndicator.targets.faults import RATE_LIMIT_FALLBACK, ErrorTable, Rule, as_delivery_error, retry_after
from syndicator.targets.registry import OUTBOX, delivery_queues, formats, kind_choices, kinds

NOW = 1_800_000_000.0


# --- the registry -------------------------------------------------------------------------------


def test_every_package_is_a_registered_network_and_nothing_else_is():
    assert sorted(ADAPTERS) == kinds()
    assert OUTBOX in kinds()
    assert kind_choices()[0][0] == OUTBOX
    assert delivery_queues() == [f"deliver.{kind}" for kind in kinds()]
    assert set(formats()) == set(kinds()) - {OUTBOX}


@pytest.mark.django_db
def test_model_choices_come_from_the_registry_without_a_migration():
    field = Target._meta.get_field("kind")
    assert callable(field.choices) or dict(field.flatchoices) == dict(kind_choices())
    out = io.StringIO()
    call_command("makemigrations", "--check", "--dry-run", stdout=out)
    assert "No changes detected" in out.getvalue()


@pytest.mark.parametrize("fmt", formats())
def test_each_network_declares_its_text_rules_and_ships_its_templates(fmt):
    rules = ADAPTERS[fmt].text
    assert rules is not None and rules.templates and rules.unit
    for name in rules.templates:
        assert (settings.SYNDICATOR_MESSAGE_TEMPLATES / name).is_file(), name
        assert name.startswith(f"{fmt}."), "a network's templates are named after its kind"
    assert rules.max_length is None or rules.max_length > 0


@pytest.mark.parametrize("kind", kinds())
def test_each_network_declares_typed_settings_and_capabilities(kind):
    cls = ADAPTERS[kind]
    names = [spec.name for spec in cls.settings_spec]
    assert len(names) == len(set(names)), "a setting is declared once"
    assert {"hashtags", "hashtag_limit", "utm"} <= set(names)
    capabilities = cls.capabilities
    if kind != OUTBOX:  # a dry run imitates the network it renders
        assert capabilities.note, "what the network lets us change afterwards, for the target page"
    assert capabilities.edit_window is None or capabilities.edit
    assert capabilities.delete_window is None or capabilities.delete
    assert cls.label


# --- typed settings ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "raw", "value"),
    [
        (Setting("b", "", type=bool), "yes", True),
        (Setting("b", "", type=bool), "off", False),
        (Setting("b", "", type=bool), False, False),
        (Setting("n", "", type=int), "42", 42),
        (Setting("n", "", type=int), 7.0, 7),
        (Setting("f", "", type=float), "2.5", 2.5),
        (Setting("d", "", type=Duration), "90", 90.0),
        (Setting("d", "", type=Duration), "15m", 900.0),
        (Setting("d", "", type=Duration), "2h", 7200.0),
        (Setting("d", "", type=Duration), "1d", 86400.0),
        (Setting("l", "", type=list), "en, ar ,fa", ["en", "ar", "fa"]),
        (Setting("u", "", type=URL), "https://api.example.org/v1", "https://api.example.org/v1"),
        (Setting("e", "", type=EnvName), "SYNDICATOR_SECRET_X", "SYNDICATOR_SECRET_X"),
        (Setting("s", "", type=SwitchOrText), "false", False),
        (Setting("s", "", type=SwitchOrText), "utm_source=x", "utm_source=x"),
        (Setting("c", "", choices=("a", "b")), "b", "b"),
        (Setting("x", "", default=3, type=int), "", 3),
    ],
)
def test_a_setting_parses_its_type(spec, raw, value):
    assert spec.parse(raw) == value


@pytest.mark.parametrize(
    ("spec", "raw", "words"),
    [
        (Setting("flag", "", type=bool), "maybe", "flag is a true/false"),
        (Setting("count", "", type=int), "many", "count is a whole number"),
        (Setting("wait", "", type=Duration), "soon", "wait is a duration"),
        (Setting("timeout", "", type=Duration, minimum=0.001), "0", "at least"),
        (Setting("base_url", "", type=URL), "ftp://example.org", "http(s)://"),
        (Setting("token_env", "", secret=True), "not a name", "environment variable"),
        (Setting("mode", "", choices=("a", "b")), "c", "one of a, b"),
        (Setting("page_id", "the page", required=True), "", "required"),
    ],
)
def test_a_bad_value_is_one_clear_error_naming_the_setting(spec, raw, words):
    with pytest.raises(SettingError) as raised:
        spec.parse(raw)
    assert words in str(raised.value)
    assert spec.name in str(raised.value)


@pytest.mark.django_db
@pytest.mark.parametrize("kind", ["telegram", "mastodon", "twitter", "bluesky", "facebook"])
def test_a_bad_timeout_pauses_the_target_on_every_network_alike(kind):
    target = Target(name="t", kind=kind, settings={"timeout": "soon"})
    adapter = get_adapter(target)
    with pytest.raises(TargetBroken, match="timeout is a duration"):
        adapter.setting("timeout")


def test_http_networks_inherit_base_url_and_timeout():
    from syndicator.targets.base import HttpAdapter

    for cls in ADAPTERS.values():
        if issubclass(cls, HttpAdapter):
            names = {spec.name for spec in cls.settings_spec}
            assert {"base_url", "timeout"} <= names, cls.kind


# --- errors ---------------------------------------------------------------------------------------

TABLE = ErrorTable(
    by_code={"RateLimitExceeded": Rule(RateLimited, "slow down"), 190: Rule(TargetBroken, "token")},
    by_text=(("duplicate", Rule(PermanentError, "duplicate")),),
    by_status={401: Rule(TargetBroken, "unauthorized"), 503: Rule(TransientError, "unavailable")},
)


@pytest.mark.parametrize(
    ("status", "code", "text", "reason"),
    [
        (400, "RateLimitExceeded", "", "slow down"),  # the code wins over the status
        (400, 190, "duplicate", "token"),  # the code wins over the text
        (403, None, "Duplicate content", "duplicate"),  # the text wins over the status
        (401, None, "", "unauthorized"),
        (503, None, "", "unavailable"),
        (502, None, "", "server error"),  # unlisted 5xx
        (418, None, "", "request refused"),  # unlisted 4xx
        (302, None, "", "redirected"),
    ],
)
def test_the_table_is_read_code_then_text_then_status_then_class(status, code, text, reason):
    assert TABLE.rule(status, code, text).reason == reason


def test_only_a_publishing_call_can_be_outcome_unknown():
    rule = Rule(OutcomeUnknown, "server error")
    assert type(as_delivery_error(rule, "x", publishing=True)) is OutcomeUnknown
    assert type(as_delivery_error(rule, "x", publishing=False)) is TransientError


def test_a_rate_limit_always_carries_a_wait():
    rule = Rule(RateLimited, "slow down")
    assert as_delivery_error(rule, "x", publishing=True, retry_after=12).retry_after == 12
    assert as_delivery_error(rule, "x", publishing=True).retry_after == RATE_LIMIT_FALLBACK
    error = as_delivery_error(Rule(TransientError, "x"), "x", publishing=True, http_status=503)
    assert (error.http_status, error.retry_after) == (503, None)


@pytest.mark.parametrize(
    ("headers", "names", "body", "seconds"),
    [
        ({"retry-after": "30"}, ("retry-after",), None, 30.0),
        ({"x-rate-limit-reset": str(int(NOW + 90))}, ("x-rate-limit-reset",), None, 90.0),
        (
            {"retry-after": format_datetime(datetime.fromtimestamp(NOW + 120, UTC), usegmt=True)},
            ("retry-after",),
            None,
            120.0,
        ),
        (
            {"x-ratelimit-reset": (datetime.fromtimestamp(NOW, UTC) + timedelta(seconds=45)).isoformat()},
            ("x-ratelimit-reset",),
            None,
            45.0,
        ),
        ({"retry-after": "30"}, ("retry-after",), 7, 7.0),  # the body's value first (Telegram)
        ({"a": "junk", "b": "20"}, ("a", "b"), None, 20.0),  # an unreadable header is passed over
        ({"x-rate-limit-reset": str(int(NOW - 50))}, ("x-rate-limit-reset",), None, 1.0),  # past: 1 s
        ({}, ("retry-after",), None, None),
    ],
)
def test_retry_after_reads_seconds_epochs_http_dates_and_iso_times(headers, names, body, seconds):
    assert retry_after(headers, names, body_value=body, now=NOW) == seconds


def test_workers_consume_every_networks_queue_and_the_cli_prints_them():
    from celeryproject import app
    from syndicator.targets.registry import all_queues

    assert {queue.name for queue in app.conf.task_queues} == set(all_queues())
    out = io.StringIO()
    call_command("queues", stdout=out)
    assert out.getvalue().strip().split(",") == all_queues()
    out = io.StringIO()
    call_command("queues", "--deliveries", "--lines", stdout=out)
    assert out.getvalue().split() == delivery_queues()


def test_the_domain_sends_tasks_by_name_and_never_imports_them():
    """syndicator/ → tasks/ would be an import cycle (tasks import the domain): tasks go by name."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "syndicator"
    offenders = []
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = (
                [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else []
            )
            offenders += [
                f"{path.relative_to(root)}: {n}" for n in names if n == "tasks" or n.startswith("tasks.")
            ]
    assert offenders == []
