"""An Admin's target settings cannot reach the host's secrets or internal addresses (#15 item 1).

A target names the environment variable of its secret and the server it talks to. Only variables
named SYNDICATOR_SECRET_*, a network's documented names or SYNDICATOR_SECRET_ENV_ALLOW may be
named, and base URLs and mail hosts must be public unless SYNDICATOR_TARGET_ALLOW_PRIVATE lists
them — checked on save (CLI, admin form) and again before each send.
"""

from __future__ import annotations

import socket

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse

from syndicator.errors import TargetBroken
from syndicator.models import Delivery, Feed, Post, Target
from syndicator.targets import get_adapter
from syndicator.targets.guard import check_target_settings, host_problem, secret_env_problem
from syndicator.targets.registry import network
from tests.emulators import telegram

pytestmark = pytest.mark.django_db


@pytest.fixture
def no_private(settings):
    """The default: nothing private is allowed (the suite allows loopback for its emulators) and
    no variable but SYNDICATOR_SECRET_* and the documented names (the suite allows its harnesses')."""
    settings.SYNDICATOR_TARGET_ALLOW_PRIVATE = []
    settings.SYNDICATOR_SECRET_ENV_ALLOW = []


@pytest.fixture
def no_private_hosts(settings):
    settings.SYNDICATOR_TARGET_ALLOW_PRIVATE = []


@pytest.mark.parametrize("name", ["DATABASE_URL", "SECRET_KEY", "AWS_SECRET_ACCESS_KEY", "HOME"])
def test_the_hosts_own_variables_cannot_hold_a_targets_secret(no_private, name):
    assert "may not hold a target's secret" in secret_env_problem(name, network("telegram"))


def test_allowed_names_are_the_prefix_the_networks_documented_ones_and_the_allow_list(no_private, settings):
    telegram_cls = network("telegram")
    assert secret_env_problem("SYNDICATOR_SECRET_TG", telegram_cls) == ""
    assert secret_env_problem("TELEGRAM_BOT_TOKEN", telegram_cls) == ""  # documented in the README
    assert secret_env_problem("TWITTER_API_KEY", network("twitter")) == ""  # a secret setting's default
    assert secret_env_problem("TELEGRAM_BOT_TOKEN", network("twitter")) != ""  # another network's
    settings.SYNDICATOR_SECRET_ENV_ALLOW = ["LEGACY_TOKEN", "VAULT_*"]
    assert secret_env_problem("LEGACY_TOKEN") == "" and secret_env_problem("VAULT_TG") == ""
    assert secret_env_problem("LEGACY_TOKEN_2") != ""


def test_the_cli_refuses_a_forbidden_secret_variable_and_a_private_base_url(no_private):
    with pytest.raises(CommandError, match="DATABASE_URL may not hold a target's secret"):
        call_command(
            "targets",
            "add",
            "telegram",
            "--name",
            "t",
            "--token-env",
            "DATABASE_URL",
            "--set",
            "chat_id=@news",
        )
    with pytest.raises(CommandError, match="private address"):
        call_command(
            "targets",
            "add",
            "telegram",
            "--name",
            "t",
            "--token-env",
            "SYNDICATOR_SECRET_TG",
            "--set",
            "chat_id=@news",
            "--set",
            "base_url=http://127.0.0.1:9/",
        )
    with pytest.raises(CommandError, match="api_key_env: environment variable SECRET_KEY"):
        call_command("targets", "add", "twitter", "--name", "x", "--set", "api_key_env=SECRET_KEY")
    assert not Target.objects.exists()


def test_a_host_that_does_not_resolve_now_is_accepted_at_save_and_checked_at_send(no_private, monkeypatch):
    def unresolvable(*args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", unresolvable)
    check_target_settings(network("telegram"), {"base_url": "https://bot-api.internal.example"})
    assert "cannot resolve" in host_problem("https://bot-api.internal.example", at_save=False)


def test_a_listed_private_host_is_allowed(settings):
    settings.SYNDICATOR_TARGET_ALLOW_PRIVATE = ["10.0.0.0/8", "127.0.0.1"]
    assert host_problem("http://127.0.0.1:8081", at_save=True) == ""
    settings.SYNDICATOR_TARGET_ALLOW_PRIVATE = []
    assert "SYNDICATOR_TARGET_ALLOW_PRIVATE" in host_problem("http://127.0.0.1:8081", at_save=True)


def test_a_target_saved_before_the_rule_is_refused_at_send_and_paused(no_private, monkeypatch):
    """Rows written by hand or by an older version are checked again before every send."""
    monkeypatch.setenv("DATABASE_URL", "postgres://user:password@db/prod")
    target = Target.objects.create(
        name="exfil", kind="telegram", secret_env="DATABASE_URL", settings={"chat_id": "@news"}
    )
    with pytest.raises(TargetBroken, match="DATABASE_URL may not hold a target's secret"):
        get_adapter(target).secret()
    target.secret_env = "SYNDICATOR_SECRET_TG"
    target.settings = {"chat_id": "@news", "base_url": "http://127.0.0.1:9"}
    monkeypatch.setenv("SYNDICATOR_SECRET_TG", "123:abc")
    with pytest.raises(TargetBroken, match="private address"):
        get_adapter(target).base_url()


def test_a_send_to_a_private_base_url_never_leaves(no_private_hosts):
    """Through the real delivery path: the emulator on loopback receives nothing, the target pauses."""
    from syndicator.delivery import attempt_delivery

    with telegram.Harness() as harness:
        target = harness.make_target()  # base_url on 127.0.0.1, refused by default
        feed = Feed.objects.create(url="https://news.example/feed/")
        post = Post.objects.create(feed=feed, guid="g1", url="https://news.example/1", title="One")
        delivery = Delivery.objects.create(post=post, target=target)
        attempt_delivery(delivery.pk)
        assert harness.api.requests == []
    target.refresh_from_db()
    assert target.paused_at is not None and "private address" in target.paused_reason


def test_the_admin_form_refuses_them_and_tells_nothing_about_forbidden_variables(
    no_private, admin_role_client, monkeypatch
):
    monkeypatch.setenv("DATABASE_URL", "postgres://user:password@db/prod")
    target = Target.objects.create(
        name="tg", kind="telegram", secret_env="DATABASE_URL", settings={"chat_id": "@news"}
    )
    url = reverse("admin:syndicator_target_change", args=[target.pk])
    page = admin_role_client.get(url).content.decode()
    assert "DATABASE_URL is set" not in page and "may not hold a target" in page
    form = {
        "name": "tg",
        "kind": "telegram",
        "enabled": "on",
        "secret_env": "SECRET_KEY",
        "languages": "",
        "categories": "",
        "setting__chat_id": "@news",
        "setting__base_url": "http://127.0.0.1:9",
    }
    response = admin_role_client.post(url, form)
    errors = response.context["adminform"].form.errors
    assert "SECRET_KEY may not hold a target's secret" in " ".join(errors["secret_env"])
    assert "private address" in " ".join(errors["setting__base_url"])
    target.refresh_from_db()
    assert target.secret_env == "DATABASE_URL" and "base_url" not in target.settings
