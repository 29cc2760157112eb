"""The contract every network implements, declared as data on its adapter class.

A network is a package ``syndicator/targets/<kind>/`` whose adapter class (a subclass of
``Adapter``, registered with ``@register``) declares, besides ``send``/``check``/``verify``:

- ``settings_spec``: its typed ``Setting``s (syndicator.targets.config), with ``base_url`` and
  ``timeout`` inherited by every ``HttpAdapter`` and the formatting settings by every network;
- ``text``: its ``TextRules`` — the message template, how the network counts length, its limit,
  caption limit, markup and hashtag default (syndicator.formatting reads nothing else);
- ``errors``: its ``ErrorTable`` (syndicator.targets.faults), turned into exceptions by
  ``network_error``;
- ``capabilities``: what it can edit and delete afterwards, and within what window.

Everything outside the package — model choices, Celery queues, the formats an outbox imitates,
the demo, the repost counters, the conformance and fault tests — reads the registry
(syndicator.targets.registry). docs/networks.md walks through adding one.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from syndicator.errors import DeliveryError, OutcomeUnknown, TargetBroken
from syndicator.targets.config import (
    NO_PACING,
    TIMEOUT,
    Pacing,
    Setting,
    SettingError,
    base_url_setting,
    followup_settings,
    format_settings,
    pacing_settings,
)
from syndicator.targets.faults import ErrorTable, Rule, as_delivery_error

if TYPE_CHECKING:
    from syndicator.formatting import Message
    from syndicator.models import Delivery, Target


@dataclass
class SendResult:
    """What the network answered: its id for the post and a public URL when there is one."""

    external_id: str = ""
    external_url: str = ""
    details: dict = field(default_factory=dict)


Measure = Callable[[str], int]


@dataclass(frozen=True)
class TextRules:
    """How a network's messages are written: template, measure, limits, markup, defaults."""

    # The templates under templates/messages/ a target may override; the first is the body.
    templates: tuple[str, ...]
    measure: Measure
    max_length: int | None  # None: no limit on the body
    unit: str  # how ``measure`` counts, for the repost counter and "too long" messages
    caption_max: int | None = None  # a photo's caption, when shorter than a text message
    subject_max: int | None = None  # a subject line's limit, for a message that has one
    # "html": the body is HTML (an editor's text is escaped, the link added as <a>), else plain.
    markup: str = "text"
    # The network shows the link beside the text (as a card), so the text need not carry it.
    link_beside: bool = False
    hashtags: bool = False  # the default of the ``hashtags`` setting
    # The summary is a one-paragraph teaser of at most this many characters (None: whole summary).
    summary_teaser: int | None = 500
    title_cap: int | None = None  # a title longer than this is cut before fitting (bounds the search)
    # The limit and measure come from the target's settings (an instance's own limits), or None.
    limits_from_settings: Callable[[dict], tuple[Measure, int]] | None = None
    # The network's own last step on a rendered message (check its markup, choose a caption).
    finish: Callable[[Message], None] | None = None
    # A whole message of its own shape (subject, plain text, HTML), instead of one fitted body.
    compose: Callable[..., None] | None = None
    utm_medium: str = "social"

    def limits(self, options: dict) -> tuple[Measure, int | None]:
        """The measure and limit for a target with these settings."""
        if self.limits_from_settings is not None:
            return self.limits_from_settings(options)
        return self.measure, self.max_length


@dataclass(frozen=True)
class Capabilities:
    """What a network lets us change after a post is out, declared as data (docs/networks.md)."""

    edit: bool = False
    delete: bool = False
    edit_window: float | None = None  # seconds after posting; None: no limit
    delete_window: float | None = None
    max_edits: int | None = None
    note: str = ""  # what the network allows, in a sentence for the target page


