"""Every diagnostic the lowering can raise (E1xx). Constructors take data; the words live here.

These are mistakes only visible once functions are inlined and sources bound: which words a
source's prompt really has, and whether a constraint reads the image being generated.
"""

from __future__ import annotations

import textwrap
from typing import Sequence

from sgl.diagnostics import Diagnostic, Label, Severity, Span
from sgl.ir.ranges import fmt_interval


def _origin(call: Span | None, span: Span | None, what: str) -> tuple[Label, ...]:
    """A secondary label pointing at where the value came from, when that is elsewhere."""
    if call is None or span is None or call == span:
        return ()
    return (Label(call, what),)


def object_not_in_source(name: str, words: Sequence[str], missing: str, source: str, prompt: str,
                         shared: Sequence[str], span: Span | None, read_at: Span | None = None,
                         called_at: Span | None = None) -> Diagnostic:
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
        labels=_origin(read_at, span, f"`{name}` is read from `{source}` here")
        + _origin(called_at, span, f"`{source}` is passed here"))


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



def never_active(span: Span | None, inner: tuple[float, float], outer: tuple[float, float],
                 used_at: Span | None = None) -> Diagnostic:
    def pct(w: tuple[float, float]) -> str:
        return f"{w[0] * 100:g}% to {w[1] * 100:g}%"

    return Diagnostic("W020", "constraint is never active: its step windows do not overlap", span,
                      severity=Severity.WARNING,
                      hint="widen one of the windows so that they share some steps",
                      notes=(f"the constraint is active from {pct(inner)}, the call around it from {pct(outer)}",),
                      labels=_origin(used_at, span, "window of the call"))

def _values(value) -> str:
    return f"({value[0]:g}, {value[1]:g})" if isinstance(value, tuple) else f"{value:g}"


def _side(name: str, found) -> str:
    """`the left side lies in [0, 1]`, `the right side is 1.3`."""
    if found is None:
        return f"{name} is not known before sampling"
    if all(lo == hi for lo, hi in found):
        return f"{name} is {_values(tuple(lo for lo, _ in found) if len(found) == 2 else found[0][0])}"
    return f"{name} lies in " + " × ".join(fmt_interval(i) for i in found)


def out_of_reach(value, found, label: str, span: Span | None) -> Diagnostic:
    return Diagnostic("W021", f"target {_values(value)} is out of reach", span,
                      severity=Severity.WARNING,
                      hint="pick a target the property can take, or compare with `<` / `>`",
                      notes=(f"in `{label}` {_side('the other side', found)}",))


def settled_inequality(never: bool, sides, label: str, span: Span | None) -> Diagnostic:
    left, right = sides
    where = f"{_side('the left side', left)} and {_side('the right side', right)}"
    if never:
        return Diagnostic("W021", "constraint can never hold", span, severity=Severity.WARNING,
                          hint="loosen the bound (or the margin): it asks for more than any image can give",
                          notes=(f"in `{label}` {where}",))
    return Diagnostic("W022", "constraint always holds, so it guides nothing", span,
                      severity=Severity.WARNING,
                      hint="tighten the bound, or drop the constraint",
                      notes=(f"in `{label}` {where}",))

# ----------------------------------------------------------------------------- long explanations (`sgl explain E103`)

