"""Rendering of diagnostics as text, rustc/ruff style (placeholder: the front-end helper
replaces this with the full rich renderer)."""

from __future__ import annotations

from sgl.diagnostics import Diagnostic


def render(diag: Diagnostic, sources: dict[str, str], color: bool = False) -> str:
    head = f"{diag.severity.value}[{diag.code}]: {diag.message}"
    lines = [head]
    if diag.span is not None:
        lines.append(f" --> {diag.span.file}:{diag.span.line}:{diag.span.column}")
    if diag.hint:
        lines.append(f"  = help: {diag.hint}")
    for note in diag.notes:
        lines.append(f"  = note: {note}")
    return "\n".join(lines)


def render_all(diags: list[Diagnostic], sources: dict[str, str], color: bool = False) -> str:
    return "\n\n".join(render(d, sources, color) for d in diags)
