"""Compile-time constants: weights must be known before sampling; constant targets can be
checked against the image bounds.

A weight may be built from numbers, `let`s of numbers and Scalar parameters of a constraint
macro, with arithmetic and the pure numeric intrinsics (`relu`, `abs`, `sqrt`, `norm`, `dot`:
`weight 25 * (1 + relu(1 - factor))` lets a macro weigh a term by its argument); a macro whose
parameter ends up in a weight (directly or through another macro) then needs a constant
argument for it at every call.
"""

from __future__ import annotations

import math

from sgl.check import errors
from sgl.check.resolve import Resolver, is_macro
from sgl.diagnostics import Diagnostic
from sgl.syntax import ast


# Intrinsics the IR evaluates on constants (ir/fold.py `_EVAL`; a test keeps the two in step:
# the checker cannot import the IR, which comes after it).
NUMERIC_INTRINSICS = frozenset({"relu", "abs", "sqrt", "norm", "dot"})


class ConstChecker:
    def __init__(self, resolver: Resolver, chosen: dict[int, ast.FnDef]):
        self.r = resolver
        self.chosen = chosen
        self.diags: list[Diagnostic] = []
        self._needs: dict[int, set[int]] = {}   # id(macro) → indices of params that must be constant
        self._busy: set[int] = set()
        self._stdlib_fns = {id(stmt) for module in resolver.modules if module.stdlib
                            for stmt in module.program.statements if isinstance(stmt, ast.FnDef)}

    def run(self) -> None:
        for module in self.r.modules:
            for stmt in module.program.statements:
                if isinstance(stmt, ast.FnDef) and is_macro(stmt):
                    self.statements(stmt.body)
                    self.defaults(stmt)
                elif module is self.r.main and isinstance(stmt, (ast.Constraint, ast.Objective, ast.Apply, ast.For)):
                    self.statements((stmt,))

    # ------------------------------------------------------------------ checks

    def statements(self, stmts) -> None:
        for stmt in stmts:
            if isinstance(stmt, ast.For):
                self.statements(stmt.body)
                continue
            for m in getattr(stmt, "modifiers", ()):
                if isinstance(m, ast.Weight) and not self.is_const(m.value):
                    self.diags.append(errors.weight_not_constant(m.value.span or m.span))
            if isinstance(stmt, ast.Apply):
                self.apply(stmt.call)
            if isinstance(stmt, ast.Constraint) and stmt.op == "=":
                for side, other in ((stmt.lhs, stmt.rhs), (stmt.rhs, stmt.lhs)):
                    value = self.fold(side)
                    if (isinstance(value, tuple) and not all(0 <= v <= 1 for v in value)
                            and self.is_position(other)):
                        self.diags.append(errors.target_outside(value, side.span))

    def defaults(self, macro: ast.FnDef) -> None:
        for index in sorted(self.needs(macro)):
            default = macro.params[index].default
            if default is not None and not self.is_const(default):
                self.diags.append(errors.argument_not_constant(macro.name, macro.params[index].name, default.span))

    def apply(self, call: ast.Call) -> None:
        macro = self.chosen.get(id(call))
        if macro is None:
            return
        for index in sorted(self.needs(macro)):
            param = macro.params[index]
            arg = call.args[index] if index < len(call.args) else None
            if arg is not None and not self.is_const(arg):
                self.diags.append(errors.argument_not_constant(call.func, param.name, arg.span))

    # ------------------------------------------------------------------ analysis

    def needs(self, macro: ast.FnDef) -> set[int]:
        """Indices of `macro`'s parameters that flow into a weight."""
        key = id(macro)
        if key in self._needs or key in self._busy:
            return self._needs.get(key, set())
        self._busy.add(key)
        found: set[int] = set()
        self._collect_needs(macro.body, macro, found)
        self._busy.discard(key)
        self._needs[key] = found
        return found

    def _collect_needs(self, stmts, macro: ast.FnDef, found: set[int]) -> None:
        for stmt in stmts:
            if isinstance(stmt, ast.For):
                self._collect_needs(stmt.body, macro, found)
                continue
            exprs = [m.value for m in getattr(stmt, "modifiers", ()) if isinstance(m, ast.Weight)]
            if isinstance(stmt, ast.Apply):
                inner = self.chosen.get(id(stmt.call))
                if inner is not None:
                    exprs += [stmt.call.args[i] for i in self.needs(inner) if i < len(stmt.call.args)]
            for e in exprs:
                found.update(b.index for b in self._params(e) if b.owner is macro)

    def _params(self, e):
        """Parameter bindings an expression reads (through block `let`s too)."""
        if isinstance(e, ast.Name):
            b = self.r.refs.get(id(e))
            if b is None:
                return []
            if b.kind == "param":
                return [b]
            if b.kind == "let" and b.value is not None:
                return self._params(b.value)
            return []
        return [p for child in ast.children(e) for p in self._params(child)]

    def is_const(self, e) -> bool:
        if isinstance(e, ast.Number):
            return True
        if isinstance(e, ast.Name):
            b = self.r.refs.get(id(e))
            if b is None:
                return False
            if b.kind == "param":
                return True       # the caller must pass a constant: see `needs`
            if b.kind in ("let", "global_let") and b.value is not None:
                return self.is_const(b.value)
            return False
        if isinstance(e, (ast.BinOp, ast.Neg, ast.Tuple)) or self._numeric_intrinsic(e):
            return all(self.is_const(c) for c in ast.children(e))
        return False

    def _numeric_intrinsic(self, e) -> bool:
        """A call of an intrinsic the compiler evaluates on numbers (the IR folds it: ir/fold.py)."""
        if not isinstance(e, ast.Call) or e.source is not None:
            return False
        fn = self.chosen.get(id(e))
        return fn is not None and fn.extern and fn.name in NUMERIC_INTRINSICS

    def is_position(self, e, seen: frozenset[int] = frozenset()) -> bool:
        """Whether `e` is a point of the image: a centroid (stdlib `centroid_of`, from any
        source), through the functions and `let`s that return one. Arithmetic on points (a
        difference of two centroids) is not one: the lowering's ranges judge those."""
        if isinstance(e, ast.Name):
            b = self.r.refs.get(id(e))
            return (b is not None and b.kind in ("let", "global_let") and b.value is not None
                    and self.is_position(b.value, seen))
        if not isinstance(e, ast.Call):
            return False
        fn = self.chosen.get(id(e))
        if fn is None or fn.extern or id(fn) in seen or fn.body is None or isinstance(fn.body, tuple):
            return False
        if fn.name == "centroid_of" and id(fn) in self._stdlib_fns:
            return True
        return self.is_position(fn.body, seen | {id(fn)})

    def fold(self, e):
        """The value of a constant Scalar or Vec2 expression, or None."""
        if isinstance(e, ast.Number):
            return float(e.value)
        if isinstance(e, ast.Name):
            b = self.r.refs.get(id(e))
            if b is not None and b.kind in ("let", "global_let") and b.value is not None:
                return self.fold(b.value)
            return None
        if isinstance(e, ast.Neg):
            v = self.fold(e.operand)
            return None if v is None else (-v if isinstance(v, float) else tuple(-c for c in v))
        if isinstance(e, ast.Tuple) and len(e.items) == 2:
            items = [self.fold(i) for i in e.items]
            return tuple(items) if all(isinstance(i, float) for i in items) else None
        if isinstance(e, ast.BinOp):
            a, b = self.fold(e.left), self.fold(e.right)
            if a is None or b is None:
                return None
            return _arith(e.op, a, b)
        if self._numeric_intrinsic(e):
            args = [self.fold(a) for a in e.args]
            return None if None in args else _numeric(e.func, args)
        return None


