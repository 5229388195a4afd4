"""The IR verifier: rules that every node and term of a program must satisfy.

It finds compiler bugs, not user mistakes, so it reports plain strings; tests run it on every
lowered program (optimised or not). Each rule looks at one node or one term.
"""

from __future__ import annotations

import math
from typing import Callable, Iterable

from sgl.check.types import SCALAR
from sgl.ir.nodes import Node, Term
from sgl.ir.ops import LEAVES, leaf_type, result_type
from sgl.ir.walk import toposort

KINDS = {"eq": {"l1", "l2"}, "ineq": {"hinge"}, "objective": {"objective"}}


class IRVerifyError(AssertionError):
    """The IR broke an invariant (a compiler bug)."""


def _node_type_matches_op(node: Node) -> str | None:
    if node.op in LEAVES:
        if node.inputs:
            return f"leaf `{node.op}` has inputs"
        expected = leaf_type(node.op, node.arg)
        if expected is None:
            return f"leaf `{node.op}` has a malformed arg {node.arg!r}"
    else:
        if node.arg is not None:
            return f"`{node.op}` carries an arg {node.arg!r}"
        expected = result_type(node.op, tuple(i.type for i in node.inputs))
        if expected is None:
            types = ", ".join(str(i.type) for i in node.inputs)
            return f"`{node.op}` does not accept ({types})"
    if expected != node.type:
        return f"`{node.op}` is typed {node.type}, its rule says {expected}"
    return None


def _inputs_are_nodes(node: Node) -> str | None:
    if not all(isinstance(i, Node) for i in node.inputs):
        return f"`{node.op}` has an input that is not a node"
    return None


NODE_RULES: tuple[Callable[[Node], str | None], ...] = (_inputs_are_nodes, _node_type_matches_op)


def _root_is_scalar(term: Term) -> str | None:
    return None if term.root.type == SCALAR else f"root is {term.root.type}, not Scalar"


def _weight_is_finite(term: Term) -> str | None:
    ok = isinstance(term.weight, float) and math.isfinite(term.weight)
    return None if ok else f"weight {term.weight!r} is not a finite float"


def _window_is_valid(term: Term) -> str | None:
    start, end = term.window
    ok = all(isinstance(v, float) for v in (start, end)) and 0.0 <= start <= end <= 1.0
    return None if ok else f"window {term.window!r} is not 0 ≤ start ≤ end ≤ 1"


def _kind_matches_distance(term: Term) -> str | None:
    if term.distance in KINDS.get(term.kind, ()):
        return None
    return f"kind `{term.kind}` cannot have distance `{term.distance}`"


TERM_RULES: tuple[Callable[[Term], str | None], ...] = (
    _root_is_scalar, _weight_is_finite, _window_is_valid, _kind_matches_distance)


def problems(terms: Iterable[Term]) -> list[str]:
    """Every broken rule, one line each (empty when the IR is well formed)."""
    terms = tuple(terms)
    found = []
    for index, term in enumerate(terms):
        found += [f"term {index}: {msg}" for rule in TERM_RULES if (msg := rule(term))]
    for node in toposort(t.root for t in terms):
        found += [f"{node!r}: {msg}" for rule in NODE_RULES if (msg := rule(node))]
    return found


def verify(terms: Iterable[Term]) -> None:
    """Raise IRVerifyError listing every broken rule."""
    found = problems(terms)
    if found:
        raise IRVerifyError("malformed IR:\n  " + "\n  ".join(found))
