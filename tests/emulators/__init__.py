"""Loopback emulators of the networks' APIs, one module per network, named after its kind.

Each module ``tests/emulators/<kind>.py`` offers a ``Harness`` (tests/emulators/base.py:
NetworkHarness) through which the shared tests — conformance, end to end, the secrets sweep and the
fault suite — take every registered network, so a new network joins them by its own files alone.
"""

from __future__ import annotations

import importlib
from typing import Any


def network_kinds() -> list[str]:
    """Every registered network but the dry run: each has an emulator module here."""
    from syndicator.targets.registry import OUTBOX, kinds

    return [kind for kind in kinds() if kind != OUTBOX]


def harness_class(kind: str) -> Any:
    """A network's Harness class, from tests/emulators/<kind>.py."""
    return importlib.import_module(f"tests.emulators.{kind}").Harness
