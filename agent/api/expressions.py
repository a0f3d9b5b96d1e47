"""Safe evaluation of a rule's ``when`` condition over one sample.

The language is a small subset of Python expressions, checked against an AST whitelist when the
rule is loaded (never ``eval``):

- names (resolved to the sample's *fields* first, then its *tags*), constants (str, int, float,
  bool, None), tuples/lists of constants (for ``in``);
- comparisons ``== != < <= > >= in not in`` (chains allowed);
- ``and``, ``or``, ``not``; arithmetic ``+ - * / // %`` and unary ``- +``.

Anything else (calls, attributes, subscripts, ``**``, lambdas, comprehensions...) is rejected with
:class:`ExpressionError` at compile time.

**Unknown values.** A name that is missing from the sample, or whose value is ``None``, is
*unknown*. Unknown propagates through arithmetic and comparisons, and ``and``/``or``/``not`` use
three-valued (Kleene) logic: ``False and unknown`` is ``False``, ``True or unknown`` is ``True``,
anything else involving unknown is unknown. :meth:`Expression.evaluate` returns ``None`` for unknown
and the engine makes no state transition on it, so a missing value never raises nor resolves an
alert. A runtime type error (``'up' < 3``) or a division by zero is also unknown.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from agent.api.safe_ast import BINARY_OPS, COMPARE_OPS, parse

__all__ = ["ExpressionError", "Expression", "compile_expression", "UNKNOWN"]

MAX_LENGTH = 1000


class ExpressionError(ValueError):
    """The expression is not valid or uses something outside the whitelist."""


class _Unknown:
    __slots__ = ()

    def __repr__(self) -> str:
        return "UNKNOWN"

    def __bool__(self) -> bool:  # never let it be silently truthy/falsy
        raise TypeError("UNKNOWN has no truth value")


UNKNOWN: Any = _Unknown()

_BINOPS = BINARY_OPS
# Rules compare values, not identities: no ``is`` / ``is not`` (unknown is not a value).
_CMPOPS = {op: fn for op, fn in COMPARE_OPS.items() if op not in (ast.Is, ast.IsNot)}
_ALLOWED = (
    ast.Expression,
    ast.BoolOp,
    ast.And,
    ast.Or,
    ast.UnaryOp,
    ast.Not,
    ast.USub,
    ast.UAdd,
    ast.BinOp,
    ast.Compare,
    ast.Name,
    ast.Load,
    ast.Constant,
    ast.Tuple,
    ast.List,
    *_BINOPS,
    *_CMPOPS,
)


def _check(tree: ast.AST, source: str) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if not isinstance(node, _ALLOWED):
            raise ExpressionError(f"{source!r}: {type(node).__name__} is not allowed")
        if isinstance(node, ast.Constant) and not isinstance(node.value, str | int | float | bool | type(None)):
            raise ExpressionError(f"{source!r}: constant {node.value!r} is not allowed")
        if isinstance(node, ast.Tuple | ast.List) and not all(isinstance(e, ast.Constant) for e in node.elts):
            raise ExpressionError(f"{source!r}: lists may only hold constants")
        if isinstance(node, ast.Name):
            names.add(node.id)  # only ever looked up in the sample's dicts, never in Python scopes
    return names


@dataclass(frozen=True)
class Expression:
    source: str
    names: frozenset[str]
    _tree: ast.Expression = field(repr=False, compare=False)

    def evaluate(self, fields: Mapping[str, Any], tags: Mapping[str, Any] | None = None) -> bool | None:
        """True / False, or None when the result is unknown."""
        tags = tags or {}
        result = _eval(self._tree.body, fields, tags)
        if result is UNKNOWN:
            return None
        return bool(result)


def compile_expression(source: str) -> Expression:
    if not isinstance(source, str) or not source.strip():
        raise ExpressionError("empty expression")
    if len(source) > MAX_LENGTH:
        raise ExpressionError(f"expression longer than {MAX_LENGTH} characters")
    tree = parse(source, ExpressionError)
    names = _check(tree, source)
    return Expression(source, frozenset(names), tree)


def _truth(value: Any) -> Any:
    return UNKNOWN if value is UNKNOWN else bool(value)


def _eval(node: ast.AST, fields: Mapping[str, Any], tags: Mapping[str, Any]) -> Any:
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        value = fields.get(node.id)
        if value is None:
            value = tags.get(node.id)
        return UNKNOWN if value is None else value
    if isinstance(node, ast.Tuple | ast.List):
        return tuple(e.value for e in node.elts)  # type: ignore[attr-defined]
    if isinstance(node, ast.BoolOp):
        values = [_truth(_eval(v, fields, tags)) for v in node.values]
        if isinstance(node.op, ast.And):
            if any(v is False for v in values):
                return False
            return UNKNOWN if any(v is UNKNOWN for v in values) else True
        if any(v is True for v in values):
            return True
        return UNKNOWN if any(v is UNKNOWN for v in values) else False
    if isinstance(node, ast.UnaryOp):
        operand = _eval(node.operand, fields, tags)
        if operand is UNKNOWN:
            return UNKNOWN
        try:
            if isinstance(node.op, ast.Not):
                return not operand
            if isinstance(node.op, ast.USub):
                return -operand
            return +operand
        except TypeError:
            return UNKNOWN
    if isinstance(node, ast.BinOp):
        left = _eval(node.left, fields, tags)
        right = _eval(node.right, fields, tags)
        if left is UNKNOWN or right is UNKNOWN:
            return UNKNOWN
        if isinstance(left, str) or isinstance(right, str):
            return UNKNOWN  # no string arithmetic (avoids "x" * 10**9)
        try:
            return _BINOPS[type(node.op)](left, right)
        except (TypeError, ZeroDivisionError, OverflowError):
            return UNKNOWN
    if isinstance(node, ast.Compare):
        left = _eval(node.left, fields, tags)
        result: Any = True
        for op, comparator in zip(node.ops, node.comparators, strict=True):
            right = _eval(comparator, fields, tags)
            if left is UNKNOWN or right is UNKNOWN:
                step: Any = UNKNOWN
            else:
                try:
                    step = bool(_CMPOPS[type(op)](left, right))
                except TypeError:
                    step = UNKNOWN
            if step is False:
                return False
            if step is UNKNOWN:
                result = UNKNOWN
            left = right
        return result
    raise ExpressionError(f"{type(node).__name__} is not allowed")  # unreachable after _check
