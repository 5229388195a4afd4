"""Constant folding and algebraic identities, as rewrite rules.

Constants are Python floats (Scalar) or pairs of floats (Vec2). A rule never folds to a value
that is not finite (division by zero, overflow): such nodes stay for the runtime to evaluate,
so passes on and off compute the same energy.
"""

from __future__ import annotations

import math
import operator
from typing import Callable

from sgl.check.types import SCALAR, VEC2, Type
from sgl.ir.nodes import Graph, Node
from sgl.ir.ops import rounded_hinge
from sgl.ir.rewrite import Rule
from sgl.ir.walk import toposort

Value = float | tuple[float, float]


def const(graph: Graph, value: Value) -> Node:
    """The interned constant node for a Scalar (float) or Vec2 (pair) value."""
    if isinstance(value, tuple):
        return graph.node("const", VEC2, (), (float(value[0]), float(value[1])))
    return graph.node("const", SCALAR, (), float(value))


def zero(graph: Graph, type: Type) -> Node | None:
    if type == SCALAR:
        return const(graph, 0.0)
    if type == VEC2:
        return const(graph, (0.0, 0.0))
    return None


def _is_const(node: Node, value: float | None = None) -> bool:
    if node.op != "const":
        return False
    if value is None:
        return True
    return node.arg == value or node.arg == (value, value)


def _finite(value: Value) -> bool:
    items = value if isinstance(value, tuple) else (value,)
    return all(math.isfinite(v) for v in items)


# ----------------------------------------------------------------------------- evaluation

def _broadcast(fn: Callable[[float, float], float], a: Value, b: Value) -> Value:
    if isinstance(a, tuple) and isinstance(b, tuple):
        return (fn(a[0], b[0]), fn(a[1], b[1]))
    if isinstance(a, tuple):
        return (fn(a[0], b), fn(a[1], b))
    if isinstance(b, tuple):
        return (fn(a, b[0]), fn(a, b[1]))
    return fn(a, b)


def _div(a: float, b: float) -> float:
    return a / b if b != 0.0 else math.nan


_BINARY = {"add": operator.add, "sub": operator.sub, "mul": operator.mul, "div": _div}


def _unary_scalar(fn: Callable[[float], float]) -> Callable[[tuple[Value, ...]], Value]:
    return lambda args: fn(args[0])


_EVAL: dict[str, Callable[[tuple[Value, ...]], Value]] = {
    **{op: (lambda f: lambda args: _broadcast(f, args[0], args[1]))(f) for op, f in _BINARY.items()},
    "neg": lambda args: _broadcast(operator.mul, -1.0, args[0]),
    "pack": lambda args: (args[0], args[1]),
    "get_x": lambda args: args[0][0],
    "get_y": lambda args: args[0][1],
    "abs": _unary_scalar(abs),
    "sqrt": _unary_scalar(lambda v: math.sqrt(max(v, 1e-12))),
    "relu": _unary_scalar(lambda v: max(v, 0.0)),
    "hinge": _unary_scalar(rounded_hinge),
    "norm": lambda args: math.hypot(*args[0]),
    "dot": lambda args: args[0][0] * args[1][0] + args[0][1] * args[1][1],
    "detach": lambda args: args[0],
}


def evaluate_const(node: Node) -> Value | None:
    """The value of `node` when it is computed from constants by ops the compiler can
    evaluate (without recursion), else None."""
    values: dict[int, Value] = {}
    for n in toposort([node]):
        if n.op == "const":
            values[id(n)] = n.arg
        elif n.op in _EVAL and n.type in (SCALAR, VEC2) and all(id(i) in values for i in n.inputs):
            try:
                v = _EVAL[n.op](tuple(values[id(i)] for i in n.inputs))
            except (OverflowError, ValueError):
                return None
            if not _finite(v):
                return None
            values[id(n)] = v
        else:
            return None
    return values[id(node)]


# ----------------------------------------------------------------------------- rules

def _fold(graph: Graph, node: Node) -> Node | None:
    """An op on constants becomes a constant."""
    if node.type not in (SCALAR, VEC2) or not node.inputs or not all(_is_const(i) for i in node.inputs):
        return None
    value = evaluate_const(node)
    return None if value is None else const(graph, value)


def _add_zero(graph: Graph, node: Node) -> Node | None:
    a, b = node.inputs
    if _is_const(b, 0.0) and a.type == node.type:
        return a  # x + 0, x - 0
    if node.op == "add" and _is_const(a, 0.0) and b.type == node.type:
        return b  # 0 + x
    if node.op == "sub" and _is_const(a, 0.0) and b.type == node.type:
        return graph.node("neg", node.type, (b,))  # 0 - x
    return None


def _mul_one(graph: Graph, node: Node) -> Node | None:
    a, b = node.inputs
    if _is_const(b, 1.0) and b.type == SCALAR and a.type == node.type:
        return a  # x * 1, x / 1
    if node.op == "mul" and _is_const(a, 1.0) and a.type == SCALAR and b.type == node.type:
        return b  # 1 * x
    return None


def _mul_zero(graph: Graph, node: Node) -> Node | None:
    """x * 0 → 0 for Scalar and Vec2 results (a Map has no constant form)."""
    a, b = node.inputs
    if _is_const(a, 0.0) or _is_const(b, 0.0):
        return zero(graph, node.type)
    return None


def _neg_neg(graph: Graph, node: Node) -> Node | None:
    (a,) = node.inputs
    return a.inputs[0] if a.op == "neg" else None


def _get_of_pack(graph: Graph, node: Node) -> Node | None:
    (v,) = node.inputs
    if v.op == "pack":
        return v.inputs[0 if node.op == "get_x" else 1]
    return None


def _pack_of_gets(graph: Graph, node: Node) -> Node | None:
    a, b = node.inputs
    if a.op == "get_x" and b.op == "get_y" and a.inputs[0] is b.inputs[0]:
        return a.inputs[0]
    return None


def _identity_transform(graph: Graph, node: Node) -> Node | None:
    """scale(m, 1) and shift(m, (0, 0)) are m (a macro's resize by 1, move by nothing)."""
    m, by = node.inputs
    if (node.op == "scale" and _is_const(by, 1.0)) or (node.op == "shift" and _is_const(by, 0.0)):
        return m
    return None


def _detach_idempotent(graph: Graph, node: Node) -> Node | None:
    (a,) = node.inputs
    if a.op == "detach" or a.op == "const":
        return a
    return None


FOLD_RULES: tuple[Rule, ...] = (
    (None, _fold),
    (frozenset({"add", "sub"}), _add_zero),
    (frozenset({"mul", "div"}), _mul_one),
    (frozenset({"mul"}), _mul_zero),
    (frozenset({"neg"}), _neg_neg),
    (frozenset({"get_x", "get_y"}), _get_of_pack),
    (frozenset({"pack"}), _pack_of_gets),
    (frozenset({"scale", "shift"}), _identity_transform),
    (frozenset({"detach"}), _detach_idempotent),
)
