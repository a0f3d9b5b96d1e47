"""The tiny, safe expression language of SNMP profiles.

Profiles are data written by other people, so an expression is parsed with :mod:`ast` and every
node is checked against a whitelist when the profile is loaded: arithmetic, comparisons, ``and`` /
``or`` / ``not``, ``x if cond else y``, literals, tuples/lists (for ``in``), names of the row's
columns and fields, and calls of a fixed set of functions. No attribute access, subscripts,
lambdas, comprehensions or ``**``; nothing reaches Python builtins.

Unknown stays unknown: arithmetic or ordering with ``None`` gives ``None`` (not a TypeError, never
0), and division by zero gives ``None``.

Arithmetic is on numbers only. Values come from devices, and Python's operators do more than
arithmetic on other types: ``text * 1000000`` repeats the text a million times (an ifHighSpeed
sent as OCTET STRING made megabytes per port), ``text % args`` formats. So ``- * / // %`` and
unary ``-``/``+`` take ``int``/``float`` operands and give ``None`` for anything else: text (even
"1000": a number sent as text is read with ``number(x)``, explicitly, unlike LibreNMS whose PHP
casts numeric strings; implicit casting would make ``"1" + "2"`` ambiguous), ``True``/``False``
(a truth value is not a quantity) and tuples. ``+`` also joins two texts, for names
(``'fan ' + index``), up to :data:`MAX_TEXT` characters.
"""

from __future__ import annotations

import ast
import ipaddress
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from agent.api.safe_ast import BINARY_OPS, COMPARE_OPS, check_operators, parse


class ExprError(ValueError):
    """An expression that is not in the language (raised at profile load)."""


_BINARY = BINARY_OPS
_COMPARE = COMPARE_OPS
# The longest text an expression builds (by joining texts or with str()); longer is unknown. Four
# times the longest OCTET STRING the SNMP client accepts, so names built from device values fit.
MAX_TEXT = 64 * 1024
# The most digits number() reads: more than any SNMP number has (Counter64: 20), fewer than the
# 4,300 past which Python refuses to convert a text to int.
_MAX_NUMBER_DIGITS = 40
# round()'s digits, bounded like exp10(): round(x, -10**9) would compute 10**(10**9).
_MAX_ROUND_DIGITS = 30
# Ordering and arithmetic need both sides known; equality and membership work on None too.
_NONE_SAFE = (ast.Eq, ast.NotEq, ast.Is, ast.IsNot, ast.In, ast.NotIn)


def _none_guard(fn: Callable[..., Any]) -> Callable[..., Any]:
    def guarded(*args: Any) -> Any:
        if any(arg is None for arg in args):
            return None
        try:
            return fn(*args)
        except (TypeError, ValueError, ArithmeticError):
            return None

    return guarded


def _coalesce(*args: Any) -> Any:
    return next((arg for arg in args if arg is not None), None)


def _part(index: Any, position: int) -> str | None:
    """Component ``position`` of a dotted index ("28.0", 0) -> "28"; negative counts from the end."""
    parts = str(index).split(".")
    try:
        return parts[position]
    except IndexError:
        return None


def _match(pattern: str, text: Any) -> bool | None:
    return None if text is None else re.search(pattern, str(text)) is not None


def _sub(pattern: str, replacement: str, text: Any) -> str | None:
    """``text`` with every match of ``pattern`` replaced (a name without the state an agent
    appends to it); None when the result would outgrow MAX_TEXT."""
    if text is None:
        return None
    found = re.sub(pattern, replacement, str(text))
    return found if len(found) <= MAX_TEXT else None


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _number(value: Any) -> float | int | None:
    """A number from an integer, or from a string such as "42.5 C" agents sometimes send."""
    if value is None or _is_number(value):
        return value
    if isinstance(value, bool):
        return None
    found = re.search(r"-?\d+(?:\.\d+)?", str(value))
    if not found:
        return None
    text = found.group(0)
    if len(text.lstrip("-").replace(".", "")) > _MAX_NUMBER_DIGITS:
        return None
    return float(text) if "." in text else int(text)


