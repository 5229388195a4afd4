"""Types: the second phase of checking, run only on programs whose names all resolved.

Every expression gets a type (recorded by `id(node)`), every call picks its overload, and every
statement is checked against the typing rules of the language. A sub-expression that failed
returns None and its parents stay silent, so one mistake gives one error.
"""

from __future__ import annotations

from sgl.check import errors
from sgl.check.resolve import RESERVED_SOURCES, FnInfo, Resolver, is_macro
from sgl.check.scope import Binding
from sgl.check.types import FEATURES, IMAGE, MAP, SCALAR, STRING, VEC2, VECTOR, Type, list_of
from sgl.diagnostics import Diagnostic
from sgl.syntax import ast

ADDABLE = (SCALAR, VEC2, MAP, VECTOR)
NEGATABLE = ADDABLE
COMPARABLE = (SCALAR, VEC2, MAP, VECTOR, FEATURES)   # what `=` can constrain
PRODUCTS = {
    "*": {(SCALAR, SCALAR): SCALAR, (SCALAR, VEC2): VEC2, (VEC2, SCALAR): VEC2, (SCALAR, MAP): MAP,
          (MAP, SCALAR): MAP, (MAP, MAP): MAP, (SCALAR, VECTOR): VECTOR, (VECTOR, SCALAR): VECTOR},
    "/": {(SCALAR, SCALAR): SCALAR, (VEC2, SCALAR): VEC2, (MAP, SCALAR): MAP, (MAP, MAP): MAP,
          (VECTOR, SCALAR): VECTOR},
}


def signature(info: FnInfo) -> str:
    params = ", ".join(f"{p.name}: {t if t else p.type.name}" for p, t in zip(info.fn.params, info.param_types))
    return f"{info.fn.name}({params}) -> {info.returns}"


def _span(node):
    return getattr(node, "span", None)


