"""The Jinja2 sandbox message templates run in: admins edit them, so they are not trusted code.

Jinja2's sandbox refuses unsafe attributes (``__class__``, ``__globals__``…) and caps range() at
MAX_RANGE (100,000), but not the size of what a template makes: ``"x"|center(300000000)``,
``"%0300000000d" % 1``, ``"{:>300000000}".format("x")`` and ``|indent(300000000)`` each build a
300-million-character string, and nested loops can run for hours. Here every rendering is bounded:

- no string or list a template makes is longer than MAX_LENGTH: widths, paddings, precisions and
  repeats are checked *before* the value is built (filters center, indent, format, replace, join,
  wordwrap, batch, slice, tojson; str methods center, ljust, rjust, zfill, expandtabs, replace,
  join, translate, format, format_map; the operators ``*``, ``%``, ``**``), and ``+`` and ``~``
  after (their result is at most twice a bounded value);
- one rendering outputs at most MAX_OUTPUT characters (the output stream, and the buffers of
  macros, ``{% set %}`` blocks and ``{% filter %}``, are counted as they fill);
- one rendering takes at most MAX_STEPS loop iterations and calls, and every rendering of one
  message together at most ``SYNDICATOR_TEMPLATE_TIMEOUT`` seconds (``time_limit``): each loop
  iteration and each call checks the clock, in the worker and in the web preview alike;
- lists, dicts and sets cannot be changed in place (ImmutableSandboxedEnvironment), so a loop
  cannot grow one with ``.append``; ``namespace()`` still carries values out of a loop.

A limit raises TemplateLimitError, a SecurityError; formatting turns it into a PermanentError
naming the template, which the preview shows and the delivery log records.

Not bounded: a container holding one large string many times (``[s, s, s…]``) printed whole,
whose text form can be far larger than the container; a hard memory cap needs a process limit.
"""

from __future__ import annotations

import operator
import re
import time
import types
from collections.abc import Callable, Collection, Iterable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from functools import wraps
from typing import Any, TypeVar

import jinja2
from jinja2 import filters as jinja_filters
from jinja2 import nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.sandbox import (
    MAX_RANGE,
    ImmutableSandboxedEnvironment,
    SandboxedEscapeFormatter,
    SandboxedFormatter,
    SecurityError,
)
from jinja2.utils import generate_lorem_ipsum
from markupsafe import Markup

MAX_LENGTH = 1_000_000  # characters (or items) of any one value a template makes
# Characters one rendering outputs. A message body may carry a whole article: a feed may bring up
# to SYNDICATOR_FEED_MAX_BYTES (10 MB) and an email has it twice (text and HTML), so the cap sits
# above that (the hostile-feed catalogue's "one huge item" is 1.3 M characters), not at 1 M.
MAX_OUTPUT = 24_000_000
MAX_STEPS = 1_000_000  # loop iterations and calls in one rendering (range() alone allows 100,000)
MAX_BITS = 100_000  # an integer made by * or ** (~30,000 digits)
MAX_INDENT = 64  # tojson's indent: repeated once per nesting level on every line
DEFAULT_SECONDS = 5.0  # a message's renderings together; the bundled templates take milliseconds

F = TypeVar("F", bound=Callable[..., Any])


class TemplateLimitError(SecurityError):
    """A template asked for more than a rendering may use: size, steps or time."""


# --- the budget of one rendering, and the deadline of one message --------------------------------


@dataclass
class _Budget:
    deadline: float
    seconds: float
    steps: int = 0


_deadline: ContextVar[tuple[float, float] | None] = ContextVar("template_deadline", default=None)
_budget: ContextVar[_Budget | None] = ContextVar("template_budget", default=None)


def _timeout() -> float:
    try:
        from django.conf import settings

        return float(getattr(settings, "SYNDICATOR_TEMPLATE_TIMEOUT", DEFAULT_SECONDS))
    except ImportError:  # pragma: no cover - the sandbox used outside Django
        return DEFAULT_SECONDS


def time_limit(func: F) -> F:
    """Give everything ``func`` renders one deadline (a message renders its templates many times)."""

    @wraps(func)
    def bounded(*args: Any, **kwargs: Any) -> Any:
        if _deadline.get() is not None:  # an outer call set the deadline already
            return func(*args, **kwargs)
        seconds = _timeout()
        token = _deadline.set((time.monotonic() + seconds, seconds))
        try:
            return func(*args, **kwargs)
        finally:
            _deadline.reset(token)

    return bounded  # type: ignore[return-value]


