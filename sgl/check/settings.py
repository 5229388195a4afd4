"""The settings table: which `NAME value` lines a program may write and what values they take.

The parser reads every `NAME literal` line as a `Setting`, so a misspelt `sead 7` arrives here
and gets a did-you-mean instead of a syntax error.
"""

from __future__ import annotations

import math

import attrs

from sgl.check import errors
from sgl.diagnostics import Diagnostic, Span
from sgl.suggest import did_you_mean
from sgl.syntax import ast
from sgl.syntax.settings import EXAMPLES, SETTINGS


# The samplers the runtime can build (sgl/runtime/pipelines.py `SCHEDULERS`; a test keeps the two
# in step without the compiler importing the runtime).
SCHEDULERS = ("ddim", "ddpm", "pndm", "euler", "euler_a", "dpm")

# How the energy gradient enters the noise prediction (the runtime's sampler reads this table):
# "raw" = the paper's v·σ_t·∇g, "unit" = v·σ_t·∇g / rms(∇g), "balanced" = the same with every
# term's gradient first divided by its own RMS (sgl/runtime/balance.py).
GRADIENTS = ("raw", "unit", "balanced")

# Schedulers whose step depends only on (ε, t, z_t), so that `recurrence` can noise a step's
# result back to t and take the step again (PNDM, DPM and Euler keep state between steps).
RECURRENT_SCHEDULERS = ("ddim", "ddpm")

# Settings whose string takes one of a fixed set of values, and the error for any other.
_CHOICES = {"scheduler": (SCHEDULERS, errors.unknown_scheduler), "gradient": (GRADIENTS, errors.unknown_gradient)}

_EXPECTED = {"string": "a string", "count": "an integer", "positive": "an integer",
             "number": "a number", "fraction": "a number from 0 to 1",
             "resolution": "a size such as `512` or `512x768`"}


def _found(value) -> str:
    if isinstance(value, ast.String):
        return "a string"
    if isinstance(value, ast.Resolution):
        return "a size"
    if isinstance(value, ast.Number):
        return "an integer" if is_integer(value) else "a number"
    return "a value"


def is_integer(num: ast.Number) -> bool:
    """Written without a fraction or exponent and integral."""
    text = num.text or repr(num.value)
    return float(num.value).is_integer() and not any(c in text for c in ".eE")


def _value(kind: str, value) -> tuple[object, bool]:
    """The Python value and whether the literal is of the right kind."""
    if kind == "string":
        return (value.value, True) if isinstance(value, ast.String) else (None, False)
    if kind in ("count", "positive"):
        ok = isinstance(value, ast.Number) and is_integer(value)
        return (int(value.value) if ok else None), ok
    if kind in ("number", "fraction"):
        return (float(value.value), True) if isinstance(value, ast.Number) else (None, False)
    if isinstance(value, ast.Resolution):
        return (value.width, value.height), True
    if isinstance(value, ast.Number) and is_integer(value):
        return (int(value.value), int(value.value)), True
    return None, False


def check_settings(settings: list[ast.Setting]) -> tuple[dict, dict[str, Span | None], list[Diagnostic]]:
    """Python values by setting name, where each was written, and the problems found."""
    values: dict = {}
    where: dict[str, Span | None] = {}
    diags: list[Diagnostic] = []
    for s in settings:
        span = s.name_span or s.span
        kind = SETTINGS.get(s.name)
        if kind is None:
            diags.append(errors.unknown_setting(s.name, span, did_you_mean(s.name, SETTINGS), sorted(SETTINGS)))
            continue
        if s.name in where:
            diags.append(errors.duplicate_setting(s.name, span, where[s.name]))
            continue
        where[s.name] = span
        value, ok = _value(kind, s.value)
        vspan = s.value.span or s.span
        if not ok:
            diags.append(errors.setting_kind(s.name, _EXPECTED[kind], _found(s.value), vspan, EXAMPLES[s.name]))
            continue
        problem = _value_problem(s.name, kind, value, vspan)
        if problem:
            diags.append(problem)
            continue
        values[s.name] = value
    diags.extend(_recurrence_problems(values, where))
    return values, where, diags


