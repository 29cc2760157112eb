"""Target adapters, one module per network; importing this package registers every one of them."""

import importlib
import pkgutil

from syndicator.targets.base import ADAPTERS, Adapter, SendResult, get_adapter, register

# Every module here except the shared ones is an adapter that registers itself on import, so
# adding a network is adding a module.
_SHARED = {"base", "http"}
for _module in pkgutil.iter_modules(__path__):
    if _module.name not in _SHARED and not _module.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["ADAPTERS", "Adapter", "SendResult", "get_adapter", "register"]
