"""Every diagnostic the checker can report, in one place.

Checker code calls these constructors with data (names, types, suggestions, spans); the wording
lives only here. Codes are stable: E01x imports and placement, E02x settings, E03x names,
E04x kinds of functions and calls, E05x expression types, E06x statement types, E07x modifiers,
W0xx warnings.
"""

from __future__ import annotations

from typing import Iterable, Sequence

from sgl.diagnostics import Diagnostic, Label, Severity, Span
from sgl.syntax import ast


def _mean(suggestion: str | None) -> str | None:
    return f"did you mean `{suggestion}`?" if suggestion else None


def _label(span: Span | None, message: str) -> tuple[Label, ...]:
    return (Label(span, message),) if span is not None else ()


def _a(type_name: str) -> str:
    """`Object` → "an Object", `Map` → "a Map"."""
    return ("an " if type_name[:1].lower() in "aeiou" else "a ") + type_name


def _list(names: Iterable[str], limit: int = 8) -> str:
    names = list(names)
    shown = ", ".join(f"`{n}`" for n in names[:limit])
    return shown + (", …" if len(names) > limit else "")


# ----------------------------------------------------------------------------- E01x imports

def unknown_module(name: str, span: Span, modules: Sequence[str], suggestion: str | None) -> Diagnostic:
    return Diagnostic("E010", f"unknown stdlib module `{name}`", span,
                      hint=_mean(suggestion) or f"stdlib modules: {_list(modules)}",
                      notes=("`use \"file.sgl\"` (with quotes) imports a file",))


def import_not_found(path: str, span: Span, resolved: str) -> Diagnostic:
    return Diagnostic("E011", f"cannot read imported file `{path}`", span,
                      hint="check the path: it is relative to the importing file",
                      notes=(f"looked for `{resolved}`",))


def import_cycle(chain: Sequence[str], span: Span) -> Diagnostic:
    arrow = " → ".join(f"`{c}`" for c in chain)
    return Diagnostic("E012", f"import cycle: {arrow}", span,
                      hint="move the shared definitions into a file that both can `use`")


def not_allowed_in_import(what: str, span: Span) -> Diagnostic:
    return Diagnostic("E013", f"{what} is not allowed in an imported file", span,
                      hint="move it into the main program",
                      notes=("a file read with `use` may only define `fn`, `let` and `object`",))


def extern_outside_stdlib(name: str, span: Span) -> Diagnostic:
    return Diagnostic("E014", f"`extern fn {name}` is only allowed in the standard library", span,
                      notes=("intrinsics are implemented in Python; see stdlib/prelude.sgl",),
                      hint="write the function in SGL with `fn … = expr`")


def not_allowed_in_block(what: str, span: Span) -> Diagnostic:
    return Diagnostic("E015", f"{what} is not allowed inside a block", span,
                      hint="move it to the top level of the file",
                      notes=("a `{ … }` block may hold constraints, `for` loops and `let`",))


# ----------------------------------------------------------------------------- E02x settings

def unknown_setting(name: str, span: Span, suggestion: str | None, known: Sequence[str]) -> Diagnostic:
    return Diagnostic("E020", f"unknown setting `{name}`", span,
                      hint=_mean(suggestion) or f"settings are {_list(known, 20)}")


def duplicate_setting(name: str, span: Span, first: Span | None) -> Diagnostic:
    return Diagnostic("E021", f"setting `{name}` is given twice", span,
                      labels=_label(first, "first given here"), hint="remove one of them")


def setting_kind(name: str, expected: str, found: str, span: Span, example: str) -> Diagnostic:
    return Diagnostic("E022", f"setting `{name}` expects {expected}, found {found}", span,
                      hint=f"for example: `{example}`")


def missing_prompt(span: Span) -> Diagnostic:
    return Diagnostic("E023", "program has no `prompt`", span,
                      hint='add a line such as `prompt "a red circle and a blue square"`',
                      notes=("the prompt says what to generate; constraints name its words",))


def setting_range(name: str, requirement: str, span: Span) -> Diagnostic:
    return Diagnostic("E024", f"setting `{name}` must be {requirement}", span)


