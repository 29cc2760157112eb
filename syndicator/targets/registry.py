"""The registry of networks: every package under syndicator/targets/ is one, found on disk.

Nothing outside a network's package lists the kinds: model choices (``kind_choices``, a callable,
so a new network needs no migration), Celery queues (``delivery_queues``), the formats an outbox
imitates (``formats``), the demo and the tests all ask here. ``kinds`` reads the folder without
importing anything (celeryproject.py needs the queue names before Django is set up); the other
functions import the adapters.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from syndicator.targets.base import Adapter, TextRules

# The dry run: renders what another network would get and sends it nowhere.
OUTBOX = "outbox"
_PACKAGE = "syndicator.targets"
_FOLDER = Path(__file__).parent


@functools.cache
def _kinds() -> tuple[str, ...]:
    # Listed once per process: the folder does not change while it runs, and every render and
    # every delivery asks the registry (a directory listing each time would be I/O on that path).
    return tuple(
        sorted(
            module.name
            for module in pkgutil.iter_modules([str(_FOLDER)])
            if module.ispkg and not module.name.startswith("_")
        )
    )


def kinds() -> list[str]:
    """Every network's kind, from the package folders alone (no import), sorted."""
    return list(_kinds())


def load() -> dict[str, type[Adapter]]:
    """Import every network package (each registers its adapter) and return the registry."""
    from syndicator.targets.base import ADAPTERS

    if not ADAPTERS.keys() >= set(_kinds()):
        for kind in kinds():
            importlib.import_module(f"{_PACKAGE}.{kind}")
    return ADAPTERS


def network(kind: str) -> type[Adapter]:
    """The adapter class of a kind, importing that network's package alone on first use;
    KeyError when no network has that kind."""
    from syndicator.targets.base import ADAPTERS

    if kind not in ADAPTERS and kind in _kinds():
        importlib.import_module(f"{_PACKAGE}.{kind}")
    return ADAPTERS[kind]


def kind_choices() -> list[tuple[str, str]]:
    """(kind, label) of every network, the dry run first: ``Target.kind``'s choices."""
    adapters = load()
    order = sorted(adapters, key=lambda kind: (kind != OUTBOX, kind))
    return [(kind, adapters[kind].label) for kind in order]


def formats() -> tuple[str, ...]:
    """The kinds whose messages can be rendered (every network but the dry run), sorted."""
    return tuple(kind for kind, cls in sorted(load().items()) if cls.text is not None)


def text_rules(fmt: str) -> TextRules:
    """The text rules of a format; KeyError when no network renders it."""
    rules = network(fmt).text
    if rules is None:
        raise KeyError(fmt)
    return rules


def queue_name(kind: str) -> str:
    """The Celery queue a kind's deliveries go through (one per network: a slow one waits alone)."""
    return f"deliver.{kind}"


def delivery_queues() -> list[str]:
    """Every network's delivery queue."""
    return [queue_name(kind) for kind in kinds()]


# Queues that are not a network's: feed polls, and the sweeper and other upkeep.
SERVICE_QUEUES = ("feeds", "maintenance")


def all_queues() -> list[str]:
    """Every queue a worker that does everything consumes."""
    return [*SERVICE_QUEUES, *delivery_queues()]