def _tick() -> None:
    """Count one loop iteration or call of the current rendering; raise past a limit."""
    budget = _budget.get()
    if budget is None:
        return
    budget.steps += 1
    if budget.steps > MAX_STEPS:
        raise TemplateLimitError(f"the template ran more than {MAX_STEPS:,} loop iterations and calls")
    if time.monotonic() > budget.deadline:
        raise TemplateLimitError(f"the template took longer than {budget.seconds:g} s to render")


def render(template: jinja2.Template, values: dict[str, Any]) -> str:
    """Render a template within the limits: MAX_OUTPUT characters, MAX_STEPS, the deadline."""
    deadline, seconds = _deadline.get() or (time.monotonic() + _timeout(), _timeout())
    token = _budget.set(_Budget(deadline, seconds))
    try:
        parts, size = [], 0
        for chunk in template.generate(values):
            size += len(chunk)
            if size > MAX_OUTPUT:
                raise TemplateLimitError(f"the template's output passed {MAX_OUTPUT:,} characters")
            parts.append(chunk)
        return "".join(parts)
    finally:
        _budget.reset(token)


# --- size checks ---------------------------------------------------------------------------------


def _refuse_over(size: int, what: str, limit: int = MAX_LENGTH) -> None:
    if size > limit:
        raise TemplateLimitError(f"{what} of {size:,} is more than the {limit:,} a template may make")


def _sized(value: Any) -> Any:
    """value, if it is not longer than MAX_LENGTH (the result of + or ~)."""
    if isinstance(value, str | bytes | list | tuple):
        _refuse_over(len(value), "a value")
    return value


def _bounded_join(parts: Iterable[str]) -> str:
    """``"".join``, refusing past MAX_OUTPUT characters (Environment.concat)."""
    buffer = _Buffer()
    buffer.extend(parts)
    return "".join(buffer)


class _Buffer(list):
    """The output buffer of a macro, a ``{% set %}`` block or a ``{% filter %}``, bounded as it fills."""

    size = 0

    def append(self, item: str) -> None:
        self.size += len(item)
        _refuse_over(self.size, "a block's output", MAX_OUTPUT)
        super().append(item)

    def extend(self, items: Iterable[str]) -> None:
        items = tuple(items)
        self.size += sum(len(item) for item in items)
        _refuse_over(self.size, "a block's output", MAX_OUTPUT)
        super().extend(items)


# Widths and precisions of printf-style conversions: %5d, %-10s, %.3f, %*d, %(name)08.2f.
_PERCENT_SPEC = re.compile(r"%(?:\([^)]*\))?[#0\- +]*(\*|\d+)?(?:\.(\*|\d*))?[hlL]?[a-zA-Z%]")


def _check_percent(template: str | bytes) -> None:
    """Refuse a printf-style format whose width or precision is too large, or given as *."""
    text = template.decode("latin-1") if isinstance(template, bytes) else template
    for width, precision in _PERCENT_SPEC.findall(text):
        if "*" in (width, precision):
            raise TemplateLimitError("a * width or precision in a % format is not allowed in a template")
        _refuse_over(max(int(width or 0), int(precision or 0)), "a % format width")


def _check_format_spec(spec: str) -> None:
    """Refuse a str.format spec ({:>300000000}, {:.300000000f}) whose width or precision is too large."""
    for number in re.findall(r"\d+", spec):
        _refuse_over(int(number), "a format width")


def _width(value: Any) -> int:
    return len(value) if isinstance(value, str) else operator.index(value)


def _replaced_length(s: str | bytes, old: Any, new: Any, count: Any = -1) -> int:
    times = len(s) + 1 if not old else s.count(old)
    if count is not None and operator.index(count) >= 0:
        times = min(times, operator.index(count))
    return len(s) + times * max(len(new) - len(old), 0)


def _joined_length(separator: Any, items: list[Any]) -> int:
    return len(separator) * max(len(items) - 1, 0) + sum(len(i) for i in items if hasattr(i, "__len__"))


def _translated_length(s: str | bytes, table: Any) -> int:
    if isinstance(table, dict):
        longest = max((len(v) for v in table.values() if isinstance(v, str | bytes)), default=1)
        return len(s) * max(longest, 1)
    return len(s)


# How long the result of a str (or bytes) method will be, from its arguments.
_STR_METHODS: dict[str, Callable[..., int]] = {
    "center": lambda s, width, *_: max(len(s), operator.index(width)),
    "ljust": lambda s, width, *_: max(len(s), operator.index(width)),
    "rjust": lambda s, width, *_: max(len(s), operator.index(width)),
    "zfill": lambda s, width: max(len(s), operator.index(width)),
    "expandtabs": lambda s, tabsize=8: len(s) + s.count("\t" if isinstance(s, str) else b"\t") * tabsize,
    "replace": _replaced_length,
    "join": _joined_length,
    "translate": _translated_length,
}


