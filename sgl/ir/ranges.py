"""The range a value can take, known before sampling: interval arithmetic over the energy IR.

The lowering asks it whether a constraint can be met at all (`size(o) = 1.5`,
`centroid(o).x > 1.2`, `apart(a, b, 2)`) or always holds (`centroid(o).x < 1.2`), and warns.
A range is a tuple of closed intervals, one per component: one for a Scalar or a Map (every
cell of the map), two for a Vec2; None where nothing is known (features, vectors, pixels).
Ranges are sound, not tight: a warning is given only where the runtime could never do otherwise.

What the runtime guarantees (sgl/runtime/evaluate.py, hooks.py): attention maps are softmax
probabilities summed over a phrase's tokens and averaged over heads and layers, so they lie in
[0, 1]; `x()`, `y()`, boxes, circles, masks and thresholded maps lie in [0, 1]. A weighted mean
`sum(m * a) / sum(m)` with m ≥ 0 (a centroid, `mass_in`, `overlap`) lies within a's range
(widened to include 0, which costs nothing for the maps it is used on). tests/test_ir_ranges.py
evaluates generated expressions on random maps and checks every value against its range.
"""

from __future__ import annotations

import math
from typing import Iterable

from sgl.check.types import SCALAR, VEC2
from sgl.ir.nodes import Node
from sgl.ir.walk import toposort

Interval = tuple[float, float]
Range = tuple[Interval, ...]

INF = math.inf
UNIT: Interval = (0.0, 1.0)
_ANY: Interval = (-INF, INF)
_NONNEG: Interval = (0.0, INF)

# Maps whose every cell lies in [0, 1].
_UNIT_MAPS = frozenset({"attn", "x", "y", "mask", "box", "circle", "normalize", "softthr", "hardthr"})


def value_range(node: Node, known: dict[int, Range | None] | None = None) -> Range | None:
    """The range of `node`'s value, or None when nothing is known about it. `known` (id(node)
    → range) carries what earlier calls found."""
    known = {} if known is None else known
    for n in toposort([node]):
        if id(n) not in known:
            known[id(n)] = _rule(n, [known[id(i)] for i in n.inputs], known)
    return known[id(node)]


def _rule(n: Node, ins: list[Range | None], known: dict) -> Range | None:
    op = n.op
    if op == "const":
        return tuple((v, v) for v in n.arg) if isinstance(n.arg, tuple) else ((n.arg, n.arg),)
    if op in _UNIT_MAPS:
        return (UNIT,)
    if op == "detach":
        return ins[0]
    if op == "pack":
        return None if None in ins else (ins[0][0], ins[1][0])
    if op in ("get_x", "get_y"):
        return None if ins[0] is None else (ins[0][0 if op == "get_x" else 1],)
    if op == "neg":
        return None if ins[0] is None else tuple((-hi, -lo) for lo, hi in ins[0])
    if op == "div":
        mean = _weighted_mean(n, known)
        if mean is not None:
            return mean
    if op in _ARITH:
        return _broadcast(_ARITH[op], ins[0], ins[1], n.type)
    if op in ("mean", "max", "min"):
        return ins[0]
    if op == "sum":
        return None if ins[0] is None else (_sum(ins[0][0]),)
    if op in ("shift", "scale"):                      # moved or scaled with zero fill
        return None if ins[0] is None else (_hull(ins[0][0], (0.0, 0.0)),)
    if op == "relu":
        return None if ins[0] is None else ((max(ins[0][0][0], 0.0), max(ins[0][0][1], 0.0)),)
    if op == "abs":
        return None if ins[0] is None else (_abs(ins[0][0]),)
    if op == "sqrt":                                  # the runtime's sqrt(max(v, 1e-12))
        return None if ins[0] is None else (tuple(math.sqrt(max(v, 1e-12)) for v in ins[0][0]),)
    if op == "norm" and n.inputs[0].type == VEC2:
        return None if ins[0] is None else (_norm(ins[0]),)
    if op == "dot" and n.inputs[0].type == VEC2:
        if ins[0] is None or ins[1] is None:
            return None
        x, y = _mul(ins[0][0], ins[1][0]), _mul(ins[0][1], ins[1][1])
        return ((x[0] + y[0], x[1] + y[1]),)
    if op in ("norm", "hinge", "l1", "l2"):
        return (_NONNEG,)
    return None


