"""The adapter contract every target implements, and the registry of adapters by kind."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from syndicator.formatting import Message
    from syndicator.models import Delivery, Target


@dataclass(frozen=True)
class Setting:
    """One setting an adapter reads from ``Target.settings``, declared as class data."""

    name: str
    help: str
    required: bool = False
    default: object = None
    choices: tuple[str, ...] = ()
    # The value names an environment variable that holds a secret; the secret itself is never stored.
    secret_env: bool = False


@dataclass
class SendResult:
    """What the network answered: its id for the post and a public URL when there is one."""

    external_id: str = ""
    external_url: str = ""
    details: dict = field(default_factory=dict)


# Settings the formatting layer reads for every network (syndicator.formatting.render_message).
FORMAT_SETTINGS = (
    Setting("hashtags", "Hashtags from the post's categories (default: on for X, Telegram and Mastodon)"),
    Setting("hashtag_limit", "At most this many hashtags", default=3),
    Setting("utm", "UTM parameters: false to add none, or a query such as utm_source=x&utm_campaign=y"),
)


class Adapter:
    """Base class of target adapters: render a delivery into a Message, then send it.

    ``send`` raises one of the ``syndicator.errors.DeliveryError`` subclasses on failure.
    """

    kind: ClassVar[str]
    label: ClassVar[str]
    settings_spec: ClassVar[tuple[Setting, ...]] = ()
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

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        own = {spec.name for spec in cls.settings_spec}
        cls.settings_spec = (*cls.settings_spec, *(s for s in FORMAT_SETTINGS if s.name not in own))

    def __init__(self, target: Target) -> None:
        self.target = target

    def setting(self, name: str) -> object:
        """The target's value for a declared setting, or its default."""
        for spec in self.settings_spec:
            if spec.name == name:
                return self.target.settings.get(name, spec.default)
        raise KeyError(name)

    def secret(self, setting_name: str | None = None) -> str:
        """The secret from the environment variable the target names (Target.secret_env, or a
        declared ``secret_env`` setting); TargetBroken when it is not set."""
        import os

        from syndicator.errors import TargetBroken

        env_name = str(self.setting(setting_name) or "") if setting_name else self.target.secret_env
        if not env_name:
            raise TargetBroken(f"target {self.target.name!r} names no environment variable for its secret")
        value = os.environ.get(env_name, "")
        if not value:
            raise TargetBroken(f"environment variable {env_name} is not set (secret of {self.target.name!r})")
        return value

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

    def check(self) -> str:
        """Verify the configuration and credentials; return a one-line verdict or raise."""
        return "ok"

    def verify(self, delivery: Delivery) -> SendResult | None:
        """Look up whether an uncertain delivery's post went out (its request left, no answer came).

        Return its SendResult when found; raise a DeliveryError saying what the look-up found (or
        why it failed) when not; None when this network cannot tell, which leaves the delivery to
        an admin (``verify_note`` says why). syndicator.recovery calls it at most once per
        uncertain episode. Networks that cannot tell: Telegram (a bot cannot read a channel's
        history), X (reading the timeline needs a paid read tier), email (some recipients' answers
        were lost; an admin's retry re-sends only to those not known to have it).
        """
        return None

    @classmethod
    def can_verify(cls) -> bool:
        """Whether this adapter overrides ``verify`` (can look a post up)."""
        return cls.verify is not Adapter.verify


ADAPTERS: dict[str, type[Adapter]] = {}


def register(cls: type[Adapter]) -> type[Adapter]:
    """Class decorator adding an adapter to the registry under its ``kind``."""
    ADAPTERS[cls.kind] = cls
    return cls


def get_adapter(target: Target) -> Adapter:
    """The adapter instance for a target."""
    import syndicator.targets  # noqa: F401  (imports every adapter module, filling ADAPTERS)

    try:
        cls = ADAPTERS[target.kind]
    except KeyError:
        from syndicator.errors import TargetBroken

        raise TargetBroken(f"no adapter for target kind {target.kind!r}") from None
    return cls(target)