def unknown_gradient(name: str, span: Span, suggestion: str | None, known: Sequence[str]) -> Diagnostic:
    return Diagnostic("E028", f"unknown gradient mode `{name}`", span,
                      hint=_mean(suggestion) or f"gradient modes are {_list(known)}: the paper's v·σ·∇g, the "
                                                  "same with ∇g scaled to unit RMS, or with each term's "
                                                  "gradient scaled to its weight")


def unknown_scheduler(name: str, span: Span, suggestion: str | None, known: Sequence[str]) -> Diagnostic:
    return Diagnostic("E025", f"unknown scheduler `{name}`", span,
                      hint=_mean(suggestion) or f"schedulers are {_list(known)}")


def recurrence_scheduler(scheduler: str, span: Span, scheduler_span: Span | None,
                         allowed: Sequence[str]) -> Diagnostic:
    return Diagnostic("E029", f"`recurrence` cannot be used with the `{scheduler}` scheduler", span,
                      hint=f"use the scheduler {' or '.join(f'`{a}`' for a in allowed)}, or `recurrence 1`",
                      labels=_label(scheduler_span, "the scheduler is chosen here"),
                      notes=("recurrence noises a guided step's result back and takes the step again; "
                             f"`{scheduler}` keeps state between steps",))


def bad_start(name: str, span: Span, suggestion: str | None, loaded: Sequence[str]) -> Diagnostic:
    return Diagnostic("E027", f"`start` names `{name}`, which is not a loaded image", span,
                      hint=_mean(suggestion) or (f"loaded images are {_list(loaded)}" if loaded else
                                                 'declare one: `image photo = load "photo.png" caption "…"`'),
                      notes=("`start` edits a real image: sampling starts from its inverted noise",))


def setting_with_equals(name: str, span: Span, value) -> Diagnostic:
    written = f'"{value.value}"' if isinstance(value, ast.String) else (value.text or repr(value.value))
    return Diagnostic("E026", f"`{name}` is a setting, not a value", span,
                      hint=f"a setting takes no `=`: write `{name} {written}`")


def setting_as_value(name: str, span: Span) -> Diagnostic:
    return Diagnostic("E026", f"`{name}` is a setting, not a value", span,
                      hint="use a `let` for a value you need twice, e.g. `let k = 0.5`",
                      notes=("settings configure the run; constraints cannot read them",))


# ----------------------------------------------------------------------------- E03x names

def unknown_function(name: str, span: Span, suggestion: str | None, module: str | None,
                     declared_at: Span | None = None, original: bool = False) -> Diagnostic:
    if module is not None and suggestion is not None:
        hint = f"did you mean `{suggestion}` from stdlib module `{module}`? add `use {module}`"
    elif module is not None:
        hint = f"`{name}` is defined in stdlib module `{module}`: add `use {module}`"
    else:
        hint = _mean(suggestion)
    notes = (f"`{suggestion}` (or `{suggestion[:-2]}₀`) reads `{suggestion[:-2]}` in the unguided original",
             ) if original else ()
    return Diagnostic("E030", f"unknown function `{name}`", span, hint=hint, notes=notes,
                      labels=_label(declared_at, f"`{suggestion}` is defined here") if module is None else ())


def unknown_name(name: str, span: Span, suggestion: str | None, prompt_words: Sequence[str],
                 declared_at: Span | None = None) -> Diagnostic:
    notes = ["a bare name is a variable, an `object`, an `image`, or a word of the prompt"]
    if prompt_words:
        notes.append(f"the prompt's words are {_list(dict.fromkeys(prompt_words), 12)}")
    return Diagnostic("E031", f"`{name}` is not a word of the prompt", span, hint=_mean(suggestion),
                      notes=tuple(notes), labels=_label(declared_at, f"`{suggestion}` is defined here"))


def unknown_source(name: str, span: Span, suggestion: str | None, sources: Sequence[str]) -> Diagnostic:
    return Diagnostic("E032", f"unknown source `{name}`", span,
                      hint=_mean(suggestion) or "declare it with `image NAME = generate \"…\"`",
                      notes=(f"sources are {_list(sources)}; `orig` is the unguided run",))


