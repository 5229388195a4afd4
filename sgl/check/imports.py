"""Reading the files a program uses: the implicit prelude and core, `use edits`, `use "f.sgl"`.

Every file is read once, however many times it is used; a file that is reached again while it
is still being read is an import cycle. Each module remembers the `use` statements that led to
it (nearest first), so that a diagnostic inside it can show the import chain.
"""

from __future__ import annotations

import functools
import hashlib
import os
import pickle
from pathlib import Path
from typing import Callable

import attrs

from sgl.check import errors
from sgl.diagnostics import Diagnostic, SGLError, Span
from sgl.resources import stdlib_dir
from sgl.suggest import did_you_mean
from sgl.syntax import ast

IMPLICIT = ("prelude", "core")   # imported into every program, in this order
Loader = Callable[[str], str]    # path → text; raises OSError (or KeyError) when missing


@attrs.frozen
class Module:
    """One file of the program. `key` identifies it (a normalised path or `stdlib/NAME.sgl`)."""

    key: str
    program: ast.Program
    stdlib: bool
    included_from: tuple[Span, ...] = ()


@functools.lru_cache(maxsize=None)
def stdlib_modules() -> tuple[str, ...]:
    return tuple(sorted(p.stem for p in stdlib_dir().glob("*.sgl")))


def stdlib_key(name: str) -> str:
    return f"stdlib/{name}.sgl"


@functools.lru_cache(maxsize=None)
def _stdlib_source(name: str) -> tuple[str, ast.Program]:
    """Text and AST of a stdlib module, parsed once per process (ASTs are immutable) and kept
    in a per-user cache keyed by the text's hash, so `sgl check` does not re-parse the stdlib."""
    text = (stdlib_dir() / f"{name}.sgl").read_text(encoding="utf-8")
    cached = _cache_file(name, text)
    if cached is not None:
        try:
            with open(cached, "rb") as f:
                program = pickle.load(f)
            if isinstance(program, ast.Program):
                return text, program
        except Exception:  # noqa: BLE001 - a missing or stale cache is simply rebuilt
            pass
    from sgl.syntax.parse import parse

    program = parse(text, stdlib_key(name))
    if cached is not None:
        try:
            cached.parent.mkdir(parents=True, exist_ok=True)
            tmp = cached.with_suffix(f".{os.getpid()}.tmp")
            with open(tmp, "wb") as f:
                pickle.dump(program, f)
            os.replace(tmp, cached)
        except OSError:
            pass
    return text, program


def _cache_file(name: str, text: str) -> Path | None:
    """Where the parsed AST of a stdlib module is cached; None when caching is off
    (`SGL_NO_CACHE`). The key covers the text and the parser, so edits to either miss."""
    if os.environ.get("SGL_NO_CACHE"):
        return None
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    key = hashlib.sha256(text.encode() + _ast_version().encode()).hexdigest()[:16]
    return Path(root) / "sgl" / f"stdlib-{name}-{key}.pickle"


@functools.lru_cache(maxsize=None)
def _ast_version() -> str:
    """A fingerprint of the AST classes, the grammar and the parser, so a changed parser misses
    the cache."""
    from sgl.resources import grammar_path

    digest = hashlib.sha256()
    for path in (Path(ast.__file__), Path(ast.__file__).with_name("parse.py"), grammar_path()):
        try:
            digest.update(path.read_bytes())
        except OSError:
            pass
    return digest.hexdigest()


def default_loader(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        return f.read()


class _Reader:
    def __init__(self, loader: Loader | None, texts: dict[str, str]):
        self.loader = loader or default_loader
        self.texts = texts
        self.modules: list[Module] = []
        self.done: set[str] = set()
        self.stack: list[str] = []
        self.diags: list[Diagnostic] = []

    def stdlib(self, name: str, chain: tuple[Span, ...]) -> None:
        key = stdlib_key(name)
        if key in self.done:
            return
        self.done.add(key)
        try:
            text, program = _stdlib_source(name)
        except SGLError as e:  # a broken stdlib is still reported like user code
            self.diags.extend(attrs.evolve(d, included_from=chain) for d in e.diagnostics)
            self.texts.update(e.sources)
            return
        self.texts[key] = text
        self.stack.append(key)
        self.uses(program, chain)
        self.stack.pop()
        self.modules.append(Module(key, program, True, chain))

    def file(self, use: ast.Use, importer: str, chain: tuple[Span, ...]) -> None:
        key = os.path.normpath(os.path.join(os.path.dirname(importer), use.target))
        if key in self.stack:
            start = self.stack.index(key)
            self.diags.append(errors.import_cycle([*self.stack[start:], key], use.span))
            return
        if key in self.done:
            return
        self.done.add(key)
        try:
            text = self.texts[key] if key in self.texts else self.loader(key)
        except (OSError, KeyError):
            self.diags.append(errors.import_not_found(use.target, use.span, key))
            return
        self.texts[key] = text
        from sgl.syntax.parse import parse

        try:
            program = parse(text, key)
        except SGLError as e:
            self.diags.extend(attrs.evolve(d, included_from=chain) for d in e.diagnostics)
            return
        self.stack.append(key)
        self.uses(program, chain)
        self.stack.pop()
        self.modules.append(Module(key, program, False, chain))

    def uses(self, program: ast.Program, chain: tuple[Span, ...]) -> None:
        importer = self.stack[-1]
        for stmt in program.statements:
            if not isinstance(stmt, ast.Use):
                continue
            inner = (stmt.span, *chain)
            if stmt.is_path:
                self.file(stmt, importer, inner)
            elif stmt.target in stdlib_modules():
                self.stdlib(stmt.target, inner)
            else:
                names = stdlib_modules()
                self.diags.append(errors.unknown_module(stmt.target, stmt.span, names,
                                                        did_you_mean(stmt.target, names)))


def read_modules(program: ast.Program, texts: dict[str, str], loader: Loader | None = None
                 ) -> tuple[list[Module], list[Diagnostic]]:
    """All modules of `program` in dependency order (each after the modules it uses), the
    main program last. `texts` receives the text of every file read."""
    reader = _Reader(loader, texts)
    for name in IMPLICIT:
        reader.stdlib(name, ())
    main_key = os.path.normpath(program.file) if not program.file.startswith("<") else program.file
    reader.done.add(main_key)
    reader.stack.append(main_key)
    reader.uses(program, ())
    reader.stack.pop()
    reader.modules.append(Module(program.file, program, False, ()))
    return reader.modules, reader.diags