def _round(value: Any, digits: Any = None) -> float | int | None:
    if not _is_number(value) or not (digits is None or (_is_number(digits) and abs(digits) <= _MAX_ROUND_DIGITS)):
        return None
    return round(value, digits)


def _str(value: Any) -> str | None:
    text = str(value)
    return text if len(text) <= MAX_TEXT else None


def _exp10(exponent: Any) -> float | None:
    # Bounded so a hostile profile cannot build huge numbers.
    return 10.0 ** exponent if -30 <= exponent <= 30 else None


# Month-name date forms agents print (SFOS licence expiry "Dec 31 2999"); ISO 8601 is tried first.
_DATE_FORMATS = ("%b %d %Y", "%b %d, %Y", "%d %b %Y", "%a %b %d %Y", "%a %b %d %H:%M:%S %Y")


def _epoch(value: Any) -> int | None:
    """Epoch seconds of a date / date-time text, UTC unless it says otherwise; anything that is
    not a date ("fail", "N/A", "") is None."""
    if value is None:
        return None
    text = " ".join(str(value).split())
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        for fmt in _DATE_FORMATS:
            try:
                parsed = datetime.strptime(text, fmt)
                break
            except ValueError:
                continue
        else:
            return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp())


def _inet_index(index: Any, position: Any) -> str | None:
    """An address written in an OID index from component ``position`` on, as INDEX clauses write
    an address family and a variable-length OCTET STRING (lldpRemManAddrTable): family (1 IPv4,
    2 IPv6), octet count, octets. The address as text, ``None`` when it is not that."""
    try:
        parts = [int(part) for part in str(index).split(".")[int(position):]]
    except ValueError:
        return None
    if len(parts) < 2 or parts[1] != len(parts) - 2 or any(not 0 <= octet <= 255 for octet in parts[2:]):
        return None
    return inet_text(parts[0], bytes(parts[2:]))


def inet_text(family: int, octets: bytes) -> str | None:
    """IPv4 (family 1, 4 octets) or IPv6 (family 2, 16 octets) address text, else ``None``."""
    if (family, len(octets)) == (1, 4):
        return str(ipaddress.IPv4Address(octets))
    if (family, len(octets)) == (2, 16):
        return str(ipaddress.IPv6Address(octets))
    return None


# Pure functions every expression may call.
PURE_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "coalesce": _coalesce,
    "min": _none_guard(min),
    "max": _none_guard(max),
    "abs": _none_guard(abs),
    "round": _none_guard(_round),
    "int": _none_guard(int),
    "float": _none_guard(float),
    "str": _none_guard(_str),
    "number": _number,
    "exp10": _none_guard(_exp10),
    "part": _none_guard(_part),
    "match": _match,
    "sub": _none_guard(_sub),
    "startswith": _none_guard(lambda text, prefix: str(text).startswith(prefix)),
    "lower": _none_guard(lambda text: str(text).lower()),
    "strip": _none_guard(lambda text: str(text).strip()),
    "epoch": _epoch,
    "inet_index": _inet_index,
}

# Functions whose positional arguments are column *names* (they read engine-owned state for that
# column, e.g. the previous counter value, or its raw encoding, e.g. the octets of a bitmask);
# the engine provides their implementation per row.
STATEFUL_FUNCTIONS = frozenset({"rate", "went_backwards", "bits", "inet", "mac"})
# Stateful functions whose argument is an *expression* of the row (evaluated first): the engine
# receives the argument's text (the key of its state for this row) and its value.
CONDITION_FUNCTIONS = frozenset({"seen_before"})


_NO_STATE: Mapping[str, Callable[..., Any]] = {}


@dataclass(frozen=True)
class Expression:
    source: str
    tree: ast.Expression = field(repr=False, compare=False)
    names: frozenset[str] = field(compare=False)
    run: Run = field(repr=False, compare=False)

    def evaluate(self, env: Mapping[str, Any], stateful: Mapping[str, Callable[..., Any]] | None = None) -> Any:
        return self.run(env, stateful or _NO_STATE)


