"""Every diagnostic the lowering can raise (E1xx). Constructors take data; the words live here.

These are mistakes only visible once functions are inlined and sources bound: which words a
source's prompt really has, and whether a constraint reads the image being generated.
"""

from __future__ import annotations

from typing import Sequence

from sgl.diagnostics import Diagnostic, Label, Span


def _origin(call: Span | None, span: Span | None, what: str) -> tuple[Label, ...]:
    """A secondary label pointing at where the value came from, when that is elsewhere."""
    if call is None or span is None or call == span:
        return ()
    return (Label(call, what),)


def object_not_in_source(name: str, words: Sequence[str], missing: str, source: str, prompt: str,
                         shared: Sequence[str], span: Span | None, read_at: Span | None = None) -> Diagnostic:
    phrase = " ".join(words)
    where = "the prompt" if source == "self" else f"the prompt of `{source}`"
    if shared:
        hint = (f"declare the object by words both prompts have, "
                f"e.g. `object {name} = \"{' '.join(shared)}\"`")
    else:
        hint = f"read `{phrase}` from a source whose prompt mentions it"
    return Diagnostic(
        "E101", f"`{missing}` is not a word of {where}", span, hint=hint,
        notes=(f"`{source}` is generated from \"{prompt}\": only its words have attention maps"
               + (f", and `{name}` stands for \"{phrase}\"" if phrase != name else ""),),
        labels=_origin(read_at, span, f"`{name}` is read from `{source}` here"))


def recursive_call(chain: Sequence[str], span: Span | None) -> Diagnostic:
    arrow = " → ".join(f"`{name}`" for name in chain)
    return Diagnostic("E102", f"recursive function: {arrow}", span,
                      notes=("functions are inlined at compile time, so they cannot call themselves",))


def independent_of_image(span: Span | None, sources: Sequence[str], used_at: Span | None = None) -> Diagnostic:
    if sources:
        read = ", ".join(f"`{s}`" for s in sources)
        note = f"this constraint reads only {read} and constants, which sampling cannot change"
        hint = "read one side from the generated image: drop the `₀` or `[…]` source on one side"
    else:
        note = "this constraint is made of constants, which sampling cannot change"
        hint = "constrain a property of the generated image, such as `size(o)` or `centroid(o)`"
    return Diagnostic("E103", "constraint does not depend on the image being generated", span,
                      hint=hint, notes=(note,), labels=_origin(used_at, span, "used here"))


def weight_not_constant(span: Span | None) -> Diagnostic:
    return Diagnostic("E104", "a weight must be a constant", span,
                      notes=("weights are numbers known before sampling; this one reads a run or divides by zero",))
