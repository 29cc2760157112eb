"""The Jinja2 sandbox message templates run in: admins edit them, so they are not trusted code.

Jinja2's SandboxedEnvironment refuses unsafe attributes (``__class__``, ``__globals__``…) and
caps range() at MAX_RANGE (100,000); this subclass bounds "*" and "**" as well.
"""

from __future__ import annotations

from typing import Any

from jinja2.sandbox import SandboxedEnvironment, SecurityError


class Sandbox(SandboxedEnvironment):
    """Jinja2's sandbox with "*" and "**" bounded too: it caps range() (MAX_RANGE) but not
    'x' * 10**10 or 10**(10**10), with which an edited template would take a worker's memory or CPU."""

    intercepted_binops = frozenset({"*", "**"})
    MAX_ITEMS = 1_000_000  # a repeated string or list
    MAX_BITS = 100_000  # an integer power (~30,000 digits)

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "*" and _repeated_length(left, right) > self.MAX_ITEMS:
            raise SecurityError(f"a repetition longer than {self.MAX_ITEMS} is not allowed")
        if operator == "**" and _power_bits(left, right) > self.MAX_BITS:
            raise SecurityError(f"a power larger than {self.MAX_BITS} bits is not allowed")
        return super().call_binop(context, operator, left, right)


def _repeated_length(left: Any, right: Any) -> int:
    """How long seq * n would be (0 unless one side is a sequence and the other an int)."""
    for seq, times in ((left, right), (right, left)):
        if isinstance(seq, str | list | tuple) and isinstance(times, int):
            return len(seq) * times
    return 0


def _power_bits(base: Any, exponent: Any) -> int:
    """About how many bits int ** int would take (0 for anything else)."""
    if isinstance(base, int) and isinstance(exponent, int) and exponent > 0:
        return abs(base).bit_length() * exponent if abs(base) > 1 else 0
    return 0