def _bounded_method(method: Any) -> Callable[..., Any] | None:
    """A size-checked version of a str/bytes method that can grow its string, else None."""
    owner, name = getattr(method, "__self__", None), getattr(method, "__name__", "")
    if isinstance(owner, int) and not isinstance(owner, bool) and name == "to_bytes":

        def to_bytes(length: int = 1, *args: Any, **kwargs: Any) -> bytes:
            _refuse_over(operator.index(length), "a byte string")
            return method(length, *args, **kwargs)

        return to_bytes
    if not isinstance(owner, str | bytes | bytearray) or name not in _STR_METHODS:
        return None

    def bounded(*args: Any, **kwargs: Any) -> Any:
        if name == "join" and args:
            args = (list(args[0]), *args[1:])  # materialized once: measured, then joined
        _refuse_over(_STR_METHODS[name](owner, *args, **kwargs), f"the result of .{name}()")
        return method(*args, **kwargs)

    return bounded


class _BoundedFormatter(SandboxedFormatter):
    def format_field(self, value: Any, format_spec: str) -> Any:
        _check_format_spec(format_spec)
        return super().format_field(value, format_spec)


class _BoundedEscapeFormatter(_BoundedFormatter, SandboxedEscapeFormatter):
    pass


# --- filters with a size argument ----------------------------------------------------------------


def _center(value: Any, width: int = 80) -> str:
    _refuse_over(max(len(str(value)), operator.index(width)), "a centred width")
    return jinja_filters.do_center(value, width)


def _indent(s: Any, width: int | str = 4, first: bool = False, blank: bool = False) -> str:
    text = str(s)
    _refuse_over(len(text) + (text.count("\n") + 1) * _width(width), "an indented text")
    return jinja_filters.do_indent(s, width, first, blank)


def _format(value: Any, *args: Any, **kwargs: Any) -> str:
    _check_percent(str(value))
    return jinja_filters.do_format(value, *args, **kwargs)


@jinja2.pass_eval_context
def _replace(eval_ctx: Any, s: Any, old: str, new: str, count: int | None = None) -> str:
    _refuse_over(_replaced_length(str(s), str(old), str(new), count), "a replaced text")
    return jinja_filters.do_replace(eval_ctx, s, old, new, count)


@jinja2.pass_eval_context
def _join(eval_ctx: Any, value: Iterable[Any], d: str = "", attribute: str | int | None = None) -> str:
    items = list(value)
    if attribute is not None:
        items = list(map(jinja_filters.make_attrgetter(eval_ctx.environment, attribute), items))
    _refuse_over(_joined_length(d, [str(i) for i in items]), "a joined text")
    return jinja_filters.sync_do_join(eval_ctx, items, d)


@jinja2.pass_environment
def _wordwrap(environment: Any, s: str, width: int = 79, *args: Any, **kwargs: Any) -> str:
    wrapstring = kwargs.get("wrapstring", args[1] if len(args) > 1 else None) or environment.newline_sequence
    lines = 2 * len(s) // max(operator.index(width), 1) + s.count("\n") + 1
    _refuse_over(len(s) + lines * len(wrapstring), "a wrapped text")
    return jinja_filters.do_wordwrap(environment, s, width, *args, **kwargs)


def _batch(value: Iterable[Any], linecount: int, fill_with: Any = None) -> Iterator[list[Any]]:
    _refuse_over(operator.index(linecount), "a batch")
    return jinja_filters.do_batch(value, linecount, fill_with)


def _slice(value: Collection[Any], slices: int, fill_with: Any = None) -> Iterator[list[Any]]:
    _refuse_over(operator.index(slices), "a number of slices", MAX_RANGE)
    return jinja_filters.sync_do_slice(value, slices, fill_with)


@jinja2.pass_eval_context
def _tojson(eval_ctx: Any, value: Any, indent: int | str | None = None) -> Any:
    _refuse_over(_width(indent or 0), "a JSON indent", MAX_INDENT)
    # Jinja types indent as int | None, but hands it to json.dumps, which takes a str too.
    return jinja_filters.do_tojson(eval_ctx, value, indent)  # type: ignore[arg-type]


@jinja2.pass_environment
def _sum(environment: Any, iterable: Iterable[Any], attribute: Any = None, start: Any = 0) -> Any:
    # Summing lists or strings is quadratic and unbounded; a template adds numbers.
    if not isinstance(start, int | float):
        raise TemplateLimitError("|sum adds numbers; join strings with |join")
    return jinja_filters.sync_do_sum(environment, iterable, attribute, start)