class Inferer:
    """Runs the types phase over a resolved program. Results: `types` (id(expr) → Type),
    `chosen` (id(Call) → the FnDef it calls) and `diags`."""

    def __init__(self, resolver: Resolver):
        self.r = resolver
        self.types: dict[int, Type] = {}
        self.chosen: dict[int, ast.FnDef] = {}
        self.diags: list[Diagnostic] = []
        self._body: dict[int, Type | None] = {}     # id(FnDef) → type of an expression body
        self._busy: set[int] = set()                # guards lazy inference (recursion is a names error)

    def run(self) -> None:
        for module in self.r.modules:
            for stmt in module.program.statements:
                if isinstance(stmt, ast.Let):
                    self.let_type(self.r.scope.bindings.get(stmt.name))
                elif isinstance(stmt, ast.FnDef):
                    self.check_fn(stmt)
                elif module is self.r.main and isinstance(stmt, (ast.Constraint, ast.Objective, ast.Apply, ast.For)):
                    self.statement(stmt)

    # ------------------------------------------------------------------ definitions

    def _info(self, fn: ast.FnDef) -> FnInfo | None:
        return next((i for i in self.r.functions.get(fn.name, ()) if i.fn is fn), None)

    def let_type(self, binding: Binding | None) -> Type | None:
        if binding is None or binding.kind != "global_let" or binding.value is None:
            return binding.type if binding else None
        if binding.type is None and id(binding) not in self._busy:
            self._busy.add(id(binding))
            binding.type = self.expr(binding.value)
            self._busy.discard(id(binding))
        return binding.type

    def check_fn(self, fn: ast.FnDef) -> None:
        info = self._info(fn)
        if info is None:          # a duplicate definition, already reported
            return
        for param, ptype in zip(fn.params, info.param_types):
            if param.default is None:
                continue
            found = self.expr(param.default)
            if found is not None and ptype is not None and found != ptype:
                self.diags.append(errors.default_type(param.name, str(ptype), str(found), _span(param.default)))
        if is_macro(fn):
            for stmt in fn.body:
                self.statement(stmt)
        elif fn.body is not None:
            found = self.body_type(info)
            if found is not None and info.returns is not None and found != info.returns:
                self.diags.append(errors.return_type(fn.name, str(info.returns), str(found), _span(fn.body),
                                                     fn.returns.span if fn.returns else None))

    def body_type(self, info: FnInfo) -> Type | None:
        key = id(info.fn)
        if key not in self._body and key not in self._busy:
            self._busy.add(key)
            self._body[key] = self.expr(info.fn.body)
            self._busy.discard(key)
        return self._body.get(key)

    def return_type(self, info: FnInfo) -> Type | None:
        if info.returns is not None or info.fn.extern or is_macro(info.fn) or info.fn.returns is not None:
            return info.returns
        return self.body_type(info)

    # ------------------------------------------------------------------ statements

    def statement(self, stmt) -> None:
        if isinstance(stmt, ast.Constraint):
            left, right = self.expr(stmt.lhs), self.expr(stmt.rhs)
            if left is not None and right is not None:
                span = stmt.lhs.span.cover(stmt.rhs.span) if stmt.lhs.span and stmt.rhs.span else stmt.span
                if stmt.op == "=":
                    if left != right:
                        self.diags.append(errors.equality_mismatch(str(left), str(right), stmt.rhs.span or span,
                                                                   stmt.lhs.span))
                    elif left not in COMPARABLE:
                        self.diags.append(errors.equality_type(str(left), span))
                elif left != SCALAR or right != SCALAR:
                    self.diags.append(errors.inequality_type(stmt.op, str(left), str(right), span))
            self.modifiers(stmt)
        elif isinstance(stmt, ast.Objective):
            found = self.expr(stmt.expr)
            if found is not None and found != SCALAR:
                self.diags.append(errors.objective_type(stmt.kind, str(found), _span(stmt.expr)))
            self.modifiers(stmt)
        elif isinstance(stmt, ast.Apply):
            self.call(stmt.call)
            self.modifiers(stmt)
        elif isinstance(stmt, ast.For):
            found = self.expr(stmt.iterable)
            binding = self.r.decls.get(id(stmt))
            if found is not None and found.name == "List":
                if binding is not None:
                    binding.type = found.elem
            elif found is not None:
                self.diags.append(errors.for_needs_list(str(found), _span(stmt.iterable)))
            for inner in stmt.body:
                self.statement(inner)
        elif isinstance(stmt, ast.Let):
            binding = self.r.decls.get(id(stmt))
            found = self.expr(stmt.value)
            if binding is not None:
                binding.type = found

    def modifiers(self, stmt) -> None:
        for m in stmt.modifiers:
            if isinstance(m, (ast.Weight, ast.Margin)) and id(m.value) not in self.types:
                found = self.expr(m.value)
                if found is not None and found != SCALAR:
                    what = "weight" if isinstance(m, ast.Weight) else "margin"
                    self.diags.append(errors.modifier_type(what, str(found), _span(m.value)))

    # ------------------------------------------------------------------ expressions

    def expr(self, e) -> Type | None:
        found = self._expr(e)
        if found is not None:
            self.types[id(e)] = found
        return found

    def _expr(self, e) -> Type | None:
        if isinstance(e, ast.Number):
            return SCALAR
        if isinstance(e, ast.String):
            return STRING
        if isinstance(e, ast.Name):
            binding = self.r.refs.get(id(e))
            if binding is None:
                return None
            return self.let_type(binding) if binding.kind == "global_let" else binding.type
        if isinstance(e, ast.Tuple):
            return self.tuple(e)
        if isinstance(e, ast.ListExpr):
            return self.list(e)
        if isinstance(e, ast.BinOp):
            return self.binop(e)
        if isinstance(e, ast.Neg):
            found = self.expr(e.operand)
            if found is None or found in NEGATABLE:
                return found
            self.diags.append(errors.negation_type(str(found), e.span))
            return None
        if isinstance(e, ast.Attribute):
            found = self.expr(e.value)
            if found is None:
                return None
            if found == VEC2 and e.attr in ("x", "y"):
                return SCALAR
            self.diags.append(errors.bad_attribute(e.attr, str(found), e.span))
            return None
        if isinstance(e, ast.Call):
            return self.call(e)
        return None

    def tuple(self, e: ast.Tuple) -> Type | None:
        items = [self.expr(i) for i in e.items]
        if len(items) != 2:
            self.diags.append(errors.tuple_arity(len(items), e.span))
            return None
        ok = True
        for item, found in zip(e.items, items):
            if found is None:
                ok = False
            elif found != SCALAR:
                self.diags.append(errors.tuple_item(str(found), _span(item)))
                ok = False
        return VEC2 if ok else None

    def list(self, e: ast.ListExpr) -> Type | None:
        items = [self.expr(i) for i in e.items]
        if not items:
            self.diags.append(errors.empty_list(e.span))
            return None
        if any(t is None for t in items):
            return None
        first = items[0]
        for item, found in zip(e.items[1:], items[1:]):
            if found != first:
                self.diags.append(errors.list_mismatch(str(first), str(found), _span(item), _span(e.items[0])))
                return None
        return list_of(first)

    def binop(self, e: ast.BinOp) -> Type | None:
        left, right = self.expr(e.left), self.expr(e.right)
        if left is None or right is None:
            return None
        if e.op in ("+", "-"):
            if left == right and left in ADDABLE:
                return left
            hint = None
            if {left, right} == {SCALAR, VEC2}:
                hint = "write an offset as a tuple, e.g. `(0.3, 0)`"
            self.diags.append(errors.operator_mismatch(e.op, str(left), str(right), e.span, hint))
            return None
        found = PRODUCTS.get(e.op, {}).get((left, right))
        if found is None:
            self.diags.append(errors.operator_mismatch(e.op, str(left), str(right), e.span))
        return found

    def call(self, e: ast.Call) -> Type | None:
        args = [self.expr(a) for a in e.args]
        infos = self.r.candidates.get(id(e))
        if infos is None or any(t is None for t in args) or not self.source_ok(e):
            return None
        n = len(args)
        fitting = [i for i in infos if _arity(i)[0] <= n <= _arity(i)[1]]
        if not fitting:
            low = min(_arity(i)[0] for i in infos)
            high = max(_arity(i)[1] for i in infos)
            first = infos[0]
            declared = None if first.module.stdlib else (first.fn.name_span or first.fn.span)
            self.diags.append(errors.wrong_arity(e.func, low, high, n, e.span, declared,
                                                 [signature(i) for i in infos]))
            return None
        if len(infos) == 1:
            info = infos[0]
            ok = True
            for arg, found, param, ptype in zip(e.args, args, info.fn.params, info.param_types):
                if ptype is None:
                    ok = False
                elif found != ptype and isinstance(arg, ast.Name) and arg.id in RESERVED_SOURCES:
                    self.diags.append(errors.source_as_value(arg.id, arg.span, e.func))
                    ok = False
                elif found != ptype:
                    declared = None if info.module.stdlib else param.span
                    self.diags.append(errors.argument_type(e.func, param.name, str(ptype), str(found),
                                                           _span(arg), declared, signature(info)))
                    ok = False
            if not ok:
                return None
        else:
            matching = [i for i in fitting if all(a == p for a, p in zip(args, i.param_types))]
            if not matching:
                self.diags.append(errors.no_overload(e.func, [str(a) for a in args],
                                                     [signature(i) for i in infos], e.span))
                return None
            info = matching[0]
        self.chosen[id(e)] = info.fn
        return self.return_type(info)

    def source_ok(self, e: ast.Call) -> bool:
        """A variable that names a call's source must hold an Image."""
        binding = self.r.source_refs.get(id(e))
        if binding is None:
            return True
        found = self.let_type(binding) if binding.kind == "global_let" else binding.type
        if found is None or found == IMAGE:
            return found is not None
        self.diags.append(errors.source_not_image(binding.name, str(found), e.source.span or e.span, binding.span))
        return False


def _arity(info: FnInfo) -> tuple[int, int]:
    params = info.fn.params
    return sum(1 for p in params if p.default is None), len(params)