class Adapter:
    """Base class of network adapters: render a delivery into a Message, then send it.

    ``send`` raises one of the ``syndicator.errors.DeliveryError`` subclasses on failure.
    """

    kind: ClassVar[str]
    label: ClassVar[str]
    settings_spec: ClassVar[tuple[Setting, ...]] = ()
    text: ClassVar[TextRules | None] = None
    errors: ClassVar[ErrorTable] = ErrorTable()
    capabilities: ClassVar[Capabilities] = Capabilities()
    # The network's hard rate limits and daily budgets, as its documentation states them
    # (syndicator/pacing.py enforces them across every worker; docs/pacing.md lists the sources).
    pacing: ClassVar[Pacing] = NO_PACING
    # Whether re-sending after an ambiguous outcome is harmless (nothing public happens twice).
    idempotent: ClassVar[bool] = False
    # Why an uncertain delivery of this network waits for an admin (shown in its last_error), for
    # adapters that cannot look a post up (see ``verify``).
    verify_note: ClassVar[str] = (
        "this network cannot be asked whether the post went out: an admin checks the account, "
        "then retries the delivery or leaves it"
    )
    # What happens next to an uncertain delivery, for adapters that can settle one (see ``verify``).
    verify_plan: ClassVar[str] = "it will be looked up on the network shortly"
    # How long after the first attempt that may have posted a look-up that failed transiently (the
    # network down, a 429) is tried again (syndicator.recovery), and why not after that. A day for a
    # look-up among the newest posts: later, newer posts may have pushed it out of the page read.
    verify_horizon: ClassVar[float] = 24 * 3600.0
    verify_horizon_note: ClassVar[str] = (
        "a look-up reads only the account's newest posts, and after a day this one may be past them"
    )
    # The network records a result per recipient (a mailing list): shown with each delivery.
    per_recipient_results: ClassVar[bool] = False
    # Environment variable names this network's documentation suggests for its secrets (allowed
    # besides SYNDICATOR_SECRET_*: syndicator.targets.guard).
    documented_secrets: ClassVar[tuple[str, ...]] = ()
    # Settings every subclass inherits unless it declares its own of the same name.
    inherited_settings: ClassVar[tuple[Setting, ...]] = ()

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if "settings_spec" not in cls.__dict__ and "text" not in cls.__dict__:
            return  # an intermediate base class: its subclasses compose their own
        own = {spec.name for spec in cls.settings_spec}
        shared = (
            *cls.inherited_settings,
            *format_settings(cls.text.hashtags if cls.text else None),
            *pacing_settings(cls.pacing),
            *followup_settings(cls.capabilities.edit, cls.capabilities.delete),
        )
        cls.settings_spec = (*cls.settings_spec, *(s for s in shared if s.name not in own))

    def __init__(self, target: Target) -> None:
        self.target = target

    # --- settings -------------------------------------------------------------------------------

    @classmethod
    def spec(cls, name: str) -> Setting:
        """The declared setting ``name``."""
        for spec in cls.settings_spec:
            if spec.name == name:
                return spec
        raise KeyError(name)

    def setting(self, name: str) -> Any:
        """The target's value for a declared setting, typed, or its default.

        A value the setting does not take pauses the target (TargetBroken): every send would fail
        the same way until someone fixes it.
        """
        try:
            return self.spec(name).parse(self.target.settings.get(name))
        except SettingError as exc:
            raise TargetBroken(f"{self.label}: target {self.target.name!r}: {exc}") from None

    def secret(self, setting_name: str | None = None) -> str:
        """The secret from the environment variable the target names (Target.secret_env, or a
        declared ``secret`` setting); TargetBroken when it is not set."""
        from syndicator.targets.guard import secret_env_problem

        env_name = str(self.setting(setting_name) or "") if setting_name else self.target.secret_env
        if not env_name:
            raise TargetBroken(f"target {self.target.name!r} names no environment variable for its secret")
        if problem := secret_env_problem(env_name, type(self)):
            raise TargetBroken(f"{self.label}: target {self.target.name!r}: {problem}")
        value = os.environ.get(env_name, "")
        if not value:
            raise TargetBroken(f"environment variable {env_name} is not set (secret of {self.target.name!r})")
        return value

    # --- errors ---------------------------------------------------------------------------------

    def network_error(
        self,
        rule: Rule,
        action: str,
        *,
        publishing: bool,
        http_status: int | None = None,
        said: str = "",
        retry_after: float | None = None,
        **details: object,
    ) -> DeliveryError:
        """The exception for an error answer, by the network's rule, with a message for admins.

        ``said`` is the network's own words (already redacted by the caller: it may hold a token);
        ``details`` fill placeholders in the rule's reason and advice ({chat}, {env}, ...).
        """
        values = {"env": self._env_label(), **details}
        reason, advice = rule.reason.format(**values), rule.advice.format(**values)
        status = f" ({http_status})" if http_status is not None else ""
        # "X send: chat not found (400): chat not found; …" reads oddly, so the network's own
        # words stand first only when they differ from the reason.
        if said and said.strip().lower() != reason.lower():
            text = f"{self.label} {action}: {said[:300]}{status}: {reason}"
        else:
            text = f"{self.label} {action}: {reason}{status}"
        if advice:
            text += f"; {advice}"
        return as_delivery_error(
            rule, text, publishing=publishing, http_status=http_status, retry_after=retry_after
        )

    def no_id(self, action: str, http_status: int | None = None, *, publishing: bool = True) -> DeliveryError:
        """A success answer we cannot read (no id of what was made): after a publishing call
        something may be public, unseen (OutcomeUnknown); after any other, a plain retry."""
        return as_delivery_error(
            Rule(OutcomeUnknown, "the answer carried no id"),
            f"{self.label} {action}: HTTP {http_status} without a readable result: it may have been posted"
            if publishing
            else f"{self.label} {action}: HTTP {http_status} without a readable result",
            publishing=publishing,
            http_status=http_status,
        )

    def _env_label(self) -> str:
        return f"${self.target.secret_env}" if self.target.secret_env else "the target's secret variable"

    # --- the contract ---------------------------------------------------------------------------

    def render(self, delivery: Delivery) -> Message:
        """The message this target would send for the delivery's post."""
        from syndicator.formatting import render_message

        return render_message(
            delivery.post,
            self.target.message_format,
            text_override=delivery.text_override or None,
            template_overrides=self.target.template_overrides or None,
            options=self.target.settings,
        )

    def send(self, message: Message, delivery: Delivery) -> SendResult:
        """Publish the message; raise a DeliveryError subclass on failure."""
        raise NotImplementedError

    def network_label(self) -> str:
        """Whose posts these are, for what a follow-up says ("X posts cannot be edited")."""
        return self.label

    def abilities(self) -> Capabilities:
        """What this target can edit and delete: the network's ``capabilities`` (an outbox
        imitates those of the format it renders)."""
        return self.capabilities

    def edit(self, message: Message, delivery: Delivery) -> SendResult:
        """Change the network's post of a sent delivery (``delivery.external_id``, and what the
        send recorded in ``delivery.sent_details``) to read as ``message``.

        Only for networks whose ``capabilities.edit`` is true. Safe to repeat: the same edit
        applied twice leaves the same post. Errors come from the network's ``errors`` table with
        ``publishing=False`` (an edit whose answer was lost is retried, never uncertain); a
        network that will not make the change (window passed, too many edits) raises
        ``syndicator.errors.EditRefused``. Returns the post's id and URL (they may change: an X
        edit is a new post id) and what a later edit or delete needs in ``details``.
        """
        raise NotImplementedError(f"{self.label} posts cannot be edited")

    def delete(self, delivery: Delivery) -> None:
        """Delete the network's post of a sent delivery.

        Only for networks whose ``capabilities.delete`` is true. Safe to repeat: a post that is
        already gone (404, "message to delete not found") counts as deleted and returns normally.
        Errors as for ``edit``; a network that will not delete it (the Bot API deletes only messages
        sent less than 48 hours ago) raises ``EditRefused``.
        """
        raise NotImplementedError(f"{self.label} posts cannot be deleted")

    def resumable(self, delivery: Delivery) -> bool:
        """Whether a send whose worker was lost mid-way can be resumed by the automatic retry
        without sending anything twice: only a network that records a result per recipient
        (``per_recipient_results``) and still has recipients it never tried. The others become
        uncertain (syndicator.recovery.settle_lost_sends)."""
        return False

    def check(self) -> str:
        """Verify the configuration and credentials; return a one-line verdict or raise."""
        return "ok"

    def verify(self, delivery: Delivery) -> SendResult | None:
        """Look up whether an uncertain delivery's post went out (its request left, no answer came).

        Return its SendResult when found; raise a DeliveryError saying what the look-up found (or
        why it failed) when not; None when this network cannot tell, which leaves the delivery to
        an admin (``verify_note`` says why). syndicator.recovery calls it once per uncertain
        episode, and again with the retry policy's backoff while it fails transiently (raises a
        TransientError: the network down, a 429), up to ``verify_horizon``.
        """
        return None

    @classmethod
    def can_verify(cls) -> bool:
        """Whether this adapter overrides ``verify`` (can look a post up)."""
        return cls.verify is not Adapter.verify


