"""Names: what every identifier, call and source in a program refers to.

This is the first phase of checking after imports and settings. It gathers the top-level
definitions of every module into one global namespace (values and functions are separate
namespaces: `let x = 0.3` does not hide the intrinsic `x()`), checks where each statement may
appear, and resolves every name. Types are left to `infer`; nothing here looks at a type
except the written ones (`a: Scalar`).
"""

from __future__ import annotations

import functools
import os
import re

import attrs

from sgl.check import errors
from sgl.check.imports import Module, stdlib_modules
from sgl.check.program import ORIG, ObjectInfo, SourceInfo
from sgl.check.scope import Binding, GlobalScope, Scope
from sgl.check.settings import SETTINGS, is_integer
from sgl.check.types import BASE_TYPES, CONSTRAINT, IMAGE, OBJECT, Type, list_of
from sgl.check.words import STOP_WORDS, words_of
from sgl.diagnostics import Diagnostic, Span
from sgl.resources import stdlib_dir
from sgl.suggest import did_you_mean
from sgl.syntax import ast

RESERVED_SOURCES = ("orig", "self")
DISTANCES = ("l1", "l2")
CONSTRAINT_STMTS = (ast.Constraint, ast.Objective, ast.Apply, ast.For)

_WHAT = {ast.Setting: "a setting", ast.Use: "`use`", ast.ObjectDecl: "an `object` declaration",
         ast.GenerateImage: "an `image` declaration", ast.LoadImage: "an `image` declaration",
         ast.FnDef: "a function definition", ast.Let: "`let`", ast.Constraint: "a constraint",
         ast.Objective: "an objective", ast.Apply: "a constraint", ast.For: "a `for` loop"}


def is_macro(fn: ast.FnDef) -> bool:
    return isinstance(fn.body, tuple)


def _what(stmt) -> str:
    if isinstance(stmt, ast.Setting):
        return f"setting `{stmt.name}`"
    return _WHAT.get(type(stmt), "this statement")


def _stmt_span(stmt) -> Span | None:
    """Where to point at a misplaced statement: a function's name, else the whole statement."""
    if isinstance(stmt, ast.FnDef):
        return stmt.name_span or stmt.span
    return stmt.span


@attrs.define
class FnInfo:
    fn: ast.FnDef
    module: Module
    param_types: tuple[Type | None, ...] = ()
    returns: Type | None = None   # the written return type (CONSTRAINT for macros)


