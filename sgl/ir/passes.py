"""The optimisation passes over an EnergyProgram, and the requirement analysis.

`optimize` runs, in order: constant folding and identities to a fixed point (sgl/ir/fold.py),
dead-term removal (zero weight, empty window), the gradient cut (whatever does not read the
generated run is wrapped in `detach`), and compaction into a fresh graph. Every pass keeps the
energy's value: tests and the evaluator compare programs with passes on and off.
"""

from __future__ import annotations

from typing import Iterable

import attrs

from sgl.check.program import SELF
from sgl.ir.fold import FOLD_RULES
from sgl.ir.nodes import Graph, Node, Requirements, SourceNeeds, Term
from sgl.ir.ops import READS
from sgl.ir.program import EnergyProgram
from sgl.ir.rewrite import rewrite
from sgl.ir.walk import toposort


def fold_terms(graph: Graph, terms: Iterable[Term]) -> tuple[Term, ...]:
    """Constant folding and algebraic identities on every term's graph."""
    terms = tuple(terms)
    done = rewrite(graph, [t.root for t in terms], FOLD_RULES)
    return tuple(attrs.evolve(t, root=done[t.root]) for t in terms)


def is_dead(term: Term) -> bool:
    """A term that can never contribute: zero weight or a window with no step in it."""
    return term.weight == 0.0 or term.window[0] >= term.window[1]


def remove_dead(terms: Iterable[Term]) -> tuple[Term, ...]:
    return tuple(t for t in terms if not is_dead(t))


def source_reads(roots: Iterable[Node]) -> dict[Node, frozenset[str]]:
    """For every node, the names of the sources it reads (through attn/feat leaves)."""
    found: dict[Node, frozenset[str]] = {}
    for node in toposort(roots):
        if node.op in READS:
            found[node] = frozenset({node.arg[0]})
        else:
            found[node] = frozenset().union(*(found[i] for i in node.inputs))
    return found


def cut_gradients(graph: Graph, terms: Iterable[Term]) -> tuple[Term, ...]:
    """Wrap every maximal subgraph that reads runs but not the generated one in `detach`, so
    the evaluator computes it without autograd (it is a constant for the gradient)."""
    terms = tuple(terms)
    reads = source_reads(t.root for t in terms)
    new: dict[Node, Node] = {}
    for node in toposort(t.root for t in terms):
        if SELF not in reads[node]:
            new[node] = node  # constant for the gradient: cut at its users, not inside
            continue
        inputs = tuple(
            graph.node("detach", i.type, (i,)) if reads[i] and SELF not in reads[i] and i.op != "detach"
            else new[i]
            for i in node.inputs)
        new[node] = graph.node(node.op, node.type, inputs, node.arg)
    return tuple(attrs.evolve(t, root=new[t.root]) for t in terms)


def compact(terms: Iterable[Term]) -> tuple[Graph, tuple[Term, ...]]:
    """Re-intern the nodes the terms reach into a fresh graph (dropping everything else)."""
    terms = tuple(terms)
    graph = Graph()
    new: dict[Node, Node] = {}
    for node in toposort(t.root for t in terms):
        new[node] = graph.node(node.op, node.type, tuple(new[i] for i in node.inputs), node.arg)
    return graph, tuple(attrs.evolve(t, root=new[t.root]) for t in terms)


def merge_windows(windows: Iterable[tuple[float, float]]) -> tuple[tuple[float, float], ...]:
    """The union of [start, end) windows as sorted, disjoint, non-touching windows."""
    merged: list[list[float]] = []
    for start, end in sorted(w for w in windows if w[0] < w[1]):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return tuple((s, e) for s, e in merged)


def requirements(terms: Iterable[Term], layers: str | None = None) -> Requirements:
    """What the runtime must record: per source, the attention words and feature layers the
    terms read, at the union of the windows of the terms that read them. Terms whose window
    is empty read nothing."""
    objects: dict[str, set] = {}
    features: dict[str, set] = {}
    windows: dict[str, list] = {}
    feature_windows: dict[tuple[str, str], list] = {}
    for term in terms:
        if term.window[0] >= term.window[1]:
            continue
        for node in toposort([term.root]):
            if node.op not in READS:
                continue
            source, what = node.arg
            objects.setdefault(source, set())
            features.setdefault(source, set())
            (objects if node.op == "attn" else features)[source].add(what)
            windows.setdefault(source, []).append(term.window)
            if node.op != "attn":
                feature_windows.setdefault((source, what), []).append(term.window)
    needs = {}
    for source in sorted(objects, key=lambda s: (s != SELF, s)):
        steps = merge_windows(windows[source])
        own = ((f, merge_windows(feature_windows[source, f])) for f in sorted(features[source]))
        needs[source] = SourceNeeds(frozenset(objects[source]), frozenset(features[source]), steps,
                                    tuple((f, w) for f, w in own if w != steps))
    return Requirements(needs, layers)


def optimize(program: EnergyProgram) -> EnergyProgram:
    """Run every pass; the result computes the same energy as `program`."""
    graph = program.graph
    terms = fold_terms(graph, program.terms)
    terms = remove_dead(terms)
    terms = cut_gradients(graph, terms)
    terms = fold_terms(graph, terms)
    graph, terms = compact(terms)
    return attrs.evolve(program, terms=terms, graph=graph,
                        requirements=requirements(terms, program.requirements.layers),
                        optimized=True)