def source_not_image(name: str, found: str, span: Span, declared_at: Span | None) -> Diagnostic:
    return Diagnostic("E048", f"source `{name}` is {_a(found)}, not an Image", span,
                      labels=_label(declared_at, f"`{name}` is declared here"),
                      hint=f"a source names a run: declare `{name}: Image` and pass an image or `orig`",
                      notes=("a source is `orig`, a declared `image`, or a variable holding one",))


def duplicate_definition(name: str, span: Span, first: Span | None) -> Diagnostic:
    return Diagnostic("E033", f"`{name}` is defined twice", span,
                      labels=_label(first, "first defined here"), hint="rename one of them")


def phrase_not_in_prompt(phrase: str, missing: str, span: Span, suggestion: str | None) -> Diagnostic:
    return Diagnostic("E034", f"`{missing}` in object phrase \"{phrase}\" is not a word of the prompt", span,
                      hint=_mean(suggestion),
                      notes=("an object's words must all come from the prompt or from one image's caption",))


def function_as_value(name: str, span: Span) -> Diagnostic:
    return Diagnostic("E035", f"`{name}` is a function, not a value", span,
                      hint=f"call it: `{name}(…)`")


def unknown_type(name: str, span: Span, suggestion: str | None, known: Sequence[str]) -> Diagnostic:
    return Diagnostic("E036", f"unknown type `{name}`", span,
                      hint=_mean(suggestion) or f"types are {_list(known, 12)}")


def recursive(kind: str, chain: Sequence[str], span: Span) -> Diagnostic:
    arrow = " → ".join(f"`{c}`" for c in chain)
    return Diagnostic("E037", f"recursive {kind}: {arrow}", span,
                      notes=("functions and lets are expanded at compile time, so they cannot refer to themselves",))


def reserved_name(name: str, span: Span) -> Diagnostic:
    return Diagnostic("E038", f"`{name}` is a reserved source name", span,
                      hint="choose another name for the image",
                      notes=("`orig` is the unguided run and `self` the run being generated",))


def file_not_found(path: str, span: Span, resolved: str) -> Diagnostic:
    return Diagnostic("E039", f"image file `{path}` not found", span,
                      notes=(f"looked for `{resolved}`; paths are relative to the program",))


# ----------------------------------------------------------------------------- E04x calls

def macro_in_expression(name: str, span: Span) -> Diagnostic:
    return Diagnostic("E040", f"`{name}` is a constraint macro, not a value", span,
                      hint=f"use it as a statement on its own line: `{name}(…)`",
                      notes=("a `fn … { … }` produces constraints; it has no value to compute with",))


def value_fn_as_statement(name: str, returns: str | None, span: Span) -> Diagnostic:
    what = f"returns {_a(returns)}" if returns else "computes a value"
    return Diagnostic("E041", f"`{name}` {what}, not constraints", span,
                      hint=f"constrain its value, e.g. `{name}(…) = …`",
                      notes=("only constraint macros (`fn f(…) { … }`) can stand alone as statements",))


def source_as_value(name: str, span: Span, fn: str = "centroid") -> Diagnostic:
    return Diagnostic("E047", f"`{name}` is a source, not a value", span,
                      hint=f"read a property from it: `{fn}[{name}](o)`" + (f" or `{fn}₀(o)`" if name == "orig" else ""),
                      notes=("as a value, a source can only be passed to a parameter of type Image",))


def source_on_macro(name: str, span: Span) -> Diagnostic:
    return Diagnostic("E042", f"a source cannot be given to constraint macro `{name}`", span,
                      hint="put the source on the values inside the constraint, e.g. `centroid[ref](o)`")


def wrong_arity(name: str, low: int, high: int, given: int, span: Span, declared_at: Span | None,
                signatures: Sequence[str] = ()) -> Diagnostic:
    want = str(low) if low == high else f"{low} to {high}"
    plural = "" if high == 1 and low == 1 else "s"
    return Diagnostic("E043", f"`{name}` takes {want} argument{plural} but {given} {'was' if given == 1 else 'were'} given",
                      span, labels=_label(declared_at, f"`{name}` is defined here"),
                      notes=tuple(f"signature: {s}" for s in signatures))