class HttpAdapter(Adapter):
    """A network reached over HTTP: inherits the ``base_url`` and ``timeout`` settings."""

    default_base_url: ClassVar[str] = ""

    def __init_subclass__(cls, **kwargs: object) -> None:
        base_url = (base_url_setting(cls.default_base_url),) if cls.default_base_url else ()
        cls.inherited_settings = (*base_url, TIMEOUT)
        super().__init_subclass__(**kwargs)

    def base_url(self) -> str:
        """The API server this target talks to, once its host passed the network guard (private
        addresses only where SYNDICATOR_TARGET_ALLOW_PRIVATE allows: syndicator.targets.guard)."""
        url = str(self.setting("base_url") or self.default_base_url)
        if url != getattr(self, "_guarded_base_url", None):
            from syndicator.targets.guard import host_problem

            if problem := host_problem(url, at_save=False):
                raise TargetBroken(f"{self.label}: target {self.target.name!r}: base_url {url}: {problem}")
            self._guarded_base_url = url
        return url

    def timeout(self) -> float | None:
        """Seconds per API call from the target's settings; None: SYNDICATOR_TARGET_TIMEOUT."""
        value = self.setting("timeout")
        return float(value) if value else None


ADAPTERS: dict[str, type[Adapter]] = {}


def register(cls: type[Adapter]) -> type[Adapter]:
    """Class decorator adding an adapter to the registry under its ``kind``."""
    ADAPTERS[cls.kind] = cls
    return cls


def get_adapter(target: Target) -> Adapter:
    """The adapter instance for a target."""
    from syndicator.targets.registry import network

    try:
        cls = network(target.kind)
    except KeyError:
        raise TargetBroken(f"no adapter for target kind {target.kind!r}") from None
    return cls(target)
