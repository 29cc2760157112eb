"""Networks, one package each under this folder; ``registry`` finds them (see ``base`` for the
contract and docs/networks.md for adding one).

Importing this package loads no network: models.py reads the registry while Django's apps are
still loading. ``ADAPTERS`` (every network, loaded on first use) and ``get_adapter`` load them.
"""

from __future__ import annotations

from typing import Any

from syndicator.targets.base import Adapter, SendResult, get_adapter, register


def __getattr__(name: str) -> Any:
    if name == "ADAPTERS":
        from syndicator.targets.registry import load

        return load()
    raise AttributeError(name)


__all__ = ["ADAPTERS", "Adapter", "SendResult", "get_adapter", "register"]
