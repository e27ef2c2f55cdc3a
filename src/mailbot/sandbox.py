"""Sandbox: the clerk's templates run in Jinja2's sandbox with a budget of time, text and numbers.

Jinja2's sandbox stops a template reaching into Python, not one that computes for ever:
`{{ 9**(9**9) }}` runs for minutes, `{{ 'x' * 10**10 }}` fills the memory, and nested loops
over a resident's subject never end. A clerk's template must not be able to stop
acknowledgements, so every step that can grow without limit is checked before it is
taken (an operator, a filter, a method of a string, a loop, a `~`), every result after,
and the whole render against a clock. A template that goes over is a `TemplateTooCostly`
problem like any other: the built-in wording goes out instead and the clerk is told.

Python cannot interrupt one long computation from inside, so the checks come first: a
number, text or list is never allowed to become large, rather than stopped once it is.
"""

from __future__ import annotations

import functools
import re
import string
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from jinja2 import nodes, pass_eval_context
from jinja2.nodes import EvalContext
from jinja2.runtime import markup_join, str_join
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.visitor import NodeTransformer


class TemplateTooCostly(Exception):
    """A template asked for more time, text or arithmetic than a letter can need."""

    filename: str | None = None  # set when the whole message, not one line, is to blame


@dataclass(frozen=True)
class Budget:
    """What one render may use. A council's letter is a few kilobytes made in a
    millisecond; these are hundreds of times that."""

    seconds: float = 1.0
    text: int = 200_000  # characters in any one piece of text, and in the whole output
    items: int = 100_000  # items in a list or a loop (Jinja's own range stops there too)
    bits: int = 4096  # the size of any whole number (2**4096 has 1,234 digits)


# Filters a letter may use. Those left out cannot make one better and can make it huge
# (`tojson(indent=…)`, `pprint`) or differ from one run to the next (`random`).
ALLOWED_FILTERS = frozenset(
    {
        "abs", "attr", "batch", "capitalize", "center", "count", "d", "default", "dictsort",
        "e", "escape", "filesizeformat", "first", "float", "forceescape", "format", "groupby",
        "indent", "int", "items", "join", "last", "length", "list", "lower", "map", "max",
        "min", "reject", "rejectattr", "replace", "reverse", "round", "safe", "select",
        "selectattr", "slice", "sort", "string", "striptags", "sum", "title", "trim",
        "truncate", "unique", "upper", "urlencode", "wordcount", "wordwrap",
    }
)  # fmt: skip

_deadline: ContextVar[float | None] = ContextVar("mailbot_template_deadline", default=None)
# A width or precision in a printf-style format ("%-20s", "%.2f").
_PRINTF_WIDTH = re.compile(r"%[#0\- +]*(\d*)(?:\.(\d*))?")


