"""Lowering: a checked program becomes energy terms over a hash-consed graph.

An evaluator over the checked AST. Function calls are inlined (arguments in the caller's
scope, defaults and bodies in the callee's), `for` loops are unrolled over lists known at
compile time, and a call's source (`f₀(…)`, `f[ref](…)`) binds every `attn`/`feat` created
while inlining `f` to that run, unless an inner call names its own source. Constraints become
terms: `=` a distance, `<`/`>` a hinge, `minimize`/`maximize` an objective; macro calls
multiply the weights and intersect the windows of the terms they produce.

The checker has already rejected ill-typed programs; what is left for here is what only
inlining reveals (E1xx, sgl/ir/errors.py). Errors are collected per top-level statement.
"""

from __future__ import annotations

import re
from typing import Iterable, Mapping

import attrs

from sgl.check import errors as check_errors
from sgl.check import words
from sgl.check.program import ORIG, SELF, CheckedProgram, ObjectInfo, SourceInfo
from sgl.check.types import VEC2
from sgl.diagnostics import Diagnostic, SGLError, Span, sorted_diagnostics
from sgl.check.imports import stdlib_key, stdlib_modules
from sgl.ir import errors, passes
from sgl.ir.fold import const, evaluate_const
from sgl.ir.nodes import Graph, Node, Term
from sgl.ir.ops import COMPILE_TIME, COMPUTED, INTRINSICS, LEAF_INTRINSICS, OP_OF_SYMBOL, result_type
from sgl.ir.printer import fmt_const
from sgl.ir.program import EnergyProgram
from sgl.ir.ranges import contains, value_range
from sgl.ir.walk import reads
from sgl.syntax import ast

Value = Node | ObjectInfo | SourceInfo | str | tuple  # a tuple is a compile-time list


class LoweringBug(AssertionError):
    """Something the checker should have rejected reached the lowering (a compiler bug)."""


class _Failed(Exception):
    """Stops lowering one statement; the diagnostic is collected and lowering goes on."""

    def __init__(self, diagnostic: Diagnostic):
        self.diagnostic = diagnostic


@attrs.frozen
class _Ctx:
    """Where the evaluator is.

    - `env`: local names (parameters, `for` variables, block `let`s) of the current function.
    - `source`: the run that `attn`/`feat` read here; `source_at` is the call that chose it.
    - `call_site`: the innermost call written in a user file (where read errors point).
    - `stmt_site`: the innermost constraint statement written in a user file (term spans).
    - `outer`: the top-level statement being lowered (the start of every term's label).
    - `weight`, `window`: the product / intersection of the enclosing macro calls' modifiers;
      `window_at` is the innermost call's `from … to …` in a user file.
    - `bindings`: the values of the enclosing `for` variables, for labels.
    - `stack`: functions being inlined, outermost first (recursion guard).
    """

    env: Mapping[str, Value]
    source: str = SELF
    source_at: Span | None = None
    source_param: bool = False   # the source was named by a variable (an Image parameter, …)
    call_site: Span | None = None
    stmt_site: Span | None = None
    outer: ast.Stmt | None = None
    weight: float = 1.0
    window: tuple[float, float] = (0.0, 1.0)
    window_at: Span | None = None
    bindings: tuple[tuple[str, str], ...] = ()
    stack: tuple[str, ...] = ()


