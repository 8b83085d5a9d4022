"""A Jinja sandbox with resource bounds: a hostile chat_template costs one rejected record.

Jinja's ImmutableSandboxedEnvironment (what transformers uses) stops attribute tricks, not resource
use: nested `range` loops run for hours, `'A' * 4000000000` allocates 4 GB, `{% include %}` raises
TypeError. Rendering one conversation here is bounded by:

- output: the rendered text holds at most `max_output` characters, and the characters a template
  produces in all (each `{{ }}`, each piece of literal text, every string built by an operator, a
  method or a filter, even if thrown away) by a budget of 4 * max_output; the big allocations
  (`str * n`, `ljust(n)`, `replace`, `join`, `indent`, `%`/format widths) are checked before
  they are made;
- loops: at most `max_iterations` loop iterations in all (also recursive `loop(...)` calls);
- numbers: no integer of more than 64 kbit from `*` or `**`;
- time: `max_seconds` of wall-clock time (SIGALRM, main thread only), the backstop for anything
  the counters do not see.

The counted bounds are deterministic, so the same record is rejected on every run and machine.
Over a bound, rendering stops with `TemplateLimitExceeded` (a jinja2.TemplateError).
"""

from __future__ import annotations

import contextlib
import functools
import math
import re
import signal
import string
import threading
from dataclasses import dataclass
from typing import Any, Iterable, Iterator

import jinja2
from jinja2 import nodes
from jinja2.runtime import LoopContext
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError
from jinja2.utils import _PassArg, pass_context
from jinja2.visitor import NodeTransformer

MAX_INT_BITS = 1 << 16
ITER_FILTER, CONCAT_FILTER = "_bounded_iter", "_bounded_concat"


@dataclass(frozen=True)
class TemplateLimits:
    max_output: int = (16 << 20) + (1 << 20)  # characters of rendered text
    max_iterations: int = 100_000
    max_seconds: float = 10.0

    @classmethod
    def for_record_bytes(cls, max_record_bytes: int) -> "TemplateLimits":
        """Room for the largest record plus 1 MiB of template text."""
        return cls(max_output=max_record_bytes + (1 << 20))

    @property
    def budget(self) -> int:
        return 4 * self.max_output


class TemplateLimitExceeded(SecurityError):
    """Rendering one record went over a TemplateLimits bound."""


class _Meter:
    __slots__ = ("limits", "produced", "iterations")

    def __init__(self, limits: TemplateLimits):
        self.limits, self.produced, self.iterations = limits, 0, 0

    def charge(self, n: int) -> None:
        self.produced += n
        if self.produced > self.limits.budget:
            raise TemplateLimitExceeded(f"the template produced more than {self.limits.budget} characters "
                                        "for one record")

    def size(self, n: int, what: str) -> None:
        if n > self.limits.max_output:
            raise TemplateLimitExceeded(f"{what} would be {n} long, over the limit of {self.limits.max_output}")

    def tick(self) -> None:
        self.iterations += 1
        if self.iterations > self.limits.max_iterations:
            raise TemplateLimitExceeded(f"the template ran more than {self.limits.max_iterations} loop "
                                        "iterations for one record")

    def result(self, value: Any) -> Any:
        if isinstance(value, str):
            self.size(len(value), "a string")
            self.charge(len(value))
        elif isinstance(value, (list, tuple, dict)):
            self.size(len(value), "a list")
        return value

    def numbers(self, values: Iterable[Any], what: str) -> None:
        """Integer arguments are widths and counts: none may exceed the output bound."""
        for v in values:
            if isinstance(v, int) and not isinstance(v, bool) and abs(v) > self.limits.max_output:
                raise TemplateLimitExceeded(f"{what} got {v}, over the limit of {self.limits.max_output}")


def _is_seq(x: Any) -> bool:
    return isinstance(x, (str, list, tuple))


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


_PRINTF = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?")
_SPEC_NUMBER = re.compile(r"\d+")


def _check_printf(meter: _Meter, fmt: str, args: Any) -> None:
    """`fmt % args`: literal widths and precisions, and `*` ones taken from args, are bounded."""
    star = False
    for m in _PRINTF.finditer(fmt):
        for g in m.groups():
            if g == "*":
                star = True
            elif g:
                meter.numbers([int(g)], "a %-format width")
    if star:
        meter.numbers(args if isinstance(args, tuple) else (args,), "a %-format * width")