def check_override(name: str, value) -> tuple[object, list[Diagnostic]]:
    """A setting given outside the program (`--set`, a REPL flag, a keyword argument of
    `sgl.compile`) checked as its program line would be: the value as the runtime takes it, and the
    problems. Such a value has no place in the source, so its diagnostics carry no span."""
    value, problems = _check_override(name, value)
    return value, _noted(problems)


def _noted(problems: list[Diagnostic]) -> list[Diagnostic]:
    note = "given outside the program: by `--set`, a REPL flag or a keyword argument"
    return [attrs.evolve(d, notes=(*d.notes, note)) for d in problems]


def _check_override(name: str, value) -> tuple[object, list[Diagnostic]]:
    kind = SETTINGS.get(name)
    if kind is None:
        return None, [errors.unknown_setting(name, None, did_you_mean(name, SETTINGS), sorted(SETTINGS))]
    converted = _python_value(kind, value)
    if converted is None:
        return None, [errors.setting_kind(name, _EXPECTED[kind], _found_python(value), None, EXAMPLES[name])]
    problem = _value_problem(name, kind, converted, None)
    return (None, [problem]) if problem else (converted, [])


def _value_problem(name: str, kind: str, value, span: Span | None) -> Diagnostic | None:
    """A value of the right kind that is out of range or not one of the setting's choices."""
    problem = _range_problem(kind, value)
    if problem:
        return errors.setting_range(name, problem, span)
    if name in _CHOICES and value.lower() not in _CHOICES[name][0]:
        known, error = _CHOICES[name]
        return error(value, span, did_you_mean(value.lower(), known), known)
    return None


def _python_value(kind: str, value):
    """`value` as the kind's Python value, or None when it is not of that kind (a bool is not a
    number; an integral float is an integer; a resolution may be written `"512x768"`)."""
    if isinstance(value, bool):
        return None
    if kind == "string":
        return value if isinstance(value, str) else None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if kind in ("count", "positive"):
        integral = isinstance(value, int) or (isinstance(value, float) and value.is_integer())
        return int(value) if integral else None
    if kind in ("number", "fraction"):
        return float(value) if isinstance(value, int | float) else None
    if isinstance(value, str):
        text = value.strip().lower()
        value = int(text) if text.isdigit() else parse_size(text)
    if isinstance(value, int):
        return (value, value)
    if isinstance(value, tuple | list) and len(value) == 2 and all(
            isinstance(v, int) and not isinstance(v, bool) for v in value):
        return tuple(value)
    return None


def parse_size(text: str) -> tuple[int, int] | None:
    """`"512x768"` → (512, 768); None for any other text."""
    width, sep, height = text.partition("x")
    return (int(width), int(height)) if sep and width.isdigit() and height.isdigit() else None


def _found_python(value) -> str:
    if isinstance(value, str):
        return f"the string {value!r}"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return f"the number {value!r}"
    return f"a {type(value).__name__}"


def override_problems(values: dict) -> list[Diagnostic]:
    """Problems of a combination of settings that overrides may have made (recurrence with a
    stateful sampler); `values` holds the effective settings, None where the model decides."""
    chosen = {k: values[k] for k in ("recurrence", "scheduler") if values.get(k) is not None}
    return _noted(_recurrence_problems(chosen, {"recurrence": None, "scheduler": None}))


def _recurrence_problems(values: dict, where: dict[str, Span | None]) -> list[Diagnostic]:
    """`recurrence N` (N > 1) re-takes each guided step, which only a stateless sampler allows."""
    scheduler = str(values.get("scheduler", "ddim")).lower()
    if values.get("recurrence", 1) <= 1 or scheduler not in SCHEDULERS or scheduler in RECURRENT_SCHEDULERS:
        return []
    return [errors.recurrence_scheduler(scheduler, where["recurrence"], where.get("scheduler"), RECURRENT_SCHEDULERS)]


def _range_problem(kind: str, value) -> str | None:
    if kind == "count" and value < 0:
        return "0 or more"
    if kind == "positive" and value < 1:
        return "1 or more"
    if kind == "fraction" and not 0.0 <= value <= 1.0:
        return "from 0 to 1"
    if kind == "resolution" and min(value) < 1:
        return "positive"
    return None