class _Lowerer:
    def __init__(self, checked: CheckedProgram):
        self.checked = checked
        self.graph = Graph()
        self.terms: list[Term] = []
        self.diagnostics: list[Diagnostic] = []
        self.prompt = checked.settings.get("prompt", "")
        self.source_words = {name: set(words.words_of(info.prompt)) for name, info in checked.sources.items()}
        self.source_words.setdefault(SELF, set(words.words_of(self.prompt)))
        self.source_words.setdefault(ORIG, set(words.words_of(self.prompt)))
        self.caption_words = {w for info in checked.sources.values() if info.kind in ("generate", "load")
                              for w in words.words_of(info.prompt)}
        self.objects: dict[str, ObjectInfo] = dict(checked.objects)
        self._lets: dict[str, Value] = {}
        self._lets_in_progress: set[str] = set()
        self._stdlib_files = _stdlib_files()
        self._ranges: dict = {}            # id(node) → value range (ir/ranges.py), shared by the warnings

    # ------------------------------------------------------------------------- statements

    def program(self) -> None:
        for stmt in self.checked.body:
            ctx = _Ctx(env={}, outer=stmt)
            try:
                self.stmt(stmt, ctx, {})
            except _Failed as failed:
                self.diagnostics.append(failed.diagnostic)

    def block(self, stmts: Iterable[ast.Stmt], ctx: _Ctx) -> None:
        env = dict(ctx.env)
        for stmt in stmts:
            self.stmt(stmt, ctx, env)

    def stmt(self, stmt: ast.Stmt, ctx: _Ctx, env: dict) -> None:
        """Lower one statement; a block `let` adds to `env` for the statements after it."""
        ctx = attrs.evolve(ctx, env=env) if env is not ctx.env else ctx
        if isinstance(stmt, (ast.Constraint, ast.Objective, ast.Apply)) and self.is_user(stmt.span):
            ctx = attrs.evolve(ctx, stmt_site=stmt.span)
        if isinstance(stmt, ast.Constraint):
            self.constraint(stmt, ctx)
        elif isinstance(stmt, ast.Objective):
            self.objective(stmt, ctx)
        elif isinstance(stmt, ast.Apply):
            self.apply(stmt, ctx)
        elif isinstance(stmt, ast.For):
            self.for_loop(stmt, ctx)
        elif isinstance(stmt, ast.Let):
            env[stmt.name] = self.expr(stmt.value, ctx)
        # Settings, definitions and declarations carry no energy; the checker placed them.

    def for_loop(self, stmt: ast.For, ctx: _Ctx) -> None:
        items = self.expr(stmt.iterable, ctx)
        if not isinstance(items, tuple):
            raise LoweringBug(f"`for` over a non-list {items!r}")
        for item in items:
            binding = (stmt.var, self.describe(item))
            self.block(stmt.body, attrs.evolve(ctx, env={**ctx.env, stmt.var: item},
                                               bindings=ctx.bindings + (binding,)))

    def apply(self, stmt: ast.Apply, ctx: _Ctx) -> None:
        call = stmt.call
        fn = self.function(call.func)
        if not isinstance(fn.body, tuple):
            raise LoweringBug(f"`{call.func}` used as a statement is not a constraint macro")
        weight, window = self.modifiers(stmt.modifiers, ctx)
        args = tuple(self.expr(a, ctx) for a in call.args)
        inner = self.enter(fn, call, ctx, weight=weight, window=window)
        written = next((m for m in stmt.modifiers if isinstance(m, ast.Window)), None)
        if written is not None and self.is_user(written.span):
            inner = attrs.evolve(inner, window_at=written.span)
        inner = attrs.evolve(inner, env=self.bind(fn, args, inner))
        self.block(fn.body, inner)

    def constraint(self, stmt: ast.Constraint, ctx: _Ctx) -> None:
        lhs, rhs = self.node(stmt.lhs, ctx), self.node(stmt.rhs, ctx)
        weight, window = self.modifiers(stmt.modifiers, ctx)
        if stmt.op == "=":
            distance = next((m.distance for m in stmt.modifiers if isinstance(m, ast.Using)), "l1")
            root = self.op(distance, lhs, rhs)
            kind = "eq"
        else:
            small, big = (lhs, rhs) if stmt.op in ("<", "<=") else (rhs, lhs)
            excess = self.op("sub", small, big)
            margin = next((m for m in stmt.modifiers if isinstance(m, ast.Margin)), None)
            if margin is not None:
                excess = self.op("add", excess, self.node(margin.value, ctx))
            root = self.op("hinge", excess)
            kind, distance = "ineq", "hinge"
        self.add_term(stmt, root, kind, distance, weight, window, ctx)
        if kind == "eq":
            self.warn_unreachable(stmt, lhs, rhs, ctx)
        else:
            self.warn_settled(stmt, lhs, rhs, root.inputs[0], ctx)

    def objective(self, stmt: ast.Objective, ctx: _Ctx) -> None:
        value = self.node(stmt.expr, ctx)
        root = value if stmt.kind == "minimize" else self.op("neg", value)
        weight, window = self.modifiers(stmt.modifiers, ctx)
        self.add_term(stmt, root, "objective", "objective", weight, window, ctx)

    def add_term(self, stmt, root: Node, kind: str, distance: str, weight: float,
                 window: tuple[float, float], ctx: _Ctx) -> None:
        span = ctx.stmt_site or stmt.span
        read_sources = sorted({leaf.arg[0] for leaf in reads(root)})
        if SELF not in read_sources:
            outer = ctx.outer.span if ctx.outer is not None else None
            raise _Failed(errors.independent_of_image(span, read_sources, outer))
        if window[0] >= window[1]:
            own = next((m for m in getattr(stmt, "modifiers", ()) if isinstance(m, ast.Window)), None)
            inner = (own.start / 100.0, own.end / 100.0) if own is not None else (0.0, 1.0)
            self.diagnostics.append(errors.never_active(span, inner, ctx.window, ctx.window_at))
        self.terms.append(Term(root, weight, window, kind, distance, self.label(stmt, ctx), span))

    def modifiers(self, modifiers: Iterable, ctx: _Ctx) -> tuple[float, tuple[float, float]]:
        """The weight and window of a statement, combined with those of enclosing macro calls."""
        weight, (start, end) = ctx.weight, ctx.window
        for mod in modifiers:
            if isinstance(mod, ast.Weight):
                value = evaluate_const(self.node(mod.value, ctx))
                if not isinstance(value, float):
                    raise _Failed(errors.weight_not_constant(mod.span if self.is_user(mod.span) else ctx.stmt_site))
                weight *= value
            elif isinstance(mod, ast.Window):
                start, end = max(start, mod.start / 100.0), min(end, mod.end / 100.0)
        return weight, (start, max(start, end))

    # ------------------------------------------------------------------------- expressions

    def node(self, expr: ast.Expr, ctx: _Ctx) -> Node:
        value = self.expr(expr, ctx)
        if not isinstance(value, Node):
            raise LoweringBug(f"expected a value, found {value!r}")
        return value

    def expr(self, expr: ast.Expr, ctx: _Ctx) -> Value:
        if isinstance(expr, ast.Number):
            return const(self.graph, float(expr.value))
        if isinstance(expr, ast.String):  # a file path (`mask("…")`), as the checker resolved it
            return self.checked.paths.get(id(expr), expr.value)
        if isinstance(expr, ast.Name):
            return self.name(expr.id, ctx)
        if isinstance(expr, ast.Tuple):
            a, b = (self.node(item, ctx) for item in expr.items)
            return self.op("pack", a, b)
        if isinstance(expr, ast.ListExpr):
            return tuple(self.expr(item, ctx) for item in expr.items)
        if isinstance(expr, ast.BinOp):
            return self.op(OP_OF_SYMBOL[expr.op], self.node(expr.left, ctx), self.node(expr.right, ctx))
        if isinstance(expr, ast.Neg):
            return self.op("neg", self.node(expr.operand, ctx))
        if isinstance(expr, ast.Attribute):
            return self.op("get_" + expr.attr, self.node(expr.value, ctx))
        if isinstance(expr, ast.Call):
            return self.call(expr, ctx)
        raise LoweringBug(f"unknown expression {expr!r}")

    def op(self, op: str, *inputs: Node) -> Node:
        type = result_type(op, tuple(i.type for i in inputs))
        if type is None:
            raise LoweringBug(f"`{op}` on ({', '.join(str(i.type) for i in inputs)})")
        return self.graph.node(op, type, inputs)

    def name(self, name: str, ctx: _Ctx) -> Value:
        if name in ctx.env:
            return ctx.env[name]
        if name in self.checked.lets:
            return self.let(name)
        if name in self.objects:
            return self.objects[name]
        if name in self.checked.sources:
            return self.checked.sources[name]
        if name in self.source_words[SELF] or name in self.caption_words:
            info = ObjectInfo(name, name, (name,), declared=False)
            self.objects[name] = info
            return info
        raise LoweringBug(f"unresolved name `{name}`")

    def held_source(self, name: str, ctx: _Ctx) -> str:
        """The run an Image variable (a parameter, a `for` variable, a `let`) holds."""
        info = self.name(name, ctx)
        if not isinstance(info, SourceInfo):
            raise LoweringBug(f"source `{name}` holds {info!r}, not an image")
        return info.name

    def let(self, name: str) -> Value:
        """A top-level `let`, lowered once, on first use, in a scope of its own."""
        if name not in self._lets:
            if name in self._lets_in_progress:
                raise LoweringBug(f"`let {name}` refers to itself")
            self._lets_in_progress.add(name)
            self._lets[name] = self.expr(self.checked.lets[name], _Ctx(env={}))
            self._lets_in_progress.discard(name)
        return self._lets[name]

    def call(self, call: ast.Call, ctx: _Ctx) -> Value:
        if self.is_user(call.span):
            ctx = attrs.evolve(ctx, call_site=call.span)
        if call.func in COMPILE_TIME:
            return self.compile_time_list(call, ctx)
        args = tuple(self.expr(a, ctx) for a in call.args)  # in the caller's source
        if call.source is not None:
            name = call.source.name
            held = name in ctx.env or name in self.checked.lets   # a variable holding an Image
            ctx = attrs.evolve(ctx, source=self.held_source(name, ctx) if held else name, source_at=call.span,
                               source_param=held)
        fn = self.function(call.func)
        if fn.extern:
            return self.intrinsic(call, fn, args, ctx)
        if isinstance(fn.body, tuple):
            raise LoweringBug(f"constraint macro `{call.func}` used as a value")
        inner = self.enter(fn, call, ctx)
        inner = attrs.evolve(inner, env=self.bind(fn, args, inner))
        return self.expr(fn.body, inner)

    def compile_time_list(self, call: ast.Call, ctx: _Ctx) -> tuple:
        declared = [o for o in self.objects.values() if o.declared]
        everything = words.prompt_objects(self.prompt, declared)
        for info in everything:
            self.objects.setdefault(info.name, info)
        if call.func == "objects":
            return everything
        (target,) = (self.expr(a, ctx) for a in call.args)
        if not isinstance(target, ObjectInfo):
            raise LoweringBug(f"`others` of a non-object {target!r}")
        return words.others(everything, target)

    def intrinsic(self, call: ast.Call, fn: ast.FnDef, args: tuple, ctx: _Ctx) -> Node:
        if call.func in LEAF_INTRINSICS:
            return self.leaf(call, args, ctx)
        args = args + tuple(self.expr(p.default, ctx) for p in fn.params[len(args):] if p.default is not None)
        if call.func not in INTRINSICS:
            raise LoweringBug(f"no IR op for intrinsic `{call.func}`")
        return self.op(call.func, *args)

    def leaf(self, call: ast.Call, args: tuple, ctx: _Ctx) -> Node:
        type = LEAF_INTRINSICS[call.func]
        if call.func == "attn":
            (obj,) = args
            self.check_words(obj, ctx)
            return self.graph.node("attn", type, (), (ctx.source, obj.words))
        if call.func == "feat":
            return self.graph.node("feat", type, (), (ctx.source, "default"))
        if call.func in COMPUTED:  # latent(), pixels(): the pseudo layer of the same name
            return self.graph.node(call.func, type, (), (ctx.source, call.func))
        if call.func == "mask":
            (path,) = args
            return self.graph.node("mask", type, (), path)
        return self.graph.node(call.func, type)

    def check_words(self, obj: ObjectInfo, ctx: _Ctx) -> None:
        """An object can only be read from a run whose prompt has all of its words."""
        known = self.source_words.get(ctx.source)
        if known is None:
            raise LoweringBug(f"unknown source `{ctx.source}`")
        missing = next((w for w in obj.words if w not in known), None)
        if missing is not None:
            info = self.checked.sources.get(ctx.source)
            prompt = info.prompt if info is not None else self.prompt
            read_at = ctx.source_at if ctx.source_at is not None and self.is_user(ctx.source_at) else None
            shared = [w for w in obj.words if w in known]
            span = ctx.call_site or ctx.stmt_site
            # a source that came in through a parameter: show the statement that passed it
            outer = ctx.outer.span if ctx.outer is not None and ctx.source_param else None
            called_at = outer if outer is not None and span is not None and not _within(span, outer) else None
            raise _Failed(errors.object_not_in_source(obj.name, obj.words, missing, ctx.source, prompt, shared,
                                                      span, read_at, called_at))

    # ------------------------------------------------------------------------- functions

    def function(self, name: str) -> ast.FnDef:
        overloads = self.checked.functions.get(name)
        if not overloads:
            raise LoweringBug(f"unknown function `{name}`")
        return overloads[0]

    def enter(self, fn: ast.FnDef, call: ast.Call, ctx: _Ctx, weight: float = 1.0,
              window: tuple[float, float] = (0.0, 1.0)) -> _Ctx:
        if fn.name in ctx.stack:
            raise _Failed(errors.recursive_call(ctx.stack[ctx.stack.index(fn.name):] + (fn.name,),
                                                ctx.call_site or call.span))
        return attrs.evolve(ctx, env={}, stack=ctx.stack + (fn.name,), weight=weight, window=window)

    def bind(self, fn: ast.FnDef, args: tuple, ctx: _Ctx) -> dict[str, Value]:
        """Parameters → argument values; missing ones take their defaults, evaluated inside
        the function (they see the parameters before them)."""
        env: dict[str, Value] = {}
        for index, param in enumerate(fn.params):
            if index < len(args):
                env[param.name] = args[index]
            elif param.default is not None:
                env[param.name] = self.expr(param.default, attrs.evolve(ctx, env=dict(env)))
            else:
                raise LoweringBug(f"`{fn.name}` called without `{param.name}`")
        return env

    # ------------------------------------------------------------------------- helpers

    def warn_unreachable(self, stmt: ast.Constraint, lhs: Node, rhs: Node, ctx: _Ctx) -> None:
        """`a = c` with a constant c outside every value a can take (W001 for a point of the
        image, W021 otherwise). The other side's range, not c alone, decides: a difference of
        two centroids may well be (-0.3, 0)."""
        for side, other, expr in ((lhs, rhs, stmt.lhs), (rhs, lhs, stmt.rhs)):
            value = evaluate_const(side)
            found = None if value is None else value_range(other, self._ranges)
            if found is None or len(found) != (2 if isinstance(value, tuple) else 1) or contains(found, value):
                continue
            span = expr.span if self.is_user(expr.span) else (ctx.stmt_site or expr.span)
            if other.type == VEC2 and all(lo >= 0.0 and hi <= 1.0 for lo, hi in found):
                self.diagnostics.append(check_errors.target_outside(value, span))
            else:
                self.diagnostics.append(errors.out_of_reach(value, found, self.label(stmt, ctx), span))

    def warn_settled(self, stmt: ast.Constraint, lhs: Node, rhs: Node, excess: Node, ctx: _Ctx) -> None:
        """An inequality whose hinge is positive for every value its sides can take (it can
        never hold: W021) or never positive (it always holds and guides nothing: W022)."""
        found = value_range(excess, self._ranges)
        if found is None or found[0][0] <= 0.0 < found[0][1]:
            return
        lo = found[0][0]
        sides = (value_range(lhs, self._ranges), value_range(rhs, self._ranges))
        span = ctx.stmt_site or stmt.span
        self.diagnostics.append(errors.settled_inequality(lo > 0.0, sides, self.label(stmt, ctx), span))

    def is_user(self, span: Span | None) -> bool:
        return span is not None and span.file not in self._stdlib_files

    def text(self, span: Span | None) -> str:
        if span is None:
            return ""
        source = self.checked.texts.get(span.file, "")
        return re.sub(r"\s+", " ", source[span.start:span.end]).strip()

    def label(self, stmt, ctx: _Ctx) -> str:
        """The user's statement as written, then (for a macro) the constraint inside it, then
        the values of the loop variables: `keep(o) › shape(o) = silhouette₀(o)  (o = cat)`."""
        outer = self.text(ctx.outer.span) if ctx.outer is not None else ""
        if isinstance(ctx.outer, ast.For):
            inner_user = ctx.stmt_site if ctx.stmt_site is not None else stmt.span
            outer = self.text(inner_user)
        own = self.text(stmt.span)
        label = outer if own == outer or not own else f"{outer} › {own}"
        if ctx.bindings:
            label += "  (" + ", ".join(f"{var} = {value}" for var, value in ctx.bindings) + ")"
        return label

    @staticmethod
    def describe(value: Value) -> str:
        if isinstance(value, ObjectInfo):
            return value.phrase
        if isinstance(value, SourceInfo):
            return value.name
        if isinstance(value, Node) and value.op == "const":
            return fmt_const(value.arg)
        return "…"


def _stdlib_files() -> frozenset[str]:
    return frozenset(stdlib_key(name) for name in stdlib_modules())


def lower(checked: CheckedProgram, optimize: bool = True) -> EnergyProgram:
    """Lower a checked program to its energy IR, optimised unless `optimize=False` (both
    compute the same energy). Raises SGLError with every lowering error found."""
    lowerer = _Lowerer(checked)
    lowerer.program()
    found = sorted_diagnostics([*checked.warnings, *lowerer.diagnostics])
    if any(d.is_error for d in found):
        raise SGLError(found, checked.texts)
    graph, terms = passes.compact(lowerer.terms)
    program = EnergyProgram(
        terms=terms, requirements=passes.requirements(terms, checked.settings.get("layers")),
        graph=graph, settings=dict(checked.settings), sources=dict(checked.sources),
        objects=dict(lowerer.objects), warnings=tuple(found), texts=dict(checked.texts),
        file=checked.file, optimized=False, setting_spans=dict(checked.setting_spans))
    return passes.optimize(program) if optimize else program


def _within(inner: Span, outer: Span) -> bool:
    """`inner` lies inside `outer` (same file)."""
    return inner.file == outer.file and outer.start <= inner.start and inner.end <= outer.end
