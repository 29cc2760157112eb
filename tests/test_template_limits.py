"""Templates admins edit cannot take a worker's or the web process's memory or time (issue 15, item 3).

Each bomb below built a string of hundreds of millions of characters, or ran for hours, in Jinja2's
own sandbox; syndicator/sandbox.py refuses it before it is built, with a message saying which limit.
"""

from __future__ import annotations

import re
import time
from types import SimpleNamespace

import pytest

from syndicator.errors import PermanentError
from syndicator.formatting import render_message

BOMBS = {
    # The four of the issue.
    "center filter": ('{{ "x"|center(300000000) }}', "a centred width of 300,000,000"),
    "percent width": ('{{ "%0300000000d" % 1 }}', "a % format width of 300,000,000"),
    "str.format width": ('{{ "{:>300000000}".format("x") }}', "a format width of 300,000,000"),
    "indent filter": ("{{ title|indent(300000000) }}", "an indented text of 300,000,"),
    # Their relatives.
    "format filter": ('{{ "%0300000000d"|format(1) }}', "a % format width of 300,000,000"),
    "percent star width": ('{{ "%*d" % (300000000, 1) }}', "a * width or precision"),
    "precision": ('{{ "{:.300000000f}".format(1.5) }}', "a format width of 300,000,000"),
    "nested format width": ('{{ "{:>{w}}".format("x", w=300000000) }}', "a format width of 300,000,000"),
    "format_map": ('{{ "{x:>300000000}".format_map({"x": 1}) }}', "a format width of 300,000,000"),
    "ljust": ("{{ title.ljust(300000000) }}", "the result of .ljust() of 300,000,000"),
    "rjust": ("{{ title.rjust(300000000) }}", "the result of .rjust() of 300,000,000"),
    "zfill": ('{{ "1".zfill(300000000) }}', "the result of .zfill() of 300,000,000"),
    "str.center": ('{{ "x".center(300000000) }}', "the result of .center() of 300,000,000"),
    "expandtabs": ('{{ ("\t" * 1000).expandtabs(300000) }}', "the result of .expandtabs()"),
    "replace": ('{{ ("x" * 100000)|replace("x", "y" * 1000) }}', "a replaced text of 100,000,000"),
    "str.join": ('{{ "".join(["x" * 1000000] * 1000) }}', "the result of .join() of 1,000,000,000"),
    "join filter": ('{{ (["x" * 1000000] * 1000)|join }}', "a joined text of 1,000,000,000"),
    "to_bytes": ('{{ (1).to_bytes(300000000, "big") }}', "a byte string of 300,000,000"),
    "repeat": ("{{ title * 10**10 }}", "a repetition of"),
    # Loops and blocks that grow what they hold or what they output.
    "loop doubling with ~": (
        '{% set ns = namespace(s="x") %}{% for i in range(100) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}',
        "a value of 1,048,576",
    ),
    "loop appending with +": (
        '{% set ns = namespace(s="") %}{% for i in range(10000) %}'
        '{% set ns.s = ns.s + "x" * 1000 %}{% endfor %}',
        "a value of 1,001,000",
    ),
    "loop growing a list": (
        "{% set ns = namespace(l=[]) %}{% for i in range(100) %}"
        "{% set ns.l = ns.l + ns.l + [i] %}{% endfor %}",
        "a value of 1,048,574",
    ),
    "list.append": ("{% set l = [] %}{% for i in range(10) %}{{ l.append(l) }}{% endfor %}", "unsafe"),
    "output flood": (
        '{% for i in range(100000) %}{{ "x"|center(100000) }}{% endfor %}',
        "output passed 24,000,000",
    ),
    "macro buffer": (
        '{% macro m() %}{% for i in range(100000) %}{{ "x" * 100000 }}{% endfor %}{% endmacro %}'
        "{% set y = m() %}",
        "a block's output of 24,",
    ),
    "nested loops": (
        "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
        "more than 1,000,000 loop iterations",
    ),
    "recursive macro": (
        "{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(40) }}",
        "took longer than 2 s",  # 2**40 calls: each call is slow enough that the clock stops it first
    ),
}


def post() -> SimpleNamespace:
    values = {"title": "Rivers rise", "url": "https://news.example/1", "summary": "", "content": ""}
    return SimpleNamespace(
        **{**values, "author": "", "categories": [], "language": "en", "image_url": "", "published_at": None}
    )


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("source", "says"), BOMBS.values(), ids=BOMBS.keys())
def test_a_template_asking_for_too_much_fails_at_once_with_the_limit_it_passed(
    source: str, says: str, settings
) -> None:
    settings.SYNDICATOR_TEMPLATE_TIMEOUT = 2
    started = time.monotonic()

    with pytest.raises(PermanentError) as raised:
        render_message(post(), "telegram", template_overrides={"telegram.html.j2": source})

    assert "telegram.html.j2 (this target's override)" in str(raised.value)
    assert says in str(raised.value), str(raised.value)
    assert time.monotonic() - started < 10  # without the limits: minutes, or all the memory


@pytest.mark.timeout(60)
def test_a_slow_template_is_stopped_at_the_time_limit(settings) -> None:
    settings.SYNDICATOR_TEMPLATE_TIMEOUT = 0.3
    # ~1 ms a step and far below the step limit: only the clock stops it.
    source = '{% for i in range(100000) %}{{ ("x" * 300000).upper()|length }}{% endfor %}'
    started = time.monotonic()

    with pytest.raises(PermanentError, match=re.escape("took longer than 0.3 s")):
        render_message(post(), "facebook", template_overrides={"facebook.txt.j2": source})

    assert time.monotonic() - started < 5


def test_a_message_has_one_deadline_for_all_its_renderings(settings) -> None:
    # Fitting a long text renders the template many times (formatting._fit); together they are
    # bounded, not each one.
    settings.SYNDICATOR_TEMPLATE_TIMEOUT = 0.5
    # ~0.1 s a rendering, below the limit alone; fitting the title takes a dozen renderings.
    source = '{% for i in range(600) %}{% set n = ("x" * 300000).upper() %}{% endfor %}{{ title }} {{ link }}'
    long_title = " ".join(["word"] * 2000)

    with pytest.raises(PermanentError, match=re.escape("took longer than 0.5 s")):
        render_message(
            SimpleNamespace(**{**vars(post()), "title": long_title}),
            "twitter",
            template_overrides={"twitter.txt.j2": source},
        )


def test_ordinary_widths_paddings_and_loops_still_work() -> None:
    source = (
        '{{ "%-6s|%5.1f|%03d" % ("ab", 2.25, 7) }} {{ "{:>6}|{:^7}".format("r", "c") }} '
        '{{ "x"|center(5) }}|{{ "a\nb"|indent(2) }} {{ ["a", "b"]|join(", ") }} '
        '{{ "a-b"|replace("-", "+") }} '
        '{{ "7".zfill(3) }} {% set ns = namespace(s="") %}{% for tag in ["x", "y"] %}'
        "{% set ns.s = ns.s ~ tag %}"
        "{% endfor %}{{ ns.s }} {{ [1, 2, 3]|sum }} {{ [1, 2, 3]|batch(2)|list|length }} {{ title }}"
    )

    message = render_message(post(), "facebook", template_overrides={"facebook.txt.j2": source})

    assert message.text == "ab    |  2.2|007      r|   c      x  |a\n  b a, b a+b 007 xy 6 2 Rivers rise"