def _lipsum(n: int = 5, html: bool = True, min: int = 20, max: int = 100) -> str:
    _refuse_over(operator.index(n) * operator.index(max), "a lorem ipsum of words", MAX_LENGTH // 10)
    return generate_lorem_ipsum(n, html, min, max)


BOUNDED_FILTERS: dict[str, Callable[..., Any]] = {
    "center": _center,
    "indent": _indent,
    "format": _format,
    "replace": _replace,
    "join": _join,
    "wordwrap": _wordwrap,
    "batch": _batch,
    "slice": _slice,
    "tojson": _tojson,
    "sum": _sum,
}


# --- the compiled code: loops and concatenations that count --------------------------------------


class _BoundedCode(CodeGenerator):
    """Jinja's code generator (Environment.code_generator_class) with three changes: every
    ``{% for %}`` iterates through ``environment.iterate``, which counts steps and checks the
    clock; ``~`` checks its result's length; output buffers are ``_Buffer``s."""

    def visit_For(self, node: nodes.For, frame: Frame) -> None:
        node.iter = nodes.Call(nodes.EnvironmentAttribute("iterate"), [node.iter], [], None, None)
        super().visit_For(node, frame)

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        self.write("environment.sized(")
        super().visit_Concat(node, frame)
        self.write(")")

    def buffer(self, frame: Frame) -> None:
        frame.buffer = self.temporary_identifier()
        self.writeline(f"{frame.buffer} = environment.output_buffer()")


class Sandbox(ImmutableSandboxedEnvironment):
    """Jinja2's immutable sandbox with every size, step and time bounded (see the module doc)."""

    intercepted_binops = frozenset({"*", "**", "%", "+"})
    code_generator_class = _BoundedCode
    concat = staticmethod(_bounded_join)
    MAX_ITEMS = MAX_LENGTH  # a repeated string or list
    MAX_BITS = MAX_BITS

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.filters.update(BOUNDED_FILTERS)
        self.globals["lipsum"] = _lipsum

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "*":
            _refuse_over(_repeated_length(left, right), "a repetition", self.MAX_ITEMS)
            _refuse_over(_product_bits(left, right), "a product's bit count", self.MAX_BITS)
        if operator == "**":
            _refuse_over(_power_bits(left, right), "a power's bit count", self.MAX_BITS)
        if operator == "%" and isinstance(left, str | bytes):
            _check_percent(left)
        result = super().call_binop(context, operator, left, right)
        return _sized(result) if operator == "+" else result

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        """Call from template code: one step of the budget."""
        _tick()
        return super().call(__context, __obj, *args, **kwargs)

    def iterate(self, iterable: Iterable[Any]) -> Iterator[Any]:
        """A ``{% for %}`` loop's items, one step each."""
        for item in iterable:
            _tick()
            yield item

    sized = staticmethod(_sized)
    output_buffer = staticmethod(_Buffer)

    def wrap_str_format(self, value: Any) -> Callable[..., Any] | None:
        """Size-checked str methods; str.format and format_map with their widths checked."""
        if bounded := _bounded_method(value):
            return bounded
        is_format = isinstance(value, types.MethodType | types.BuiltinMethodType) and value.__name__ in (
            "format",
            "format_map",
        )
        owner = getattr(value, "__self__", None)
        if not is_format or not isinstance(owner, str):
            return super().wrap_str_format(value)
        formatter = (
            _BoundedEscapeFormatter(self, escape=owner.escape)
            if isinstance(owner, Markup)
            else _BoundedFormatter(self)
        )

        def format_(*args: Any, **kwargs: Any) -> str:
            if value.__name__ == "format_map":
                if kwargs or len(args) != 1:
                    raise TypeError("format_map() takes exactly one argument")
                kwargs = args[0]  # two statements: mypy checked args[0] against the () beside it
                args = ()
            return type(owner)(formatter.vformat(owner, args, kwargs))

        return format_


def _repeated_length(left: Any, right: Any) -> int:
    """How long seq * n would be (0 unless one side is a sequence and the other an int)."""
    for seq, times in ((left, right), (right, left)):
        if isinstance(seq, str | bytes | list | tuple) and isinstance(times, int):
            return len(seq) * times
    return 0


def _product_bits(left: Any, right: Any) -> int:
    """About how many bits int * int would take (0 for anything else)."""
    if isinstance(left, int) and isinstance(right, int):
        return abs(left).bit_length() + abs(right).bit_length()
    return 0


def _power_bits(base: Any, exponent: Any) -> int:
    """About how many bits int ** int would take (0 for anything else)."""
    if isinstance(base, int) and isinstance(exponent, int) and exponent > 0:
        return abs(base).bit_length() * exponent if abs(base) > 1 else 0
    return 0