def _check_format_spec(meter: _Meter, fmt: str) -> None:
    """str.format: literal widths in the format string are bounded (arguments are checked as calls)."""
    try:
        fields = list(string.Formatter().parse(fmt))
    except ValueError:
        return  # str.format will raise the same error
    for _, _, spec, _ in fields:
        if spec:
            meter.numbers(map(int, _SPEC_NUMBER.findall(spec)), "a format width")


def _check_str_method(meter: _Meter, s: str, name: str, args: tuple) -> tuple:
    """Pre-checks for the str methods whose output can dwarf their inputs; returns the args to use."""
    if name == "replace" and len(args) >= 2 and isinstance(args[0], str) and isinstance(args[1], str):
        count = args[2] if len(args) > 2 and _is_int(args[2]) and args[2] >= 0 else None
        hits = len(s) + 1 if not args[0] else s.count(args[0])
        hits = hits if count is None else min(hits, count)
        meter.size(len(s) + hits * max(0, len(args[1]) - len(args[0])), "str.replace's result")
    elif name == "join" and args:
        items = list(args[0])
        meter.size(sum(len(x) for x in items if isinstance(x, str)) + len(s) * max(0, len(items) - 1),
                   "str.join's result")
        args = (items,) + args[1:]
    elif name == "expandtabs":
        size = args[0] if args and _is_int(args[0]) else 8
        meter.size(len(s) + s.count("\t") * max(0, size), "str.expandtabs's result")
    elif name in ("format", "format_map"):
        _check_format_spec(meter, s)
    return args


def _metered_iter(meter: _Meter, iterable: Any) -> Iterator[Any]:
    for item in iterable:
        meter.tick()
        yield item


class BoundedSandbox(ImmutableSandboxedEnvironment):
    """ImmutableSandboxedEnvironment whose every render runs under `bounded(limits)`."""

    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def __init__(self, *args, **kwargs):
        super().__init__(*args, finalize=_finalize, loader=_NoIncludes(), **kwargs)
        self.meter = _Meter(TemplateLimits())
        self.filters[ITER_FILTER] = _iter_filter
        self.filters[CONCAT_FILTER] = _concat_filter

    @contextlib.contextmanager
    def bounded(self, limits: TemplateLimits) -> Iterator[_Meter]:
        """Fresh counters for one render, and the wall-clock alarm when this is the main thread."""
        self.meter = meter = _Meter(limits)
        with _alarm(limits.max_seconds):
            yield meter

    def compile_bounded(self, source: str) -> jinja2.Template:
        """Compile `source` with loops and `~` routed through the counters and literal text counted."""
        for name, fn in list(self.filters.items()):
            if name not in (ITER_FILTER, CONCAT_FILTER) and not getattr(fn, "_bounded", False):
                self.filters[name] = _guard_filter(self, name, fn)
        tree = _Instrument().visit(self.parse(source))
        tree.set_environment(self)
        return self.from_string(tree)

    def call_binop(self, context, operator: str, left: Any, right: Any) -> Any:
        m = self.meter
        if operator == "*":
            if _is_seq(left) and _is_int(right) or _is_int(left) and _is_seq(right):
                seq, n = (left, right) if _is_int(right) else (right, left)
                m.size(len(seq) * max(n, 0), "a repeated string or list")
            elif _is_int(left) and _is_int(right) and left.bit_length() + right.bit_length() > MAX_INT_BITS:
                raise TemplateLimitExceeded(f"an integer product over {MAX_INT_BITS} bits")
        elif operator == "**":
            if _is_int(left) and _is_int(right) and abs(left) > 1 and right * left.bit_length() > MAX_INT_BITS:
                raise TemplateLimitExceeded(f"an integer power over {MAX_INT_BITS} bits")
        elif operator == "+":
            if isinstance(left, str) and isinstance(right, str) or \
                    isinstance(left, (list, tuple)) and isinstance(right, (list, tuple)):
                m.size(len(left) + len(right), "a concatenation")
        elif operator == "%" and isinstance(left, str):
            _check_printf(m, left, right)
        return m.result(super().call_binop(context, operator, left, right))

    def call(__self, __context, __obj, *args, **kwargs):  # noqa: N805 (jinja's calling convention)
        m = __self.meter
        if isinstance(__obj, LoopContext):  # `loop(children)` in a recursive for loop
            if args:
                args = (_metered_iter(m, args[0]),) + args[1:]
        else:
            target = getattr(__obj, "__wrapped__", __obj)  # the sandbox wraps str.format
            owner = getattr(target, "__self__", None)
            if isinstance(owner, str):  # ljust(n), center(n), zfill(n), replace, join, ...
                m.numbers(args, "a string method")
                m.numbers(kwargs.values(), "a string method")
                args = _check_str_method(m, owner, getattr(target, "__name__", ""), args)
        return m.result(super().call(__context, __obj, *args, **kwargs))


