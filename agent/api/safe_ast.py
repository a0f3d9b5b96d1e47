"""The safe-AST core shared by vigie's two small expression languages.

Alert rules' ``when`` (agent/api/expressions.py: three-valued logic, unknown never transitions) and
SNMP profiles' expressions (collectors/snmp/expr.py: functions, a None guard) differ in meaning,
not in what Python syntax they let through: both parse with :mod:`ast` (never ``eval``) and accept
the same operators, listed once here. This module imports nothing of vigie, so a collector may use
it without depending on the alerting package.
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable
from typing import Any

__all__ = ["BINARY_OPS", "COMPARE_OPS", "UNARY_OPS", "check_operators", "parse"]

# Arithmetic: no ``**`` (a hostile expression could build huge numbers), no bit operators.
BINARY_OPS: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
}
COMPARE_OPS: dict[type[ast.cmpop], Callable[[Any, Any], Any]] = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.In: lambda a, b: a in b,
    ast.NotIn: lambda a, b: a not in b,
    ast.Is: operator.is_,
    ast.IsNot: operator.is_not,
}
UNARY_OPS: tuple[type[ast.unaryop], ...] = (ast.USub, ast.UAdd, ast.Not)


def parse(source: str, error: type[Exception]) -> ast.Expression:
    """``source`` as an expression tree; a syntax error is raised as ``error`` naming the source."""
    try:
        return ast.parse(str(source).strip(), mode="eval")
    except SyntaxError as exc:
        raise error(f"syntax error in {source!r}: {exc.msg}") from None


def check_operators(
    node: ast.AST,
    source: str,
    error: type[Exception],
    compare_ops: dict[type[ast.cmpop], Callable[[Any, Any], Any]] = COMPARE_OPS,
) -> None:
    """Raise ``error`` when ``node`` (one node, not its children) is an operation outside the
    shared tables; ``compare_ops`` narrows the comparisons a language accepts."""
    if isinstance(node, ast.BinOp) and type(node.op) not in BINARY_OPS:
        raise error(f"{source!r}: operator {type(node.op).__name__} not allowed")
    if isinstance(node, ast.UnaryOp) and not isinstance(node.op, UNARY_OPS):
        raise error(f"{source!r}: operator {type(node.op).__name__} not allowed")
    if isinstance(node, ast.Compare):
        for op in node.ops:
            if type(op) not in compare_ops:
                raise error(f"{source!r}: comparison {type(op).__name__} not allowed")
