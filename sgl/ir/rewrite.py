"""The rewrite driver: rules are (ops, function) pairs; a function gets the graph and a node
whose inputs are already rewritten, and returns a replacement node or None. The driver rewrites
bottom-up until no rule fires anywhere (a fixed point), without recursion."""

from __future__ import annotations

from typing import Callable, Iterable

from sgl.ir.nodes import Graph, Node

Rule = tuple[frozenset[str] | None, Callable[[Graph, Node], Node | None]]  # None ops = any op

MAX_REWRITES = 100_000  # a rule set that never settles is a compiler bug; fail instead of hanging


class RewriteLoop(RuntimeError):
    """The rules kept firing without reaching a fixed point."""


def rebuild(graph: Graph, node: Node, inputs: tuple[Node, ...]) -> Node:
    """`node` with new inputs, interned in `graph` (the same node when nothing changed and
    the node already lives there)."""
    return graph.node(node.op, node.type, inputs, node.arg)


def _first_firing(graph: Graph, node: Node, rules: tuple[Rule, ...]) -> Node | None:
    for ops, fn in rules:
        if ops is None or node.op in ops:
            out = fn(graph, node)
            if out is not None and out is not node:
                return out
    return None


def rewrite(graph: Graph, roots: Iterable[Node], rules: Iterable[Rule]) -> dict[Node, Node]:
    """Map every node reachable from `roots` to its rewritten form (new nodes are interned in
    `graph`). A rule's output is itself rewritten, so the result is a fixed point."""
    rules = tuple(rules)
    done: dict[Node, Node] = {}
    fired = 0
    for root in roots:
        # Frames: (node, state, replacement). state 0 = visit inputs, 1 = rebuild and try
        # the rules, 2 = adopt the (now rewritten) replacement's result.
        stack: list[tuple[Node, int, Node | None]] = [(root, 0, None)]
        while stack:
            node, state, replacement = stack.pop()
            if state != 2 and node in done:
                continue
            if state == 0:
                stack.append((node, 1, None))
                stack.extend((i, 0, None) for i in reversed(node.inputs) if i not in done)
            elif state == 1:
                built = rebuild(graph, node, tuple(done[i] for i in node.inputs))
                out = _first_firing(graph, built, rules)
                if out is None:
                    done[node] = built
                    done[built] = built
                else:
                    fired += 1
                    if fired > MAX_REWRITES:
                        raise RewriteLoop(f"rewrite rules did not settle (last: {built!r} -> {out!r})")
                    stack.append((node, 2, out))
                    if out not in done:
                        stack.append((out, 0, None))
            else:
                done[node] = done[replacement]
    return done
