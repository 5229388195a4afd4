"""`check`: from a parsed program to a `CheckedProgram`, in phases with barriers.

imports → settings → names → types → constants. Every phase reports all of its errors at
once; a later phase runs only when the earlier ones found none, so a mistake is reported once,
where it was made, and not again as the consequences it has downstream.
"""

from __future__ import annotations

import os

import attrs

from sgl.check import errors
from sgl.check.consts import ConstChecker
from sgl.check.effects import useless_sources
from sgl.check.imports import Loader, Module, read_modules
from sgl.check.infer import Inferer
from sgl.check.program import CheckedProgram
from sgl.check.resolve import CONSTRAINT_STMTS, Resolver
from sgl.check.settings import check_settings
from sgl.diagnostics import Diagnostic, SGLError, Span
from sgl.syntax import ast
from sgl.suggest import did_you_mean

_REF_KINDS = {"param": "local", "for": "local", "let": "local", "global_let": "let",
              "object": "object", "image": "image"}


class _Phases:
    """Collects diagnostics across phases and stops at the first phase with errors."""

    def __init__(self, texts: dict[str, str]):
        self.texts = texts
        self.diags: list[Diagnostic] = []
        self.modules: list[Module] = []

    def add(self, diags) -> None:
        self.diags.extend(diags)

    def barrier(self) -> None:
        if any(d.is_error for d in self.diags):
            raise SGLError(self._with_chains(), self.texts)

    def warnings(self) -> tuple[Diagnostic, ...]:
        return tuple(d for d in self._with_chains() if not d.is_error)

    def _with_chains(self) -> list[Diagnostic]:
        """Diagnostics inside imported files get the `use` chain that reached the file."""
        chains = {m.key: m.included_from for m in self.modules if m.included_from}
        out = []
        for d in self.diags:
            chain = chains.get(d.span.file) if d.span is not None else None
            out.append(attrs.evolve(d, included_from=chain) if chain and not d.included_from else d)
        return out


def check(program: ast.Program, *, texts: dict[str, str] | None = None,
          loader: Loader | None = None, base_dir: str | os.PathLike | None = None) -> CheckedProgram:
    """Check `program` (a parsed main file). `texts` holds source texts by file name (at least
    the main file's, for rendering); `loader(path) -> text` reads `use "file.sgl"` imports
    (default: the file system). Image files (`load "x.png"`, `mask("m.png")`) are resolved
    against the program's folder, or `base_dir` for a program that is not a file on disk, and
    must exist; with neither, they are left as written and not looked for.
    Raises `SGLError` with every error of the first failing phase."""
    texts = dict(texts or {})
    phases = _Phases(texts)

    modules, diags = read_modules(program, texts, loader)
    phases.modules = modules
    phases.add(diags)
    phases.barrier()

    main = modules[-1]
    settings, where, diags = check_settings([s for s in main.program.statements if isinstance(s, ast.Setting)])
    phases.add(diags)
    if "prompt" not in where:
        start = Span(program.file, 1, 1, 1, 1, 0, 0)
        phases.add([errors.missing_prompt(start)])
    if "prompt" not in settings:
        phases.barrier()

    on_disk = not program.file.startswith("<") and os.path.exists(program.file)
    base = os.path.dirname(program.file) if on_disk else (os.fspath(base_dir) if base_dir is not None else None)
    resolver = Resolver(modules, settings.get("prompt", ""), base, where.get("prompt"))
    resolver.run()
    phases.add(resolver.diags)
    phases.add(_start_problems(settings, where, resolver.sources))
    phases.barrier()
    phases.add(useless_sources(resolver))

    inferer = Inferer(resolver)
    inferer.run()
    phases.add(inferer.diags)
    phases.barrier()

    consts = ConstChecker(resolver, inferer.chosen)
    consts.run()
    phases.add(consts.diags)
    phases.barrier()

    return _checked(program, resolver, inferer, settings, phases, where)


def _start_problems(settings: dict, where: dict, sources: dict) -> list:
    """`start "p"` must name a loaded (real) image."""
    name = settings.get("start")
    if name is None or (name in sources and sources[name].kind == "load"):
        return []
    loaded = sorted(n for n, info in sources.items() if info.kind == "load")
    return [errors.bad_start(name, where["start"], did_you_mean(name, loaded), loaded)]


def _checked(program: ast.Program, r: Resolver, inf: Inferer, settings: dict, phases: _Phases,
             where: dict) -> CheckedProgram:
    objects = {}
    for binding in list(r.scope.bindings.values()) + list(r.scope.word_objects.values()):
        if binding.kind == "object" and binding.object is not None:
            objects[binding.name] = binding.object
    functions = {name: tuple(i.fn for i in infos) for name, infos in r.functions.items()}
    lets = {b.name: b.value for b in r.scope.bindings.values() if b.kind == "global_let"}
    body = tuple(s for s in program.statements if isinstance(s, CONSTRAINT_STMTS))
    refs = {key: _REF_KINDS[b.kind] for key, b in r.refs.items()}
    return CheckedProgram(
        settings=settings, prompt_words=r.prompt_words, objects=objects, sources=dict(r.sources),
        functions=functions, lets=lets, body=body, types=inf.types, warnings=phases.warnings(),
        texts=phases.texts, file=program.file, calls=inf.chosen, refs=refs, paths=r.paths,
        setting_spans={k: v for k, v in where.items() if v is not None})