class Resolver:
    """Runs the names phase. Results: `functions` (name → FnInfos), `scope` (the global
    scope: top-level values and the prompt words used as objects), `refs` (id(Name) → Binding),
    `candidates` (id(Call) → FnInfos), `decls` (id(node) → Binding for params, `for`, block
    `let`), `sources`, `paths` and `diags`."""

    def __init__(self, modules: list[Module], prompt: str, base: str | None, prompt_span: Span | None = None):
        self.modules = modules
        self.main = modules[-1]
        self.prompt = prompt
        self.base = base                    # folder that relative image paths start from, or None
        self.prompt_words = words_of(prompt)
        self.functions: dict[str, list[FnInfo]] = {}
        self.refs: dict[int, Binding] = {}
        self.candidates: dict[int, list[FnInfo]] = {}
        self.decls: dict[int, Binding] = {}
        # id(Call) → the variable naming its source (`f[r](…)` with `r` an Image parameter, a
        # `for` variable over images or a `let`): the types phase checks that it holds an Image
        self.source_refs: dict[int, Binding] = {}
        # `orig` and `self` as values: the Image arguments of functions that take a source
        self.runs = {name: Binding(name, "image", type=IMAGE) for name in RESERVED_SOURCES}
        self.sources: dict[str, SourceInfo] = {
            # the runs of the program's own prompt point at it (for the runtime's errors about its words)
            "self": SourceInfo("self", "self", prompt, span=prompt_span),
            ORIG: SourceInfo(ORIG, "orig", prompt, span=prompt_span)}
        self.captions: dict[str, tuple[str, ...]] = {}
        self.paths: dict[int, str] = {}     # id(String) → file path resolved against the program
        self.diags: list[Diagnostic] = []
        self.scope: GlobalScope | None = None
        # Who uses whom, between top-level lets ("let", name) and user functions ("fn", name):
        # a cycle is recursion, which inlining could never finish.
        self.edges: dict[tuple[str, str], set[tuple[str, str]]] = {}
        self._current: tuple[str, str] | None = None   # the let or fn being resolved

    # ------------------------------------------------------------------ driver

    def run(self) -> None:
        self._collect_images()
        caption_words = tuple(w for ws in self.captions.values() for w in ws)
        self.scope = GlobalScope(self.prompt_words, caption_words)
        for module in self.modules:
            self._collect(module)
        for module in self.modules:
            self._resolve_module(module)
        self._check_recursion()

    # ------------------------------------------------------------------ definitions

    def _collect_images(self) -> None:
        for stmt in self.main.program.statements:
            if isinstance(stmt, (ast.GenerateImage, ast.LoadImage)):
                caption = stmt.prompt if isinstance(stmt, ast.GenerateImage) else stmt.caption
                self.captions[stmt.name] = words_of(caption.value)

    def _define_value(self, binding: Binding) -> None:
        first = self.scope.bindings.get(binding.name)
        if first is not None:
            self.diags.append(errors.duplicate_definition(binding.name, binding.span, first.span))
            return
        self.scope.define(binding)

    def _collect(self, module: Module) -> None:
        is_main = module is self.main
        for stmt in module.program.statements:
            if isinstance(stmt, ast.FnDef):
                self._collect_fn(stmt, module)
            elif isinstance(stmt, ast.Let):
                self._define_value(Binding(stmt.name, "global_let", stmt.name_span or stmt.span, value=stmt.value))
            elif isinstance(stmt, ast.ObjectDecl):
                self._collect_object(stmt)
            elif isinstance(stmt, (ast.GenerateImage, ast.LoadImage)) and is_main:
                self._collect_image(stmt)
            elif isinstance(stmt, ast.Use):
                continue
            elif not is_main:
                self.diags.append(errors.not_allowed_in_import(_what(stmt), _stmt_span(stmt)))

    def _collect_fn(self, fn: ast.FnDef, module: Module) -> None:
        span = fn.name_span or fn.span
        if fn.extern and not module.stdlib:
            self.diags.append(errors.extern_outside_stdlib(fn.name, span))
        info = FnInfo(fn, module)
        info.param_types = tuple(self._param_type(p) for p in fn.params)
        seen: set[str] = set()
        defaulted = False
        for p in fn.params:
            if p.name in seen:
                self.diags.append(errors.duplicate_param(p.name, p.span))
            seen.add(p.name)
            if p.default is not None:
                defaulted = True
            elif defaulted:
                self.diags.append(errors.default_order(p.name, p.span))
        if is_macro(fn):
            if fn.returns is not None and self._type(fn.returns) not in (CONSTRAINT, None):
                self.diags.append(errors.bad_signature(fn.name, "a constraint macro returns a Constraint",
                                                       fn.returns.span or span))
            info.returns = CONSTRAINT
        elif fn.returns is not None:
            info.returns = self._type(fn.returns)
        elif fn.extern:
            self.diags.append(errors.bad_signature(fn.name, "an `extern fn` needs a return type", span))
        existing = self.functions.get(fn.name)
        if existing and not (fn.extern and all(e.fn.extern for e in existing)):
            first = existing[0].fn
            self.diags.append(errors.duplicate_definition(fn.name, span, first.name_span or first.span))
            return
        self.functions.setdefault(fn.name, []).append(info)

    def _param_type(self, p: ast.Param) -> Type | None:
        return self._type(p.type)

    def _type(self, t: ast.TypeExpr) -> Type | None:
        if t.name == "List":
            if len(t.args) != 1:
                self.diags.append(errors.unknown_type("List", t.span, None, ["List[T]", *BASE_TYPES]))
                return None
            elem = self._type(t.args[0])
            return None if elem is None else list_of(elem)
        if t.name in BASE_TYPES and not t.args:
            return BASE_TYPES[t.name]
        known = [*BASE_TYPES, "List"]
        self.diags.append(errors.unknown_type(t.name, t.span, did_you_mean(t.name, known), known))
        return None

    def _collect_object(self, decl: ast.ObjectDecl) -> None:
        words = words_of(decl.phrase.value)
        info = ObjectInfo(decl.name, decl.phrase.value, words, declared=True, span=decl.name_span or decl.span)
        if not self._phrase_known(words):
            missing = next((w for w in words if w not in self.prompt_words), decl.phrase.value)
            self.diags.append(errors.phrase_not_in_prompt(decl.phrase.value, missing, decl.phrase.span or decl.span,
                                                          did_you_mean(missing, self.prompt_words)))
        self._define_value(Binding(decl.name, "object", info.span, type=OBJECT, object=info))

    def _phrase_known(self, words: tuple[str, ...]) -> bool:
        if not words:
            return False
        if all(w in self.prompt_words for w in words):
            return True
        return any(all(w in caption for w in words) for caption in self.captions.values())

    def _collect_image(self, stmt) -> None:
        span = stmt.name_span or stmt.span
        if stmt.name in RESERVED_SOURCES:
            self.diags.append(errors.reserved_name(stmt.name, span))
            return
        if isinstance(stmt, ast.GenerateImage):
            seed = None
            if stmt.seed is not None:
                if not is_integer(stmt.seed) or stmt.seed.value < 0:
                    self.diags.append(errors.setting_kind("seed", "an integer", "a number", stmt.seed.span or span,
                                                          "seed 3"))
                else:
                    seed = int(stmt.seed.value)
            info = SourceInfo(stmt.name, "generate", stmt.prompt.value, seed=seed, span=span)
        else:
            path = self._file_path(stmt.path)
            info = SourceInfo(stmt.name, "load", stmt.caption.value, path=path, span=span)
        self._define_value(Binding(stmt.name, "image", span, type=IMAGE))
        self.sources.setdefault(stmt.name, info)

    def _file_path(self, path: ast.String) -> str:
        """The path of a file named in the program, relative to the program's folder; an error
        when the program lives on disk and the file does not."""
        if self.base is None:
            resolved = path.value
        else:
            resolved = os.path.normpath(os.path.join(self.base, path.value))
            if not os.path.exists(resolved):
                self.diags.append(errors.file_not_found(path.value, path.span, resolved))
        self.paths[id(path)] = resolved
        return resolved

    # ------------------------------------------------------------------ bodies

    def _resolve_module(self, module: Module) -> None:
        for stmt in module.program.statements:
            if isinstance(stmt, ast.Let):
                self._current = ("let", stmt.name)
                self.edges.setdefault(self._current, set())
                self.expr(stmt.value, self.scope)
                self._current = None
            elif isinstance(stmt, ast.FnDef):
                self._resolve_fn(stmt)
            elif module is self.main and isinstance(stmt, CONSTRAINT_STMTS):
                self.statement(stmt, self.scope, None)

    def _resolve_fn(self, fn: ast.FnDef) -> None:
        infos = self.functions.get(fn.name, [])
        info = next((i for i in infos if i.fn is fn), None)
        scope = Scope(self.scope)
        for i, p in enumerate(fn.params):
            if p.default is not None:
                self.expr(p.default, self.scope)
            ptype = info.param_types[i] if info else None
            binding = Binding(p.name, "param", p.span, type=ptype, owner=fn, index=i)
            self.decls[id(p)] = binding
            scope.define(binding)
        if fn.body is None:
            return
        self._current = ("fn", fn.name)
        self.edges.setdefault(self._current, set())
        if is_macro(fn):
            self.block(fn.body, scope, fn)
        else:
            self.expr(fn.body, scope)
        self._current = None

    def block(self, stmts, scope: Scope, fn: ast.FnDef | None) -> None:
        inner = Scope(scope)
        for stmt in stmts:
            self.statement(stmt, inner, fn, nested=True)

    def statement(self, stmt, scope, fn: ast.FnDef | None, nested: bool = False) -> None:
        if isinstance(stmt, ast.Constraint):
            if (stmt.op == "=" and isinstance(stmt.lhs, ast.Name) and stmt.lhs.id in SETTINGS
                    and scope.lookup(stmt.lhs.id) is None and isinstance(stmt.rhs, (ast.Number, ast.String))):
                # `steps = 20`: a setting written like an assignment
                self.diags.append(errors.setting_with_equals(stmt.lhs.id, stmt.lhs.span, stmt.rhs))
                return
            self.expr(stmt.lhs, scope)
            self.expr(stmt.rhs, scope)
            self.modifiers(stmt, scope)
        elif isinstance(stmt, ast.Objective):
            self.expr(stmt.expr, scope)
            self.modifiers(stmt, scope)
        elif isinstance(stmt, ast.Apply):
            self.call(stmt.call, scope, statement=True)
            self.modifiers(stmt, scope)
        elif isinstance(stmt, ast.For):
            self.expr(stmt.iterable, scope)
            inner = Scope(scope)
            binding = Binding(stmt.var, "for", stmt.var_span or stmt.span)
            self.decls[id(stmt)] = binding
            inner.define(binding)
            self.block(stmt.body, inner, fn)
        elif isinstance(stmt, ast.Let) and nested:
            self.expr(stmt.value, scope)
            if stmt.name in scope.bindings:
                self.diags.append(errors.duplicate_definition(stmt.name, stmt.name_span or stmt.span,
                                                              scope.bindings[stmt.name].span))
            binding = Binding(stmt.name, "let", stmt.name_span or stmt.span, value=stmt.value)
            self.decls[id(stmt)] = binding
            scope.define(binding)
        else:
            self.diags.append(errors.not_allowed_in_block(_what(stmt), _stmt_span(stmt)))

    def modifiers(self, stmt, scope) -> None:
        seen: dict[type, Span | None] = {}
        names = {ast.Weight: "weight", ast.Window: "from … to …", ast.Using: "using", ast.Margin: "margin"}
        for m in stmt.modifiers:
            if type(m) in seen:
                self.diags.append(errors.duplicate_modifier(names[type(m)], m.span, seen[type(m)]))
                continue
            seen[type(m)] = m.span
            if isinstance(m, ast.Weight):
                self.expr(m.value, scope)
            elif isinstance(m, ast.Margin):
                if not (isinstance(stmt, ast.Constraint) and stmt.op != "="):
                    self.diags.append(errors.margin_not_inequality(m.span))
                else:
                    self.expr(m.value, scope)
            elif isinstance(m, ast.Using):
                if not (isinstance(stmt, ast.Constraint) and stmt.op == "="):
                    self.diags.append(errors.using_not_equality(m.span))
                elif m.distance not in DISTANCES:
                    self.diags.append(errors.unknown_distance(m.distance, m.span))
            elif isinstance(m, ast.Window):
                bad = [v for v in (m.start, m.end) if not 0 <= v <= 100]
                if bad:
                    self.diags.append(errors.window_range(bad[0], m.span))
                elif m.start >= m.end:
                    self.diags.append(errors.window_empty(m.start, m.end, m.span))

    # ------------------------------------------------------------------ expressions

    def expr(self, e, scope) -> None:
        if isinstance(e, ast.Name):
            self.name(e, scope)
        elif isinstance(e, ast.Call):
            self.call(e, scope, statement=False)
        elif isinstance(e, (ast.Tuple, ast.ListExpr)):
            for item in e.items:
                self.expr(item, scope)
        elif isinstance(e, ast.BinOp):
            self.expr(e.left, scope)
            self.expr(e.right, scope)
        elif isinstance(e, ast.Neg):
            self.expr(e.operand, scope)
        elif isinstance(e, ast.Attribute):
            self.expr(e.value, scope)

    def name(self, e: ast.Name, scope) -> None:
        binding = scope.lookup(e.id)
        if binding is not None:
            self.refs[id(e)] = binding
            if binding.kind == "object" and binding.span is None and e.id in STOP_WORDS:
                self.diags.append(errors.stop_word_object(e.id, e.span))
            if binding.kind == "global_let" and self._current is not None:
                self.edges[self._current].add(("let", e.id))
            return
        if e.id in self.functions:
            self.diags.append(errors.function_as_value(e.id, e.span))
            return
        if e.id in RESERVED_SOURCES:
            self.refs[id(e)] = self.runs[e.id]
            return
        if e.id in SETTINGS:
            self.diags.append(errors.setting_as_value(e.id, e.span))
            return
        suggestion = did_you_mean(e.id, scope.names())
        found = scope.lookup(suggestion) if suggestion else None
        declared_at = found.span if found is not None else None
        self.diags.append(errors.unknown_name(e.id, e.span, suggestion, self.prompt_words, declared_at))

    def call(self, e: ast.Call, scope, statement: bool) -> None:
        span = e.func_span or e.span
        infos = self.functions.get(e.func)
        if infos is None:
            self._unknown_function(e.func, span)
        else:
            macro = is_macro(infos[0].fn)
            if macro and not statement:
                self.diags.append(errors.macro_in_expression(e.func, span))
            elif statement and not macro:
                self.diags.append(errors.value_fn_as_statement(e.func, str(infos[0].returns) if infos[0].returns else None,
                                                               span))
            elif macro and e.source is not None:
                self.diags.append(errors.source_on_macro(e.func, e.source.span or span))
            else:
                self.candidates[id(e)] = infos
                if self._current is not None and not infos[0].fn.extern:
                    self.edges[self._current].add(("fn", e.func))
            if e.source is not None and not macro:
                self.source(e, scope, span)
        if e.func == "mask" and e.args and isinstance(e.args[0], ast.String):
            self._file_path(e.args[0])
        for arg in e.args:
            self.expr(arg, scope)

    def source(self, e: ast.Call, scope, span: Span) -> None:
        """`f[r](…)`: `r` is a declared image, `orig`, `self`, or a variable holding an Image
        (a parameter `r: Image`, a `for` variable, a `let`), innermost first."""
        name = e.source.name
        binding = scope.lookup(name)
        if binding is not None and (binding.is_local or binding.kind == "global_let"):
            self.source_refs[id(e)] = binding
            if binding.kind == "global_let" and self._current is not None:
                self.edges[self._current].add(("let", name))
            return
        if name in self.sources:
            return
        names = [s for s in self.sources if s != "self"]
        self.diags.append(errors.unknown_source(name, e.source.span or span, did_you_mean(name, names), names))

    def _unknown_function(self, name: str, span: Span) -> None:
        if name.endswith("0") and name[:-1] in self.functions:  # `centroid0`: the original's value
            self.diags.append(errors.unknown_function(name, span, f"{name[:-1]}_0", None, original=True))
            return
        defined_in = _stdlib_functions()
        module = defined_in.get(name)
        suggestion = did_you_mean(name, self.functions)
        declared_at = None
        if suggestion:
            info = self.functions[suggestion][0]
            declared_at = None if info.module.stdlib else (info.fn.name_span or info.fn.span)
        elif module is None:
            suggestion = did_you_mean(name, defined_in)
            module = defined_in.get(suggestion) if suggestion else None
        self.diags.append(errors.unknown_function(name, span, suggestion, module, declared_at))

    # ------------------------------------------------------------------ recursion

    def _check_recursion(self) -> None:
        reported: set[tuple[str, str]] = set()
        def position(node):
            span = self._span_of(node)
            return (span.file, span.start) if span is not None else ("", -1)

        for start in sorted(self.edges, key=position):
            cycle = _find_cycle(start, self.edges)
            if cycle and not (set(cycle) & reported):
                reported.update(cycle)
                kind = "function" if all(k == "fn" for k, _ in cycle) else \
                    "let" if all(k == "let" for k, _ in cycle) else "definition"
                names = [name for _, name in cycle]
                self.diags.append(errors.recursive(kind, [*names, names[0]], self._span_of(cycle[0])))

    def _span_of(self, node: tuple[str, str]) -> Span | None:
        kind, name = node
        if kind == "fn":
            fn = self.functions[name][0].fn
            return fn.name_span or fn.span
        return self.scope.bindings[name].span


def _find_cycle(start, edges: dict) -> list | None:
    """A cycle through `start`, as the list of names along it, or None (iterative DFS)."""
    stack = [(start, [start])]
    seen: set[str] = set()
    while stack:
        node, path = stack.pop()
        for nxt in sorted(edges.get(node, ())):
            if nxt == start:
                return path
            if nxt not in seen:
                seen.add(nxt)
                stack.append((nxt, [*path, nxt]))
    return None


_FN_LINE = re.compile(r"^\s*fn\s+([A-Za-z_][A-Za-z0-9_]*)", re.M)


@functools.lru_cache(maxsize=None)
def _stdlib_functions() -> dict[str, str]:
    """Function name → the stdlib module defining it (so a missing `use` can be suggested)."""
    found: dict[str, str] = {}
    for module in stdlib_modules():
        text = (stdlib_dir() / f"{module}.sgl").read_text(encoding="utf-8")
        for name in _FN_LINE.findall(text):
            found.setdefault(name, module)
    return found
