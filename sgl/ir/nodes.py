"""The energy IR: a small hash-consed DAG of immutable nodes, plus the terms and requirements
that form the contract between the compiler and the runtime (DESIGN.md §2).

Nodes are interned per compilation by a `Graph`: asking for a node equal in (op, type,
inputs, arg) to an existing one returns that very object, so CSE is free and tests compare
with `is`. No torch here.

Ops (the evaluator in sgl/runtime/evaluate.py implements each):
  leaves   const (arg: float for Scalar, (x, y) for Vec2), attn (arg: (source, words)),
           feat (arg: (source, layer)), x, y, mask (arg: path)
  arith    add, sub, mul, div, neg — broadcasting Scalar·Vec2, Scalar·Map, Scalar·Vector,
           Map·Map, Vec2·Vec2, Vector·Vector; pack (Scalar, Scalar → Vec2), get_x, get_y
  prelude  every `extern fn` of stdlib/prelude.sgl except the compile-time ones
           (objects, others): box, circle, normalize, softthr, hardthr, sum, mean, max, min,
           pool, shift, scale, abs, sqrt, norm, dot, relu, detach (in the IR on any value
           type: the gradient cut wraps what does not read the generated run in it)
  distance l1 (mean |a − b| over all elements), l2 (mean (a − b)²) → Scalar
  hinge    hinge (Scalar → Scalar: max(v, 0), the term of `a < b` on a − b)
  l1 and hinge have their kink rounded within ops.ROUNDING of zero (no gradient from noise)
"""

from __future__ import annotations

from typing import Hashable

import attrs

from sgl.check.types import Type
from sgl.diagnostics import Span


@attrs.define(frozen=True, eq=False, repr=False)
class Node:
    """One IR value. Identity is equality (nodes are interned by their Graph)."""

    op: str
    type: Type
    inputs: tuple["Node", ...] = ()
    arg: Hashable = None

    def __repr__(self) -> str:
        arg = "" if self.arg is None else f" {self.arg!r}"
        return f"<{self.op}{arg} : {self.type} ({len(self.inputs)} inputs)>"


class Graph:
    """The intern table of one compilation."""

    def __init__(self) -> None:
        self._table: dict[tuple, Node] = {}

    def node(self, op: str, type: Type, inputs: tuple[Node, ...] = (), arg: Hashable = None) -> Node:
        key = (op, type, tuple(id(i) for i in inputs), arg)
        found = self._table.get(key)
        if found is None:
            found = Node(op, type, tuple(inputs), arg)
            self._table[key] = found
        return found

    def __len__(self) -> int:
        return len(self._table)


@attrs.frozen
class Term:
    """One energy term of a program: `weight · root` while the step fraction is in `window`.

    `kind` is "eq" (from `=`), "ineq" (from `< > <= >=`, a hinge) or "objective"
    (minimize / maximize). `distance` is "l1", "l2", "hinge" or "objective". `window` is
    [start, end) as fractions of the sampling steps: step i of N is active when
    start ≤ i / N < end (end = 1.0 includes the last step). `label` is the constraint as
    written (one line), for traces and reports.
    """

    root: Node
    weight: float
    window: tuple[float, float]
    kind: str
    distance: str
    label: str
    span: Span | None = attrs.field(eq=False, default=None)

    def active(self, step: int, num_steps: int) -> bool:
        f = step / max(num_steps, 1)
        return self.window[0] <= f < self.window[1]


@attrs.frozen
class SourceNeeds:
    """What the runtime must record for one source: attention maps of these objects (each a
    tuple of lower-cased words), activations of these feature layers ("default" = the
    profile's feature layer), and at which steps (a window union as [start, end) fractions).
    `feature_windows` has, per feature, the union of the windows of the terms that read it: a
    feature read by fewer terms than the source's others is needed at fewer steps (the runtime
    decodes `pixels()` only where a term reads it; it costs a VAE pass with its gradient)."""

    objects: frozenset[tuple[str, ...]] = frozenset()
    features: frozenset[str] = frozenset()
    windows: tuple[tuple[float, float], ...] = ()
    feature_windows: tuple[tuple[str, tuple[tuple[float, float], ...]], ...] = ()

    def windows_of(self, feature: str) -> tuple[tuple[float, float], ...]:
        """The steps at which `feature` is read (the source's windows when not listed)."""
        return dict(self.feature_windows).get(feature, self.windows)


@attrs.frozen
class Requirements:
    """The union of what the terms read, per source name ("self", "orig", image names), plus
    the attention-layer pattern (None = the model profile's default)."""

    sources: dict[str, SourceNeeds]
    layers: str | None = None
