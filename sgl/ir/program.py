"""`EnergyProgram`: what the compiler hands to the runtime — the terms, what they read, and
everything needed to run and report them. Plain data, no torch."""

from __future__ import annotations

import attrs

from sgl.check.program import ObjectInfo, SourceInfo
from sgl.diagnostics import Diagnostic, Span
from sgl.ir.nodes import Graph, Requirements, Term


@attrs.frozen
class EnergyProgram:
    """A lowered (and, unless asked otherwise, optimised) program.

    - `terms`: the energy terms in source order; the energy is Σ weight · root over active terms.
    - `requirements`: per source, the attention words, feature layers and steps the terms read.
    - `graph`: the intern table holding every node reachable from the terms.
    - `settings`: as written in the program (see CheckedProgram.settings); defaults are the
      runtime's business.
    - `sources`: "self", "orig" and every `image`, by name.
    - `objects`: every object the program names, by name.
    - `warnings`: non-fatal diagnostics of all phases.
    - `texts`: the source text of every file read, by file name (to render diagnostics).
    - `optimized`: whether the passes ran.
    - `setting_spans`: where each setting was written (for errors the runtime finds in a value,
      such as a layer the model does not have).
    """

    terms: tuple[Term, ...]
    requirements: Requirements
    graph: Graph
    settings: dict
    sources: dict[str, SourceInfo]
    objects: dict[str, ObjectInfo]
    warnings: tuple[Diagnostic, ...] = ()
    texts: dict[str, str] = attrs.field(factory=dict)
    file: str = "<input>"
    optimized: bool = True
    setting_spans: dict[str, Span] = attrs.field(factory=dict)