def duplicate_param(name: str, span: Span) -> Diagnostic:
    return Diagnostic("E044", f"parameter `{name}` is declared twice", span)


def default_order(name: str, span: Span) -> Diagnostic:
    return Diagnostic("E045", f"parameter `{name}` has no default but follows one that has", span,
                      hint="put parameters with defaults last")


def bad_signature(name: str, problem: str, span: Span) -> Diagnostic:
    return Diagnostic("E046", f"`{name}`: {problem}", span)


# ----------------------------------------------------------------------------- E05x expression types

def operator_mismatch(op: str, left: str, right: str, span: Span, hint: str | None = None) -> Diagnostic:
    return Diagnostic("E050", f"cannot apply `{op}` to {left} and {right}", span, hint=hint,
                      notes=("`+ -` need equal types; `* /` allow Scalar with Vec2, Map or Vector, and Map with Map",))


def negation_type(found: str, span: Span) -> Diagnostic:
    return Diagnostic("E051", f"cannot negate {_a(found)}", span,
                      notes=("unary `-` applies to Scalar, Vec2, Map and Vector",))


def tuple_arity(count: int, span: Span) -> Diagnostic:
    return Diagnostic("E052", f"a tuple must have 2 items (a Vec2), found {count}", span,
                      hint="write a point or offset as `(x, y)`")


def tuple_item(found: str, span: Span) -> Diagnostic:
    return Diagnostic("E053", f"tuple items must be Scalar, found {found}", span)


def bad_attribute(attr: str, found: str, span: Span) -> Diagnostic:
    if attr in ("x", "y"):
        return Diagnostic("E054", f"`.{attr}` needs a Vec2, found {found}", span)
    return Diagnostic("E054", f"unknown attribute `.{attr}`", span, hint="only `.x` and `.y` exist (on a Vec2)")


def list_mismatch(first: str, found: str, span: Span, first_span: Span | None) -> Diagnostic:
    return Diagnostic("E055", f"list items must all have one type: expected {first}, found {found}", span,
                      labels=_label(first_span, f"this is {_a(first)}"))


def empty_list(span: Span) -> Diagnostic:
    return Diagnostic("E055", "an empty list has no type", span, hint="give it at least one item")


def argument_type(fn: str, param: str, expected: str, found: str, span: Span,
                  declared_at: Span | None, signature: str | None = None) -> Diagnostic:
    hint = None
    if found == "Image" and expected == "Object":
        hint = f"an image is a source: read from it with `{fn}[image](object)`"
    return Diagnostic("E056", f"argument `{param}` of `{fn}` expects {expected}, found {found}", span,
                      labels=_label(declared_at, "parameter declared here"), hint=hint,
                      notes=(f"signature: {signature}",) if signature else ())


def no_overload(fn: str, found: Sequence[str], signatures: Sequence[str], span: Span) -> Diagnostic:
    given = ", ".join(found)
    return Diagnostic("E057", f"no version of `{fn}` takes ({given})", span,
                      notes=tuple(f"candidate: {s}" for s in signatures))


def return_type(fn: str, declared: str, found: str, span: Span, declared_at: Span | None) -> Diagnostic:
    return Diagnostic("E058", f"`{fn}` is declared to return {declared} but its body is {_a(found)}", span,
                      labels=_label(declared_at, f"declared {declared} here"))


def default_type(param: str, expected: str, found: str, span: Span) -> Diagnostic:
    return Diagnostic("E059", f"default of `{param}` must be {expected}, found {found}", span)


# ----------------------------------------------------------------------------- E06x statement types

def equality_mismatch(left: str, right: str, span: Span, left_span: Span | None = None) -> Diagnostic:
    """`span` is the right-hand side (the value that does not fit); the left side is labelled."""
    return Diagnostic("E060", f"both sides of `=` must have one type, found {left} and {right}", span,
                      labels=_label(left_span, f"this is {_a(left)}"),
                      hint="compare like with like, e.g. `centroid(a) = centroid₀(a)`")


def equality_type(found: str, span: Span) -> Diagnostic:
    return Diagnostic("E061", f"cannot constrain {_a(found)} with `=`", span,
                      notes=("`=` compares Scalar, Vec2, Map, Vector or Features values",))


