"""Networks, one package each under this folder; ``registry`` finds them (see ``base`` for the
contract and docs/networks.md for adding one).

Importing this package loads no network: models.py reads the registry while Django's apps are
still loading. ``ADAPTERS`` (every network, a mapping that imports them all when first read, so
``from syndicator.targets import ADAPTERS`` at the top of a module costs nothing) and
``get_adapter`` (that target's network only) load them.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from syndicator.targets.base import Adapter, SendResult, get_adapter, register


class _Adapters(Mapping[str, type[Adapter]]):
    """Every network's adapter by kind: one kind's package imported when that kind is read
    (registry.network), all of them when the whole mapping is (registry.load)."""

    def _all(self) -> dict[str, type[Adapter]]:
        from syndicator.targets.registry import load

        return load()

    def __getitem__(self, kind: str) -> type[Adapter]:
        from syndicator.targets.registry import network

        return network(kind)

    def __iter__(self) -> Iterator[str]:
        return iter(self._all())

    def __len__(self) -> int:
        return len(self._all())

    def __repr__(self) -> str:
        return repr(self._all())


_ADAPTERS = _Adapters()


def __getattr__(name: str) -> Any:
    if name == "ADAPTERS":
        return _ADAPTERS
    raise AttributeError(name)


__all__ = ["ADAPTERS", "Adapter", "SendResult", "get_adapter", "register"]
