"""`sgl ir`: the energy IR as text (for people and snapshot tests) and as JSON (for tools).

Shared nodes are printed once, by name, in topological order; constants are written inline
where they are used. Output depends only on the program, never on ids or dict order.
"""

from __future__ import annotations

import math

from sgl.ir.nodes import Node, SourceNeeds, Term
from sgl.ir.program import EnergyProgram
from sgl.ir.walk import toposort


def fmt_number(value: float) -> str:
    """Shortest faithful spelling: `1`, `0.3`, `-2.5`, `1e-12`."""
    if math.isfinite(value) and value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


def fmt_const(arg) -> str:
    if isinstance(arg, tuple):
        return f"({fmt_number(arg[0])}, {fmt_number(arg[1])})"
    return fmt_number(arg)


def fmt_percent(fraction: float) -> str:
    return fmt_number(round(fraction * 100, 6)) + "%"


def fmt_window(window: tuple[float, float]) -> str:
    return f"{fmt_percent(window[0])}–{fmt_percent(window[1])}"


def _leaf(node: Node) -> str:
    if node.op == "attn":
        source, words = node.arg
        return f"attn[{source}]({' '.join(words)})"
    if node.op == "feat":
        source, layer = node.arg
        return f"feat[{source}]({layer})"
    if node.op in ("latent", "pixels"):
        return f"{node.op}[{node.arg[0]}]()"
    if node.op == "mask":
        return f'mask("{node.arg}")'
    return node.op  # x, y


class _Names:
    """Names `%0, %1, …` in topological order; constants are spelled inline."""

    def __init__(self, roots: list[Node]):
        self.order = [n for n in toposort(roots) if n.op != "const"]
        self.index = {id(n): i for i, n in enumerate(self.order)}

    def ref(self, node: Node) -> str:
        return fmt_const(node.arg) if node.op == "const" else f"%{self.index[id(node)]}"

    def line(self, node: Node) -> str:
        if not node.inputs:
            rhs = _leaf(node)
        else:
            rhs = f"{node.op} " + ", ".join(self.ref(i) for i in node.inputs)
        return f"%{self.index[id(node)]} = {rhs}  : {node.type}"


def _where(term: Term) -> str:
    return f"{term.span.file}:{term.span.line}" if term.span else "<generated>"


def _term_line(index: int, term: Term, names: _Names) -> str:
    return (f"term {index}  {term.distance}  w={fmt_number(term.weight)}  {fmt_window(term.window)}  "
            f"{_where(term)}  {term.label}  → {names.ref(term.root)}")


def _needs_line(source: str, needs: SourceNeeds) -> str:
    parts = []
    if needs.objects:
        parts.append("attn " + ", ".join(" ".join(words) for words in sorted(needs.objects)))
    if needs.features:
        fewer = dict(needs.feature_windows)
        parts.append("feat " + ", ".join(
            f"{f} (steps {', '.join(fmt_window(w) for w in fewer[f]) or 'none'})" if f in fewer else f
            for f in sorted(needs.features)))
    parts.append("steps " + (", ".join(fmt_window(w) for w in needs.windows) or "none"))
    return f"  {source}: " + "; ".join(parts)


def format_ir(program: EnergyProgram) -> str:
    """The program's IR as text: nodes, terms, requirements."""
    names = _Names([t.root for t in program.terms])
    out = [f"# {program.file}  ({'optimized' if program.optimized else 'not optimized'})"]
    out += [names.line(n) for n in names.order]
    if program.terms:
        out.append("")
    out += [_term_line(i, t, names) for i, t in enumerate(program.terms)]
    if not program.terms:
        out.append("no terms")
    out.append("")
    out.append(f"requires (layers: {program.requirements.layers or 'profile default'})")
    out += [_needs_line(s, n) for s, n in program.requirements.sources.items()]
    if not program.requirements.sources:
        out.append("  nothing")
    return "\n".join(out) + "\n"


def _json_arg(node: Node):
    if node.op == "attn":
        return {"source": node.arg[0], "words": list(node.arg[1])}
    if node.op in ("feat", "latent", "pixels"):
        return {"source": node.arg[0], "layer": node.arg[1]}
    if isinstance(node.arg, tuple):
        return list(node.arg)
    return node.arg


def format_ir_json(program: EnergyProgram) -> dict:
    """The program's IR as JSON-ready data: every node (constants too) by index."""
    order = toposort(t.root for t in program.terms)
    index = {id(n): i for i, n in enumerate(order)}
    return {
        "file": program.file,
        "optimized": program.optimized,
        "nodes": [{"id": index[id(n)], "op": n.op, "type": str(n.type),
                   "inputs": [index[id(i)] for i in n.inputs], "arg": _json_arg(n)} for n in order],
        "terms": [{"root": index[id(t.root)], "kind": t.kind, "distance": t.distance,
                   "weight": t.weight, "window": list(t.window), "label": t.label,
                   "file": t.span.file if t.span else None, "line": t.span.line if t.span else None}
                  for t in program.terms],
        "requirements": {
            "layers": program.requirements.layers,
            "sources": {s: {"attn": [list(w) for w in sorted(n.objects)], "feat": sorted(n.features),
                            "windows": [list(w) for w in n.windows],
                            "feature_windows": {f: [list(w) for w in ws] for f, ws in n.feature_windows}}
                        for s, n in program.requirements.sources.items()},
        },
        "settings": {k: list(v) if isinstance(v, tuple) else v for k, v in program.settings.items()},
        "warnings": [{"code": d.code, "message": d.message} for d in program.warnings],
    }