def inequality_type(op: str, left: str, right: str, span: Span) -> Diagnostic:
    hint = "compare one coordinate, e.g. `centroid(a).x < centroid(b).x`" if "Vec2" in (left, right) else None
    return Diagnostic("E062", f"`{op}` compares Scalars, found {left} and {right}", span, hint=hint)


def objective_type(kind: str, found: str, span: Span) -> Diagnostic:
    return Diagnostic("E063", f"`{kind}` needs a Scalar, found {found}", span,
                      hint="reduce it first, e.g. with `sum`, `mean` or `norm`")


def for_needs_list(found: str, span: Span) -> Diagnostic:
    return Diagnostic("E064", f"`for` needs a list, found {found}", span,
                      hint="iterate over `[a, b]`, `objects()` or `others(o)`")


# ----------------------------------------------------------------------------- E07x modifiers

def window_range(value: float, span: Span) -> Diagnostic:
    return Diagnostic("E070", f"window bound {value:g}% is outside 0% to 100%", span,
                      notes=("a window is a fraction of the sampling steps",))


def window_empty(start: float, end: float, span: Span) -> Diagnostic:
    return Diagnostic("E071", f"window from {start:g}% to {end:g}% is empty", span,
                      hint="the start must come before the end")


def duplicate_modifier(what: str, span: Span, first: Span | None) -> Diagnostic:
    return Diagnostic("E072", f"`{what}` is given twice", span, labels=_label(first, "first given here"))


def using_not_equality(span: Span) -> Diagnostic:
    return Diagnostic("E073", "`using` only applies to `=` constraints", span,
                      notes=("inequalities are hinges and objectives are their own energy",))


def margin_not_inequality(span: Span) -> Diagnostic:
    return Diagnostic("E074", "`margin` only applies to inequalities", span,
                      hint="an equality has no margin; use `<` or `>` for a hinge")


def weight_not_constant(span: Span) -> Diagnostic:
    return Diagnostic("E075", "a weight must be a constant", span,
                      notes=("weights are numbers known before sampling: numbers, `let`s of numbers, Scalar parameters, "
                             "with arithmetic and relu, abs, sqrt, norm, dot",))


def modifier_type(what: str, found: str, span: Span) -> Diagnostic:
    return Diagnostic("E076", f"`{what}` needs a Scalar, found {found}", span)


def unknown_distance(name: str, span: Span) -> Diagnostic:
    return Diagnostic("E077", f"unknown distance `{name}`", span, hint="use `l1` or `l2`")


def argument_not_constant(fn: str, param: str, span: Span) -> Diagnostic:
    return Diagnostic("E078", f"argument `{param}` of `{fn}` must be a constant", span,
                      notes=(f"`{fn}` uses `{param}` as a weight, and weights are known before sampling",))


# ----------------------------------------------------------------------------- warnings

def target_outside(value: tuple[float, float], span: Span) -> Diagnostic:
    return Diagnostic("W001", f"target ({value[0]:g}, {value[1]:g}) lies outside the image", span,
                      severity=Severity.WARNING,
                      notes=("positions are image fractions: x and y run from 0 to 1",))


def stop_word_object(word: str, span: Span) -> Diagnostic:
    return Diagnostic("W002", f"`{word}` is a stop word of the prompt, not an object", span,
                      severity=Severity.WARNING,
                      hint="name the thing itself, e.g. the noun after it",
                      notes=("stop words (articles, prepositions, `photo`, …) have diffuse attention",))


def source_reads_nothing(fn: str, source: str, span: Span) -> Diagnostic:
    return Diagnostic("W003", f"reading `{fn}` from `{source}` changes nothing", span,
                      severity=Severity.WARNING, hint="remove the source",
                      notes=(f"`{fn}` reads no attention or activations, so it is the same in every run",))


# Long explanations for `sgl explain CODE` (the CLI reads `EXPLANATIONS` from this module).
from sgl.check.codes import explanation_texts  # noqa: E402 - codes.py imports nothing from here

EXPLANATIONS: dict[str, str] = explanation_texts()