@lru_cache(maxsize=4096)
def compile_expression(source: str) -> Expression:
    """Parse and whitelist-check ``source``; raise :class:`ExprError` saying what is not allowed."""
    tree = parse(source, ExprError)
    names: set[str] = set()
    _check(tree.body, names, source)
    return Expression(str(source), tree, frozenset(names), _compiled(tree.body))


def _check(node: ast.AST, names: set[str], source: str) -> None:
    if isinstance(node, ast.Constant):
        if not isinstance(node.value, (int, float, str, bool, type(None))):
            raise ExprError(f"{source!r}: constant {node.value!r} not allowed")
        return
    if isinstance(node, ast.Name):
        if node.id.startswith("_"):
            raise ExprError(f"{source!r}: name {node.id!r} not allowed")
        if node.id not in ("True", "False", "None"):
            names.add(node.id)
        return
    if isinstance(node, ast.Call):
        if not isinstance(node.func, ast.Name):
            raise ExprError(f"{source!r}: only plain function calls are allowed")
        func = node.func.id
        if func in STATEFUL_FUNCTIONS:
            for arg in node.args:
                if not isinstance(arg, ast.Name):
                    raise ExprError(f"{source!r}: {func}() takes column names")
                names.add(arg.id)
        elif func in CONDITION_FUNCTIONS:
            if len(node.args) != 1 or node.keywords:
                raise ExprError(f"{source!r}: {func}() takes one condition")
            _check(node.args[0], names, source)
        elif func in PURE_FUNCTIONS:
            for arg in node.args:
                _check(arg, names, source)
        else:
            allowed = sorted(PURE_FUNCTIONS) + sorted(STATEFUL_FUNCTIONS | CONDITION_FUNCTIONS)
            raise ExprError(f"{source!r}: function {func!r} not allowed (allowed: {', '.join(allowed)})")
        for keyword in node.keywords:
            if keyword.arg is None:
                raise ExprError(f"{source!r}: **kwargs not allowed")
            _check(keyword.value, names, source)
        return
    check_operators(node, source, ExprError)
    if isinstance(node, ast.BinOp):
        _check(node.left, names, source)
        _check(node.right, names, source)
        return
    if isinstance(node, ast.UnaryOp):
        _check(node.operand, names, source)
        return
    if isinstance(node, ast.BoolOp):
        for value in node.values:
            _check(value, names, source)
        return
    if isinstance(node, ast.Compare):
        for operand in [node.left, *node.comparators]:
            _check(operand, names, source)
        return
    if isinstance(node, ast.IfExp):
        for part in (node.test, node.body, node.orelse):
            _check(part, names, source)
        return
    if isinstance(node, (ast.Tuple, ast.List)):
        for element in node.elts:
            _check(element, names, source)
        return
    raise ExprError(f"{source!r}: {type(node).__name__} not allowed")


def _arithmetic(op: ast.operator, left: Any, right: Any) -> Any:
    """``left op right`` on numbers, or two texts joined by ``+``; anything else is unknown."""
    if isinstance(op, ast.Add) and isinstance(left, str) and isinstance(right, str):
        return left + right if len(left) + len(right) <= MAX_TEXT else None
    if not (_is_number(left) and _is_number(right)):
        return None
    try:
        result = _BINARY[type(op)](left, right)
    except (ZeroDivisionError, OverflowError):
        return None
    return None if isinstance(result, float) and not math.isfinite(result) else result


Run = Callable[[Mapping[str, Any], Mapping[str, Callable[..., Any]]], Any]
_NAMED_CONSTANTS = {"True": True, "False": False, "None": None}


