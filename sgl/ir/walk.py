"""Graph walks without recursion (programs can nest deeply; Python's stack cannot)."""

from __future__ import annotations

from typing import Iterable

from sgl.ir.nodes import Node
from sgl.ir.ops import READS


def toposort(roots: Iterable[Node]) -> list[Node]:
    """Every node reachable from `roots`, inputs before users, each once. Deterministic:
    a depth-first post-order visiting roots and inputs in order."""
    order: list[Node] = []
    done: set[int] = set()
    for root in roots:
        stack: list[tuple[Node, bool]] = [(root, False)]
        while stack:
            node, expanded = stack.pop()
            if id(node) in done:
                continue
            if expanded:
                done.add(id(node))
                order.append(node)
                continue
            stack.append((node, True))
            for child in reversed(node.inputs):
                if id(child) not in done:
                    stack.append((child, False))
    return order


def reads(root: Node) -> list[Node]:
    """The `attn`/`feat` leaves under `root`, in walk order."""
    return [n for n in toposort([root]) if n.op in READS]
