"""Target adapters, one module per network; importing this package registers them all."""

from syndicator.targets import outbox  # noqa: F401
from syndicator.targets.base import ADAPTERS, Adapter, SendResult, get_adapter, register

__all__ = ["ADAPTERS", "Adapter", "SendResult", "get_adapter", "register"]