# code → (what it means, a program that reports it, the same program fixed, why the fix works).
# A test runs both programs through the compiler.
_EXPLAINED: dict[str, tuple[str, str, str, str]] = {
    "E101": (
        "An object is read from a run whose prompt does not have all of its words.",
        'prompt "a dog and a cat on a beach"\n'
        'image ref = generate "a blue car in the snow"\n'
        "appearance(dog) = appearance[ref](dog)        # error: `dog` is not a word of the prompt of `ref`\n",
        'prompt "a dog and a cat on a beach"\n'
        'image ref = generate "a brown dog in the snow"\n'
        "appearance(dog) = appearance[ref](dog)\n",
        "Attention maps exist only for the words of the prompt a run was generated from. Read the "
        "object from a run that mentions it, or, for a phrase such as \"purple star\" read from a "
        "run with a red star, declare the object by the words both prompts share "
        "(`object star = \"star\"`).",
    ),
    "E102": (
        "A function calls itself, directly or through others.",
        'prompt "a dog"\nfn grow(o: Object) -> Scalar = grow(o) * 2\nminimize grow(dog)\n',
        'prompt "a dog"\nfn grow(o: Object) -> Scalar = size(o) * 2\nminimize grow(dog)\n',
        "Functions are inlined when a program is compiled, so a recursive one would never end. "
        "The checker reports this as E037; E102 is the lowering's own guard.",
    ),
    "E103": (
        "A constraint does not read the image being generated, so sampling cannot change its energy.",
        'prompt "a red circle and a blue square"\n'
        "size₀(circle) = 0.3                            # error: reads only `orig`\n",
        'prompt "a red circle and a blue square"\n'
        "size(circle) = 0.3\n",
        "Both sides read other runs (`orig`, images) or constants. At least one side must read the "
        "run being generated: a property written without a source, like `size(circle)`.",
    ),
    "W020": (
        "A constraint inside a macro can never be active: its window and the call's do not overlap.",
        'prompt "a dog"\nfn early(o: Object) { size(o) = size₀(o) from 0% to 30% }\n'
        "early(dog) from 50% to 100%                    # warning: never active\n",
        'prompt "a dog"\nfn early(o: Object) { size(o) = size₀(o) from 0% to 30% }\n'
        "early(dog) from 10% to 100%\n",
        "A call's window intersects the windows of the constraints inside the macro: here the "
        "constraint runs in the first 30% of the steps, the call only in the last half, so it never "
        "runs and is dropped.",
    ),
    "W021": (
        "A constraint asks for a value its property can never take.",
        'prompt "a red circle and a blue square"\n'
        "centroid(circle).x > 1.2                       # warning: x runs from 0 to 1\n",
        'prompt "a red circle and a blue square"\n'
        "centroid(circle).x > 0.7\n",
        "The compiler knows the range of every property: positions and attention lie in [0, 1], "
        "so do sizes, `mass_in` and `overlap`; the distance of two centroids is at most √2. A "
        "target outside that range (`size(o) = 1.5`) or a bound beyond it (`apart(a, b, 2)`) "
        "pulls for the whole run without ever being met.",
    ),
    "W022": (
        "An inequality holds for every image, so it adds no guidance.",
        'prompt "a red circle and a blue square"\n'
        "centroid(circle).x < 1.2                       # warning: always true\n",
        'prompt "a red circle and a blue square"\n'
        "centroid(circle).x < 0.4\n",
        "A hinge is zero when its inequality holds, and this one holds for every value its sides "
        "can take (positions lie in [0, 1]): the term is zero at every step. The bound was "
        "probably meant to be inside the image.",
    ),
    "E104": (
        "A weight is not a number known before sampling.",
        'prompt "a dog"\nsize(dog) = 0.2 weight 1 / 0\n',
        'prompt "a dog"\nsize(dog) = 0.2 weight 2\n',
        "Weights scale a term's energy and are fixed for the whole run. The checker reports weights "
        "that read a run as E075; what is left here is arithmetic without a finite value.",
    ),
}

EXAMPLES: dict[str, tuple[str, str]] = {code: (bad, good) for code, (_, bad, good, _) in _EXPLAINED.items()}


def _explanation(summary: str, bad: str, good: str, why: str) -> str:
    indent = lambda text: "".join(f"    {line}\n" for line in text.splitlines())  # noqa: E731
    return f"{summary}\n\n{indent(bad)}\n{textwrap.fill(why, 92)}\n\nFixed:\n\n{indent(good)}"


EXPLANATIONS: dict[str, str] = {code: _explanation(*entry) for code, entry in _EXPLAINED.items()}