class _NoIncludes(jinja2.BaseLoader):
    """`{% include %}`, `{% import %}` and `{% extends %}` name no file a chat template may read."""

    def get_source(self, environment, template):
        raise jinja2.TemplateNotFound(f"{template} (a chat template cannot include, import or extend other "
                                      "templates)")


@pass_context
def _finalize(context, value: Any) -> Any:
    """Every `{{ }}` and piece of literal text on its way out: counted."""
    text = value if isinstance(value, str) else str(value)
    context.environment.meter.charge(len(text))
    return text


@pass_context
def _iter_filter(context, iterable: Any) -> Iterator[Any]:
    return _metered_iter(context.environment.meter, iterable)


@pass_context
def _concat_filter(context, parts: list) -> str:
    texts = [p if isinstance(p, str) else str(p) for p in parts]
    m = context.environment.meter
    m.size(sum(map(len, texts)), "a ~ concatenation")
    return m.result("".join(texts))


_SIZE_FILTERS = {"center", "indent", "truncate", "wordwrap", "batch", "slice", "urlize"}  # numbers are sizes


def _guard_filter(env: BoundedSandbox, name: str, fn):
    """A filter whose size arguments are bounded before it runs and whose result is counted."""
    skip = 2 if _PassArg.from_obj(fn) is not None else 1  # (context,) value: not sizes

    sizes = name in _SIZE_FILTERS

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        m = env.meter
        if sizes:
            m.numbers(args[skip:], f"filter {name}")
            m.numbers(kwargs.values(), f"filter {name}")
        value = args[skip - 1] if len(args) >= skip else None
        if name == "join" and value is not None and not isinstance(value, jinja2.Undefined):
            items = list(value)
            sep = args[skip] if len(args) > skip else kwargs.get("d", "")
            m.size(sum(len(x) for x in items if isinstance(x, str)) + len(str(sep)) * max(0, len(items) - 1),
                   "filter join's result")
            args = args[:skip - 1] + (items,) + args[skip:]
        elif name == "replace" and isinstance(value, str):
            _check_str_method(m, value, "replace", tuple(args[skip:]))
        elif name == "indent" and isinstance(value, str):
            width = args[skip] if len(args) > skip else kwargs.get("width", 4)
            pad = len(width) if isinstance(width, str) else width if _is_int(width) else 4
            m.size(len(value) + (value.count("\n") + 1) * max(0, pad), "filter indent's result")
        elif name == "format" and isinstance(value, str):
            _check_printf(m, value, tuple(args[skip:]))
        return m.result(fn(*args, **kwargs))

    wrapper._bounded = True
    return wrapper


class _Instrument(NodeTransformer):
    """Route every loop through the iteration counter and every `~` through the size check, and
    send literal text through `finalize` (as constants) so that it is counted too."""

    def visit_For(self, node: nodes.For) -> nodes.For:
        node = self.generic_visit(node)
        node.iter = nodes.Filter(node.iter, ITER_FILTER, [], [], None, None, lineno=node.lineno)
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Filter:
        node = self.generic_visit(node)
        return nodes.Filter(nodes.List(node.nodes, lineno=node.lineno), CONCAT_FILTER, [], [], None, None,
                            lineno=node.lineno)

    def visit_TemplateData(self, node: nodes.TemplateData) -> nodes.Const:
        return nodes.Const(node.data, lineno=node.lineno)


class _Timeout(BaseException):
    """Raised by SIGALRM inside the template; a BaseException so template code cannot swallow it."""


@contextlib.contextmanager
def _alarm(seconds: float) -> Iterator[None]:
    usable = (hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()
              and math.isfinite(seconds) and seconds > 0)
    if not usable:
        yield
        return

    def on_alarm(signum, frame):
        raise _Timeout()

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    except _Timeout:
        raise TemplateLimitExceeded(f"rendering one record took more than {seconds:g} s") from None
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
