"""The target form: one field per setting of the adapter (its ``settings_spec``), the filters as
lists, and one textarea per message template, saved only where it differs from the default.

Secrets never pass through here: a ``secret_env`` setting (and Target.secret_env) holds the name of
an environment variable, and the form says whether this web process has that variable set.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2
from django import forms
from django.conf import settings as django_settings
from django.core.exceptions import ValidationError

from syndicator.errors import PermanentError
from syndicator.formatting import Message, message_templates, render_message
from syndicator.models import Post, Target
from syndicator.sandbox import Sandbox
from syndicator.targets import ADAPTERS
from syndicator.targets.base import Adapter, Setting
from syndicator.targets.config import ENV_NAME_RE, SettingError
from syndicator.targets.guard import check_target_settings, secret_env_problem

SETTING_PREFIX = "setting__"
TEMPLATE_PREFIX = "template__"


def default_template(name: str) -> str:
    """The source of a bundled message template (what a target without an override uses)."""
    return Path(django_settings.SYNDICATOR_MESSAGE_TEMPLATES, name).read_text(encoding="utf-8")


def template_field(name: str) -> str:
    """The form field of a template file ("email.subject.j2" → "template__email_subject_j2")."""
    return TEMPLATE_PREFIX + name.replace(".", "_")


def settings_spec(kind: str) -> tuple[Setting, ...]:
    """The settings an adapter kind declares; none for a kind without an adapter yet."""
    cls = ADAPTERS.get(kind)
    return cls.settings_spec if cls else ()


def env_note(name: str, cls: type | None = None) -> str:
    """Whether an environment variable is set in this process; never its value. Said only of a
    variable a target may read (syndicator.targets.guard): the form tells nothing of the others."""
    if not name:
        return "no variable is named yet"
    if problem := secret_env_problem(name, cls):
        return problem
    return (
        f"{name} is set in the web process"
        if os.environ.get(name)
        else f"{name} is NOT set in the web process"
    )


def check_syntax(source: str) -> str:
    """'' if a template parses, else its error with the line number."""
    try:
        _parser().parse(source)
    except jinja2.TemplateSyntaxError as exc:
        return f"line {exc.lineno}: {exc.message}"
    return ""


@lru_cache(maxsize=1)
def _parser() -> Sandbox:
    return Sandbox()


def sample_post(post_id: int | str | None = None) -> Any:
    """The post a preview renders: the one asked for, else the newest, else a made-up one."""
    if post_id:
        return Post.objects.select_related("feed").get(pk=post_id)
    newest = Post.objects.select_related("feed").order_by("-first_seen_at", "-id").first()
    return newest or Post(
        title="A sample headline",
        url="https://example.org/sample",
        summary="The first lines of a sample story.",
        categories=["News"],
        language="en",
    )


def render_preview(target: Target, post: Any, overrides: dict[str, str]) -> Message:
    """A post rendered for a target with the given template overrides: what the worker would send."""
    return render_message(post, target.message_format, template_overrides=overrides, options=target.settings)


def changed_templates(fmt: str, sources: dict[str, str]) -> dict[str, str]:
    """The templates that differ from the bundled default (an empty one means "use the default")."""
    changed = {}
    for name in message_templates(fmt):
        source = sources.get(name, "").replace("\r\n", "\n")
        if source.strip() and source.rstrip("\n") != default_template(name).rstrip("\n"):
            changed[name] = source
    return changed


def _setting_field(spec: Setting) -> forms.Field:
    help_text = spec.help + (f" (default: {spec.default})" if spec.default not in (None, "") else "")
    label = spec.name.replace("_", " ")
    if spec.secret_env:
        return forms.CharField(label=label, required=spec.required, help_text=help_text, max_length=100)
    if spec.allowed():
        empty = [("", f"default ({spec.default})" if spec.default else "—")] if not spec.required else []
        choices = empty + [(c, c) for c in spec.allowed()]
        return forms.ChoiceField(label=label, required=spec.required, choices=choices, help_text=spec.help)
    if spec.type is bool:
        choices = [("", f"default ({'yes' if spec.default else 'no'})"), ("true", "yes"), ("false", "no")]
        return forms.ChoiceField(label=label, required=False, choices=choices, help_text=spec.help)
    help_text += f" — {spec.type_name}" if spec.type is not str else ""
    return forms.CharField(label=label, required=spec.required, help_text=help_text)


def _as_text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


class TargetFormBase(forms.ModelForm):
    """Fields common to every kind; ``target_form`` adds the kind's settings and templates."""

    languages = forms.CharField(
        required=False, help_text="Comma-separated language codes; empty: every language."
    )
    categories = forms.CharField(
        required=False, help_text="Comma-separated categories; empty: every category."
    )
    setting_specs: dict[str, Setting] = {}
    template_names: dict[str, str] = {}
    message_format = ""

    class Meta:
        model = Target
        fields = ("name", "kind", "enabled", "secret_env", "feeds", "languages", "categories")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        target = self.instance
        for key in ("languages", "categories"):
            self.initial[key] = ", ".join(getattr(target, key) or [])
        for field_name, spec in self.setting_specs.items():
            value = target.settings.get(spec.name, spec.default if spec.secret_env else None)
            self.initial[field_name] = _as_text(value)
            if spec.secret_env:
                self.fields[
                    field_name
                ].help_text += f" — {env_note(_as_text(value), ADAPTERS.get(target.kind))}"
        if "secret_env" in self.fields:
            self.fields["secret_env"].label = "Secret's environment variable"
            self.fields["secret_env"].help_text = (
                "Name of the environment variable holding this target's secret (never the secret itself) — "
                + env_note(target.secret_env, ADAPTERS.get(target.kind))
            )
        for field_name, name in self.template_names.items():
            self.initial[field_name] = target.template_overrides.get(name) or default_template(name)

    def clean_secret_env(self) -> str:
        name = _env_name(self.cleaned_data.get("secret_env", ""))
        if problem := secret_env_problem(name, self._adapter_class()):
            raise ValidationError(problem)
        return name

    def _adapter_class(self) -> type | None:
        return ADAPTERS.get(self.cleaned_data.get("kind") or self.instance.kind)

    def clean_languages(self) -> list[str]:
        return _split(self.cleaned_data.get("languages", ""), lower=True)

    def clean_categories(self) -> list[str]:
        return _split(self.cleaned_data.get("categories", ""))

    def clean(self) -> dict[str, Any]:
        super().clean()
        cleaned = self.cleaned_data  # what ModelForm.clean returns, typed without its "| None"
        if self.setting_specs:
            self.instance.settings = self._clean_settings(cleaned)
        if self.template_names:
            self.instance.template_overrides = self._clean_templates(cleaned)
        return cleaned

    def _clean_settings(self, cleaned: dict[str, Any]) -> dict[str, Any]:
        declared = {spec.name for spec in self.setting_specs.values()}
        # Keys the adapter no longer declares are kept: the form does not own them.
        values = {k: v for k, v in self.instance.settings.items() if k not in declared}
        for field_name, spec in self.setting_specs.items():
            raw = str(cleaned.get(field_name) or "").strip()
            if not raw:
                continue  # the adapter's default applies
            try:
                values[spec.name] = _env_name(raw) if spec.secret_env else spec.parse(raw)
                check_target_settings(self._adapter_class() or Adapter, {spec.name: values[spec.name]})
            except (SettingError, ValidationError) as exc:
                self.add_error(field_name, exc.messages if isinstance(exc, ValidationError) else str(exc))
        return values

    def _clean_templates(self, cleaned: dict[str, Any]) -> dict[str, str]:
        fields = {name: field_name for field_name, name in self.template_names.items()}
        sources = {name: str(cleaned.get(field_name) or "") for name, field_name in fields.items()}
        for name, field_name in fields.items():
            if problem := check_syntax(sources[name]):
                self.add_error(field_name, f"Template syntax error, {problem}")
        changed = changed_templates(self.message_format, sources)
        if changed and not self.errors:
            try:  # a sandbox violation or a failing expression shows only when rendered
                probe = Target(kind=self.instance.kind, settings=self.instance.settings)
                render_preview(probe, sample_post(), changed)
            except PermanentError as exc:
                culprit = next((fields[name] for name in changed if name in str(exc)), None)
                self.add_error(culprit, f"This template cannot render a post: {exc}")
        return changed


