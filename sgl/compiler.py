"""The compiler half, end to end: parse → check → lower → passes.

Each phase reports all of its diagnostics at once and stops the pipeline when any is an error
(names before types before lowering: the checker keeps its own barriers). Warnings of every
phase travel on the result. Anything that escapes as a Python exception is a compiler bug and
becomes an "internal compiler error" diagnostic, never a traceback. No torch here.
"""

from __future__ import annotations

import os
import traceback
from pathlib import Path

from sgl.diagnostics import Diagnostic, SGLError, Span
from sgl.ir.program import EnergyProgram
from sgl.syntax import ast

BUG_REPORT = "this is a bug in SGL; please report it with the program and the text below"


def internal_error(exc: BaseException, file: str) -> Diagnostic:
    """An unexpected exception, turned into a diagnostic that says so (code E999)."""
    trace = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)).rstrip()
    return Diagnostic("E999", f"internal compiler error: {type(exc).__name__}: {exc}",
                      Span(file, 1, 1, 1, 1), hint=BUG_REPORT, notes=(trace,))


def parse_source(text: str, file: str = "<input>") -> ast.Program:
    """Text → AST (raises SGLError)."""
    from sgl.syntax.parse import parse

    return parse(text, file)


def _loader(base_dir: str | os.PathLike | None):
    """Reads imported files; paths relative to a program given as text resolve from `base_dir`."""
    def load(path: str) -> str:
        full = path if base_dir is None or os.path.isabs(path) else os.path.join(base_dir, path)
        with open(full, encoding="utf-8") as f:
            return f.read()

    return load


def check_source(text: str, file: str = "<input>", base_dir: str | os.PathLike | None = None,
                 optimize: bool = True) -> EnergyProgram:
    """Run every compile-time phase on a program's text; return its energy IR.

    `file` names the program in diagnostics; imports resolve relative to it, and, when it is
    not a path (`<input>`), relative to `base_dir`. Raises SGLError with all diagnostics of
    the first phase that fails (and the warnings found before it).
    """
    from sgl.check import check
    from sgl.ir.lower import lower

    texts = {file: text}
    try:
        program = parse_source(text, file)
        in_memory = file.startswith("<")
        checked = check(program, texts=texts, loader=_loader(base_dir if in_memory else None),
                        base_dir=base_dir if in_memory else None)
        return lower(checked, optimize=optimize)
    except SGLError as error:
        if not error.sources:
            error.sources.update(texts)
        raise
    except Exception as exc:  # noqa: BLE001 - the one place a bug becomes a diagnostic
        raise SGLError([internal_error(exc, file)], texts) from exc


def check_file(path: str | os.PathLike, optimize: bool = True) -> EnergyProgram:
    """`check_source` for a file; the path as given names it in diagnostics."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise SGLError.single("E200", f"cannot read `{path}`: {reason}",
                              hint="check the path of the program file") from None
    return check_source(text, file=str(path), optimize=optimize)