def _compiled(node: ast.AST) -> Run:
    """``node`` (already whitelist-checked by :func:`_check`) as a closure of (env, stateful): the
    tree is walked once per expression, at load, not once per row."""
    if isinstance(node, ast.Constant):
        constant = node.value
        return lambda env, stateful: constant
    if isinstance(node, ast.Name):
        name = node.id
        if name in _NAMED_CONSTANTS:
            constant = _NAMED_CONSTANTS[name]
            return lambda env, stateful: constant
        return lambda env, stateful: env.get(name)
    if isinstance(node, ast.BinOp):
        op, left, right = node.op, _compiled(node.left), _compiled(node.right)
        return lambda env, stateful: _arithmetic(op, left(env, stateful), right(env, stateful))
    if isinstance(node, ast.UnaryOp):
        operand = _compiled(node.operand)
        if isinstance(node.op, ast.Not):
            return lambda env, stateful: not operand(env, stateful)
        negate = isinstance(node.op, ast.USub)

        def signed(env: Mapping[str, Any], stateful: Mapping[str, Callable[..., Any]]) -> Any:
            value = operand(env, stateful)
            if not _is_number(value):
                return None
            return -value if negate else +value

        return signed
    if isinstance(node, ast.BoolOp):
        parts = [_compiled(part) for part in node.values]
        if isinstance(node.op, ast.And):

            def all_of(env: Mapping[str, Any], stateful: Mapping[str, Callable[..., Any]]) -> Any:
                value: Any = True
                for part in parts:
                    value = part(env, stateful)
                    if not value:
                        return value
                return value

            return all_of

        def any_of(env: Mapping[str, Any], stateful: Mapping[str, Callable[..., Any]]) -> Any:
            value: Any = False
            for part in parts:
                value = part(env, stateful)
                if value:
                    return value
            return value

        return any_of
    if isinstance(node, ast.Compare):
        first = _compiled(node.left)
        steps = [
            (_COMPARE[type(op)], isinstance(op, _NONE_SAFE), _compiled(comparator))
            for op, comparator in zip(node.ops, node.comparators, strict=True)
        ]

        def compare(env: Mapping[str, Any], stateful: Mapping[str, Callable[..., Any]]) -> Any:
            left = first(env, stateful)
            for test, none_safe, comparator in steps:
                right = comparator(env, stateful)
                if not none_safe and (left is None or right is None):
                    return None
                try:
                    if not test(left, right):
                        return False
                except TypeError:
                    return None
                left = right
            return True

        return compare
    if isinstance(node, ast.IfExp):
        test, body, orelse = _compiled(node.test), _compiled(node.body), _compiled(node.orelse)
        return lambda env, stateful: body(env, stateful) if test(env, stateful) else orelse(env, stateful)
    if isinstance(node, (ast.Tuple, ast.List)):
        elements = [_compiled(element) for element in node.elts]
        return lambda env, stateful: tuple(element(env, stateful) for element in elements)
    if isinstance(node, ast.Call):
        return _compiled_call(node)
    raise ExprError(f"cannot evaluate {type(node).__name__}")  # unreachable after _check


def _compiled_call(node: ast.Call) -> Run:
    func = node.func.id  # type: ignore[attr-defined]
    keywords = [(kw.arg, _compiled(kw.value)) for kw in node.keywords]

    def kwargs_of(env: Mapping[str, Any], stateful: Mapping[str, Callable[..., Any]]) -> dict[str, Any]:
        return {name: value(env, stateful) for name, value in keywords}

    if func in STATEFUL_FUNCTIONS:
        columns = tuple(arg.id for arg in node.args)  # type: ignore[attr-defined]

        def stateful_call(env: Mapping[str, Any], stateful: Mapping[str, Callable[..., Any]]) -> Any:
            kwargs = kwargs_of(env, stateful) if keywords else {}
            impl = stateful.get(func)
            return None if impl is None else impl(*columns, **kwargs)

        return stateful_call
    if func in CONDITION_FUNCTIONS:
        (argument,) = node.args
        key, condition = ast.unparse(argument), _compiled(argument)

        def condition_call(env: Mapping[str, Any], stateful: Mapping[str, Callable[..., Any]]) -> Any:
            impl = stateful.get(func)
            return None if impl is None else impl(key, condition(env, stateful))

        return condition_call
    pure = PURE_FUNCTIONS[func]
    args = [_compiled(arg) for arg in node.args]
    if not keywords:
        return lambda env, stateful: pure(*[arg(env, stateful) for arg in args])

    def pure_call(env: Mapping[str, Any], stateful: Mapping[str, Callable[..., Any]]) -> Any:
        kwargs = kwargs_of(env, stateful)  # before the arguments, as written: rate() keeps state
        return pure(*[arg(env, stateful) for arg in args], **kwargs)

    return pure_call