class BoundedSandbox(ImmutableSandboxedEnvironment):
    """Jinja2's sandbox (which also refuses changes to lists and dicts, so nothing can
    double in place), with every unbounded step checked against a `Budget`."""

    intercepted_binops = frozenset({"*", "**", "%", "+"})

    def __init__(self, budget: Budget | None = None, **options: Any) -> None:
        super().__init__(**options)
        self.budget = budget or Budget()
        self.globals.pop("lipsum", None)  # generates as much text as it is asked for
        self.filters = {
            name: self._guard_filter(name, f)
            for name, f in self.filters.items()
            if name in ALLOWED_FILTERS
        }
        self.filters[_LOOP] = self._loop
        self.globals[_CONCAT] = self._concat

    # -- rendering -------------------------------------------------------------------------

    @contextmanager
    def budgeted(self) -> Iterator[None]:
        """Start the clock for one render (nested renders keep the outer deadline)."""
        if _deadline.get() is not None:
            yield
            return
        token = _deadline.set(time.monotonic() + self.budget.seconds)
        try:
            yield
        finally:
            _deadline.reset(token)

    def render_template(self, name: str, context: dict[str, Any]) -> str:
        """Render a template within the budget, the output capped as it is written."""
        with self.budgeted():
            template = self.get_template(name)
            out: list[str] = []
            size = 0
            for chunk in template.generate(context):
                size += len(chunk)
                if size > self.budget.text:
                    problem = TemplateTooCostly(
                        f"the message would be longer than {self.budget.text:,} characters"
                    )
                    problem.filename = template.filename  # no one line is to blame
                    raise problem
                out.append(chunk)
            return "".join(out)

    def tick(self) -> None:
        deadline = _deadline.get()
        if deadline is not None and time.monotonic() > deadline:
            raise TemplateTooCostly(
                f"took longer than {self.budget.seconds:g} s to write (a loop without end?)"
            )

    # -- the sandbox's hooks -------------------------------------------------------------

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        self.tick()
        if operator == "*":
            self._check_repeat(left, right)
            self._check_repeat(right, left)
            if _whole(left) and _whole(right):
                self._check_bits(left.bit_length() + right.bit_length())
        elif operator == "**" and _whole(left) and _whole(right) and right > 0:
            self._check_bits(max(left.bit_length(), 1) * right)
        elif operator == "%" and isinstance(left, str):
            self._check_printf(left)
        elif operator == "+" and _sized(left) and _sized(right):
            self._check_size(len(left) + len(right), left)
        return self.check(super().call_binop(context, operator, left, right))

    def getattr(self, obj: Any, attribute: str) -> Any:
        self.tick()
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        self.tick()
        return super().getitem(obj, argument)

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        __self.tick()
        text = _string_method_self(__obj)
        if text is not None:
            __self._check_numbers(args, kwargs)
            __self._check_string_method(text, __obj, args, kwargs)
        return __self.check(super().call(__context, __obj, *args, **kwargs))

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        """The parsed template with its loops and `~` routed through the budget: neither
        passes through any other hook, so a loop with an empty body could run for ever."""
        return _Budgeted().visit(super()._parse(source, name, filename))

    # -- the checks ----------------------------------------------------------------------

    def check(self, value: Any) -> Any:
        """A result within the budget, passed through; else TemplateTooCostly."""
        if _whole(value):
            self._check_bits(value.bit_length())
        elif isinstance(value, str | list | tuple | set | frozenset | dict):
            self._check_size(len(value), value)
        return value

    def _check_size(self, size: int, like: Any) -> None:
        if isinstance(like, str) and size > self.budget.text:
            raise TemplateTooCostly(f"text longer than {self.budget.text:,} characters")
        if not isinstance(like, str) and size > self.budget.items:
            raise TemplateTooCostly(f"a list of more than {self.budget.items:,} items")

    def _check_bits(self, bits: int) -> None:
        if bits > self.budget.bits:
            raise TemplateTooCostly(
                f"a number too large for a letter (over {self.budget.bits} bits)"
            )

    def _check_repeat(self, sequence: Any, times: Any) -> None:
        if _sized(sequence) and _whole(times):
            self._check_size(len(sequence) * max(times, 0), sequence)

    def _check_numbers(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        """Widths, counts and sizes given to a filter or a string's method."""
        for value in (*args, *kwargs.values()):
            if _whole(value) and abs(value) > self.budget.text:
                raise TemplateTooCostly(f"the number {value} is too large here")

    def _check_printf(self, template: str) -> None:
        for width, precision in _PRINTF_WIDTH.findall(template[: self.budget.text]):
            for digits in (width, precision):
                if digits and int(digits[:12]) > self.budget.text:
                    raise TemplateTooCostly(f"a width of {digits} characters is too large")

    def _check_format(self, template: str) -> None:
        """str.format's widths ("{:>30}"); a nested "{:{}}" width is an argument."""
        try:
            fields = list(string.Formatter().parse(template))
        except ValueError:
            return  # format() itself will say what is wrong
        for _literal, _field, spec, _conversion in fields:
            for digits in re.findall(r"\d+", spec or ""):
                if int(digits[:12]) > self.budget.text:
                    raise TemplateTooCostly(f"a width of {digits} characters is too large")

    def _check_string_method(
        self, text: str, method: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> None:
        """The methods whose result can be far longer than the string and its arguments."""
        name = getattr(method, "__name__", "")
        if name in ("format", "format_map"):
            self._check_format(text)
        elif name == "join" and args:
            self._check_size(_joined_size(args[0], len(text), self.budget), text)
        elif name == "replace" and len(args) >= 2:
            self._check_size(_replaced_size(text, args[0], args[1]), text)
        elif name == "expandtabs":
            tabsize = args[0] if args else kwargs.get("tabsize", 8)
            if _whole(tabsize):
                self._check_size(len(text) + text.count("\t") * tabsize, text)
        elif name in ("translate", "maketrans"):
            raise TemplateTooCostly(f"str.{name} is not available in a letter")

    def _guard_filter(self, name: str, f: Callable[..., Any]) -> Callable[..., Any]:
        """A filter that checks its arguments (and the size of what it would make) first,
        and its result after."""
        estimate = _FILTER_SIZES.get(name)

        @functools.wraps(f)  # keeps Jinja's pass_context/pass_environment mark
        def guarded(*args: Any, **kwargs: Any) -> Any:
            self.tick()
            self._check_numbers(args, kwargs)
            value = _filter_value(f, args)
            if name == "format" and isinstance(value, str):
                self._check_printf(value)
            if estimate is not None and isinstance(value, str | list | tuple):
                self._check_size(estimate(self.budget, value, *_filter_args(f, args), **kwargs), "")
            return self.check(f(*args, **kwargs))

        return guarded

    def _loop(self, iterable: Any) -> Iterator[Any]:
        """What a `{% for %}` walks: the clock read every 100 items, at most `items`."""
        for count, item in enumerate(iterable):
            if count % 100 == 0:
                self.tick()
            if count >= self.budget.items:
                raise TemplateTooCostly(f"a loop of more than {self.budget.items:,} turns")
            yield item

    @pass_eval_context
    def _concat(self, eval_ctx: EvalContext, *parts: Any) -> str:
        """`a ~ b`, as Jinja writes it, once the parts are known to fit."""
        texts = [p if isinstance(p, str) else str(p) for p in parts]
        self._check_size(sum(map(len, texts)), "")
        join = markup_join if eval_ctx.autoescape else str_join
        return join(parts)


_LOOP, _CONCAT = "mailbot_loop", "mailbot_concat"


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _sized(value: Any) -> bool:
    return isinstance(value, str | list | tuple)


def _string_method_self(obj: Any) -> str | None:
    """The string whose method `obj` is (format() comes wrapped by the sandbox)."""
    inner = getattr(obj, "__wrapped__", obj)
    owner = getattr(inner, "__self__", None)
    return owner if isinstance(owner, str) else None


def _joined_size(items: Any, separator: int, budget: Budget) -> int:
    if not isinstance(items, list | tuple | str):
        return 0  # a generator: its items are checked as they come, by the result
    if len(items) > budget.items:
        return budget.text + 1
    return sum(len(x) if isinstance(x, str) else 20 for x in items) + separator * len(items)


def _replaced_size(text: str, old: Any, new: Any) -> int:
    if not (isinstance(old, str) and isinstance(new, str)):
        return len(text)
    count = len(text) + 1 if old == "" else text.count(old)
    return len(text) + count * max(0, len(new) - len(old))


def _filter_value(f: Callable[..., Any], args: tuple[Any, ...]) -> Any:
    """The value a filter is applied to (after the context or environment, if it takes one)."""
    rest = _filter_args(f, args, with_value=True)
    return rest[0] if rest else None


def _filter_args(f: Callable[..., Any], args: tuple[Any, ...], with_value: bool = False) -> Any:
    skip = 1 if getattr(f, "jinja_pass_arg", None) is not None else 0
    return args[skip:] if with_value else args[skip + 1 :]


def _size_join(budget: Budget, value: Any, d: Any = "", *_: Any, **kw: Any) -> int:
    return _joined_size(value, len(str(kw.get("d", d))), budget)


def _size_replace(
    budget: Budget, value: Any, old: Any = "", new: Any = "", *_: Any, **__: Any
) -> int:
    return _replaced_size(value, old, new) if isinstance(value, str) else 0


def _size_indent(budget: Budget, value: Any, width: Any = 4, *_: Any, **kw: Any) -> int:
    width = kw.get("width", width)
    step = len(width) if isinstance(width, str) else width if _whole(width) else 0
    return len(value) + (value.count("\n") + 1) * step


def _size_wordwrap(budget: Budget, value: Any, width: Any = 79, *args: Any, **kw: Any) -> int:
    width = kw.get("width", width)
    wrap = kw.get("wrapstring", args[1] if len(args) > 1 else "\n")
    lines = len(value) // max(width if _whole(width) else 79, 1) + 1
    return len(value) + lines * len(str(wrap or "\n"))


# Filters whose result can be far larger than what they are given: its size, worked out
# before they run.
_FILTER_SIZES: dict[str, Callable[..., int]] = {
    "join": _size_join,
    "replace": _size_replace,
    "indent": _size_indent,
    "wordwrap": _size_wordwrap,
}


class _Budgeted(NodeTransformer):
    """Routes each `{% for %}`'s sequence through the loop filter and each `~` through
    the concatenation global."""

    def visit_For(self, node: nodes.For) -> nodes.Node:
        node = self.generic_visit(node)
        node.iter = nodes.Filter(node.iter, _LOOP, [], [], None, None, lineno=node.lineno)
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        node = self.generic_visit(node)
        name = nodes.Name(_CONCAT, "load", lineno=node.lineno)
        return nodes.Call(name, node.nodes, [], None, None, lineno=node.lineno)
