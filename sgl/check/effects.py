"""Which functions read a run (the model's attention or activations), directly or through
the functions they call — so that a source on a call that reads nothing can be flagged:
`box[ref](0, 0, 1, 1)` is the same box whatever the source."""

from __future__ import annotations

from sgl.check import errors
from sgl.check.resolve import Resolver, is_macro
from sgl.diagnostics import Diagnostic
from sgl.syntax import ast

READERS = frozenset({"attn", "feat", "latent", "pixels"})   # the intrinsics that read a run


def _calls(node):
    """Every Call inside an expression or a block of statements (iterative walk)."""
    stack = [node]
    while stack:
        e = stack.pop()
        if isinstance(e, (tuple, list)):
            stack.extend(e)
        elif isinstance(e, ast.Call):
            yield e
            stack.extend(e.args)
        elif isinstance(e, (ast.BinOp, ast.Neg, ast.Attribute, ast.Tuple, ast.ListExpr)):
            stack.extend(ast.children(e))
        elif isinstance(e, ast.Constraint):
            stack.extend((e.lhs, e.rhs))
        elif isinstance(e, ast.Objective):
            stack.append(e.expr)
        elif isinstance(e, ast.Apply):
            stack.append(e.call)
        elif isinstance(e, ast.For):
            stack.extend((e.iterable, e.body))
        elif isinstance(e, ast.Let):
            stack.append(e.value)
        elif isinstance(e, ast.Name):
            continue


def run_readers(resolver: Resolver) -> set[str]:
    """Names of the functions that read a run, found as a fixed point over the call graph."""
    bodies = {name: [i.fn for i in infos] for name, infos in resolver.functions.items()}
    readers = set(READERS)
    changed = True
    while changed:
        changed = False
        for name, fns in bodies.items():
            if name in readers:
                continue
            if any(fn.body is not None and any(c.func in readers for c in _calls(fn.body)) for fn in fns):
                readers.add(name)
                changed = True
    return readers


def useless_sources(resolver: Resolver) -> list[Diagnostic]:
    """A warning for every `f[src](…)` whose `f` reads nothing from any run."""
    readers = run_readers(resolver)
    found = []
    for module in resolver.modules:
        for stmt in module.program.statements:
            if isinstance(stmt, ast.FnDef) and stmt.body is not None:
                body = stmt.body if is_macro(stmt) else (stmt.body,)
            elif module is resolver.main and not isinstance(stmt, ast.FnDef):
                body = (stmt,)
            else:
                continue
            for call in _calls(body):
                if call.source is not None and call.func in resolver.functions and call.func not in readers:
                    found.append(errors.source_reads_nothing(call.func, call.source.name,
                                                             call.source.span or call.span))
    return found
