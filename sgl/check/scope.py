"""Scopes: what a bare name means at one place in a program.

Lookup goes innermost first: `for` variables and parameters, block `let`s, then the global
scope (top-level `let`, declared `object`, `image`), then words of the main prompt, then words of
an image's caption — the last two are Objects without a declaration.
"""

from __future__ import annotations

from typing import Iterator

import attrs

from sgl.check.program import ObjectInfo
from sgl.check.types import OBJECT, Type
from sgl.diagnostics import Span
from sgl.syntax import ast


@attrs.define(eq=False)
class Binding:
    """What a name is bound to. `kind`: "param", "for", "let" (block-local), "global_let",
    "object", "image". `type` is filled in by type inference when not known up front."""

    name: str
    kind: str
    span: Span | None = None
    type: Type | None = None
    value: ast.Expr | None = None          # the expression of a `let`
    object: ObjectInfo | None = None       # for objects
    owner: ast.FnDef | None = None         # for parameters: their function
    index: int = -1                        # for parameters: position

    @property
    def is_local(self) -> bool:
        return self.kind in ("param", "for", "let")


class Scope:
    """One level of nesting (a function, a `for` body, a block)."""

    def __init__(self, parent: "Scope | GlobalScope"):
        self.parent = parent
        self.bindings: dict[str, Binding] = {}

    def define(self, binding: Binding) -> None:
        self.bindings[binding.name] = binding

    def lookup(self, name: str) -> Binding | None:
        found = self.bindings.get(name)
        return found if found is not None else self.parent.lookup(name)

    def names(self) -> Iterator[str]:
        yield from self.bindings
        yield from self.parent.names()

    def root(self) -> "GlobalScope":
        return self.parent.root()


class GlobalScope:
    """Top-level definitions of every module, then prompt words, then caption words."""

    def __init__(self, prompt_words: tuple[str, ...], caption_words: tuple[str, ...]):
        self.bindings: dict[str, Binding] = {}
        self.prompt_words = prompt_words
        self.caption_words = caption_words
        self.word_objects: dict[str, Binding] = {}  # bare words used as objects, made on demand

    def define(self, binding: Binding) -> None:
        self.bindings[binding.name] = binding

    def lookup(self, name: str) -> Binding | None:
        found = self.bindings.get(name)
        if found is not None:
            return found
        if name in self.word_objects:
            return self.word_objects[name]
        if name in self.prompt_words or name in self.caption_words:
            info = ObjectInfo(name, name, (name,), declared=False)
            binding = Binding(name, "object", type=OBJECT, object=info)
            self.word_objects[name] = binding
            return binding
        return None

    def names(self) -> Iterator[str]:
        yield from self.bindings
        yield from self.prompt_words
        yield from self.caption_words

    def root(self) -> "GlobalScope":
        return self