def _weighted_mean(n: Node, known: dict) -> Range | None:
    """`sum(m * a) / sum(m)` with m ≥ 0 lies within a's range; a Vec2
    of such numerators over the same sum (a centroid), per component."""
    num, den = n.inputs
    if den.op != "sum" or n.type not in (SCALAR, VEC2):
        return None
    weights = den.inputs[0]
    w = known[id(weights)]
    if w is None or w[0][0] < 0:
        return None
    parts = num.inputs if num.op == "pack" else (num,)
    out = []
    for part in parts:
        if part.op != "sum" or part.inputs[0].op != "mul":
            return None
        a, b = part.inputs[0].inputs
        other = b if a is weights else a if b is weights else None
        r = None if other is None else known[id(other)]
        if r is None or len(r) != 1:
            return None
        out.append(_hull(r[0], (0.0, 0.0)))
    return tuple(out)


# ----------------------------------------------------------------------------- intervals

def _add(a: Interval, b: Interval) -> Interval:
    return (a[0] + b[0], a[1] + b[1])


def _sub(a: Interval, b: Interval) -> Interval:
    return (a[0] - b[1], a[1] - b[0])


def _mul(a: Interval, b: Interval) -> Interval:
    products = [_times(x, y) for x in a for y in b]
    return (min(products), max(products))


def _times(x: float, y: float) -> float:
    return 0.0 if x == 0.0 or y == 0.0 else x * y     # 0 · ∞ is 0 here: a bound, not a value


def _div(a: Interval, b: Interval) -> Interval:
    if b[0] > 0 or b[1] < 0:                          # 1/b for b of one sign (1/±∞ is 0)
        return _mul(a, (1 / b[1], 1 / b[0]))
    return _ANY


_ARITH = {"add": _add, "sub": _sub, "mul": _mul, "div": _div}


def _broadcast(fn, a: Range | None, b: Range | None, type) -> Range | None:
    if a is None or b is None:
        return None
    if len(a) == len(b):
        return tuple(fn(x, y) for x, y in zip(a, b))
    if type == VEC2:                                  # a Scalar against a Vec2
        return tuple(fn(x, y) for x, y in zip(a * 2 if len(a) == 1 else a, b * 2 if len(b) == 1 else b))
    return None


def _hull(a: Interval, b: Interval) -> Interval:
    return (min(a[0], b[0]), max(a[1], b[1]))


def _sum(cells: Interval) -> Interval:
    """A sum over any number of cells: its sign, if the cells have one."""
    if cells[0] >= 0:
        return _NONNEG
    if cells[1] <= 0:
        return (-INF, 0.0)
    return _ANY


def _abs(a: Interval) -> Interval:
    if a[0] >= 0:
        return a
    if a[1] <= 0:
        return (-a[1], -a[0])
    return (0.0, max(-a[0], a[1]))


def _norm(v: Range) -> Interval:
    lo = math.hypot(*(max(i[0], -i[1], 0.0) for i in v))
    hi = math.hypot(*(max(abs(i[0]), abs(i[1])) for i in v))
    return (lo, hi)


def contains(r: Range, value: float | tuple[float, float]) -> bool:
    values: Iterable[float] = value if isinstance(value, tuple) else (value,)
    return all(lo <= v <= hi for (lo, hi), v in zip(r, values))


def fmt_interval(i: Interval) -> str:
    def one(v: float) -> str:
        return "∞" if v == INF else "-∞" if v == -INF else f"{v:.3g}"
    return f"[{one(i[0])}, {one(i[1])}]"
