"""``syndicator targets check``: one verdict per target, non-zero exit when any fails."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from syndicator.models import Target

pytestmark = pytest.mark.django_db


def run_check(*args: str) -> str:
    out = StringIO()
    call_command("targets", "check", *args, stdout=out, no_color=True)
    return out.getvalue()


def test_check_prints_a_verdict_per_target():
    Target.objects.create(name="dry-x", kind="outbox", settings={"format": "twitter"})
    output = run_check()
    assert "dry-x" in output and "ok" in output and "twitter" in output


def test_check_fails_with_the_reason_and_a_non_zero_exit():
    Target.objects.create(name="good", kind="outbox")
    Target.objects.create(name="dead", kind="outbox", settings={"fail": "broken", "fail_next": 1})
    with pytest.raises(CommandError, match="1 target failed the check"):
        run_check()
    with pytest.raises(CommandError):
        run_check("dead")
    assert "dry run" in run_check("good")


def test_check_of_an_unknown_target_is_a_one_line_error():
    with pytest.raises(CommandError, match="nope"):
        run_check("nope")


def test_formatting_switches_are_settings_of_every_kind():
    call_command("targets", "add", "outbox", "--name", "plain", "--set", "hashtags=false", "utm=false")
    call_command("targets", "add", "outbox", "--name", "tagged", "--set", "utm=utm_source=newsletter")
    assert Target.objects.get(name="plain").settings == {"hashtags": False, "utm": False}
    assert Target.objects.get(name="tagged").settings == {"utm": "utm_source=newsletter"}