def target_form(kind: str, message_format: str, *, with_templates: bool) -> type[TargetFormBase]:
    """The form class for a target of this kind (settings fields) and format (template fields)."""
    specs = {SETTING_PREFIX + spec.name: spec for spec in settings_spec(kind)}
    templates = {template_field(n): n for n in message_templates(message_format)} if with_templates else {}
    attrs: dict[str, Any] = {name: _setting_field(spec) for name, spec in specs.items()}
    for field_name, name in templates.items():
        attrs[field_name] = forms.CharField(
            label=name,
            required=False,
            strip=False,
            widget=forms.Textarea(
                attrs={"rows": 14, "cols": 90, "class": "template-source", "spellcheck": "false"}
            ),
            help_text="Jinja2 (sandboxed). Leave as it is, or empty, to use the default.",
        )
    attrs.update(setting_specs=specs, template_names=templates, message_format=message_format)
    return type(f"{kind.title()}TargetForm", (TargetFormBase,), attrs)


def _env_name(value: str) -> str:
    value = (value or "").strip()
    if value and not ENV_NAME_RE.fullmatch(value):
        raise ValidationError(
            f"{value!r} is not an environment variable name (letters, digits and _): "
            "enter the NAME of the variable that holds the secret, never the secret."
        )
    return value


def _split(value: str, *, lower: bool = False) -> list[str]:
    items = [item.strip() for item in (value or "").split(",") if item.strip()]
    return list(dict.fromkeys(item.lower() if lower else item for item in items))
