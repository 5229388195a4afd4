"""What the checker hands to the lowering pass: a fully resolved, type-correct program.

This is the contract between `sgl.check` and `sgl.ir.lower`. Everything here is plain data.
"""

from __future__ import annotations

import attrs

from sgl.check.types import Type
from sgl.diagnostics import Diagnostic, Span
from sgl.syntax import ast

ORIG = "orig"   # the unguided run with the same prompt and seed
SELF = "self"   # the run being generated (guided); the only source gradients flow through


@attrs.frozen
class ObjectInfo:
    """An object: a declared phrase (`object c = "red car"`) or a bare prompt word (`dog`).

    `words` are the lower-cased words of the phrase; token columns are found by the runtime.
    """

    name: str
    phrase: str
    words: tuple[str, ...]
    declared: bool
    span: Span | None = attrs.field(eq=False, default=None)


@attrs.frozen
class SourceInfo:
    """A run properties can be read from. `kind` is "self", "orig", "generate" or "load".

    `prompt` is the prompt of the run (the caption for `load`), `seed` None means the
    program's seed, `path` is the image file of a `load` (resolved relative to the program).
    """

    name: str
    kind: str
    prompt: str
    seed: int | None = None
    path: str | None = None
    span: Span | None = attrs.field(eq=False, default=None)


@attrs.frozen
class CheckedProgram:
    """A program that passed name resolution and type checking.

    - `settings`: Python values by setting name, only those written in the program or
      imported (prompt: str, negative: str, seed: int, steps: int, cfg: float,
      resolution: (width, height), strength: float, model: str, scheduler: str, layers: str).
      Defaults are applied by the runtime, not here.
    - `prompt_words`: lower-cased words of the main prompt, in order.
    - `objects`: every object the program can name (declared ones and prompt words used).
    - `sources`: "self", "orig" and every `image`.
    - `functions`: every function visible at top level, by name, as AST (user fns, stdlib fns
      and `extern` intrinsics; overloads of one extern share a name → a tuple).
    - `lets`: top-level `let` values by name.
    - `body`: the constraint-producing statements (Constraint, Objective, Apply, For) of the
      main file, in source order.
    - `types`: the type of every expression node, keyed by `id(node)`.
    - `warnings`: non-fatal diagnostics found while checking.
    - `texts`: source text of every file read, by file name (for rendering diagnostics).
    - `calls`: the function each call expression resolved to, keyed by `id(call)` (the
      overload chosen by argument types, for externs with several signatures).
    - `refs`: what each bare name refers to, keyed by `id(name)`: "local" (a parameter, a
      `for` variable or a `let` inside a block), "let" (top level), "object" or "image".
    - `setting_spans`: where each setting of the main file was written.
    - `paths`: file paths named in the program (`load "…"`, `mask("…")`) resolved against the
      program's folder, keyed by `id(string)`.
    """

    settings: dict
    prompt_words: tuple[str, ...]
    objects: dict[str, ObjectInfo]
    sources: dict[str, SourceInfo]
    functions: dict[str, tuple[ast.FnDef, ...]]
    lets: dict[str, ast.Expr]
    body: tuple[ast.Stmt, ...]
    types: dict[int, Type]
    warnings: tuple[Diagnostic, ...] = ()
    texts: dict[str, str] = attrs.field(factory=dict)
    file: str = "<input>"
    calls: dict[int, ast.FnDef] = attrs.field(factory=dict)
    refs: dict[int, str] = attrs.field(factory=dict)
    paths: dict[int, str] = attrs.field(factory=dict)
    setting_spans: dict[str, Span] = attrs.field(factory=dict)