def _numeric(name: str, args: list):
    """A numeric intrinsic on folded Scalars and Vec2s, as the IR evaluates it (ir/fold.py);
    None for an overload the checker does not fold (Vectors)."""
    scalars = all(isinstance(a, float) for a in args)
    pairs = all(isinstance(a, tuple) and len(a) == 2 for a in args)
    if name in ("relu", "abs", "sqrt") and len(args) == 1 and scalars:
        v = args[0]
        return max(v, 0.0) if name == "relu" else abs(v) if name == "abs" else math.sqrt(max(v, 1e-12))
    if name == "norm" and len(args) == 1 and pairs:
        return math.hypot(*args[0])
    if name == "dot" and len(args) == 2 and pairs:
        return args[0][0] * args[1][0] + args[0][1] * args[1][1]
    return None


def _arith(op: str, a, b):
    def one(x: float, y: float):
        if op == "+":
            return x + y
        if op == "-":
            return x - y
        if op == "*":
            return x * y
        return None if y == 0 else x / y

    if isinstance(a, float) and isinstance(b, float):
        return one(a, b)
    if isinstance(a, tuple) and isinstance(b, tuple):
        vals = [one(x, y) for x, y in zip(a, b)] if op in "+-" else [None]
    elif isinstance(a, tuple):
        vals = [one(x, b) for x in a]
    else:
        vals = [one(a, y) for y in b] if op == "*" else [None]
    return None if None in vals else tuple(vals)
